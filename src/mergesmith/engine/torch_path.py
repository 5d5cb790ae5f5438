"""Ops computed with torch: every method, any dtype, a GPU, in-memory tensors, vocabulary alignment.

Inputs are read whole in their stored dtype, rounded to the recipe's `dtype` when one is set
(mergekit reads inputs at that precision), computed in float32 (float64 if the inputs are) on
the device, and cast to the output dtype. Elementwise methods on the CPU run on cache-sized
chunks of the flattened inputs, so no float32 copy of a whole input exists. Random methods get
a generator seeded from (seed, tensor name), so results do not depend on thread count or order.
"""

from __future__ import annotations

import hashlib
from typing import Any

from mergesmith.engine.checks import explain_non_finite
from mergesmith.engine.numpy_path import is_conversion
from mergesmith.errors import MergeError, MethodError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.safetensors_format import TORCH_NAMES
from mergesmith.lazy_torch import torch
from mergesmith.plan.ops import TensorOp, TensorRef

# Elements per chunk for elementwise methods on the CPU: 4 float32 inputs of this size fit in L2.
CHUNK = 1 << 16


def tensor_seed(seed: int, name: str) -> int:
    """A stable 63-bit seed for one tensor (same on every run, thread and platform)."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class TorchOps:
    """Computes ops of one plan with torch."""

    def __init__(self, checkpoints: dict[str, Checkpoint], *, device: str, seed: int, read_dtype: str | None) -> None:
        self.checkpoints = checkpoints
        self.device = device
        self.seed = seed
        self.read_dtype = getattr(torch, read_dtype) if read_dtype else None

    def compute(self, op: TensorOp) -> Any:
        """One output tensor, in its output dtype, on the CPU; never one with NaN or inf."""
        out = self._compute(op)
        if out.is_floating_point() and not all_finite(out):
            explain_non_finite(op, self.checkpoints, self._input_finite)
        return out

    def _input_finite(self, ref: TensorRef) -> bool:
        tensor = self._read(ref)
        return not tensor.is_floating_point() or all_finite(tensor)

    def _compute(self, op: TensorOp) -> Any:
        out_dtype = getattr(torch, TORCH_NAMES[op.out_dtype])
        raw, raw_base = self._read_inputs(op)
        if op.copy_only:
            return raw[0] if raw else raw_base
        if is_conversion(op, self.read_dtype):
            return raw[0].to(out_dtype)
        if op.method.elementwise and self.device == "cpu" and not op.method.randomized:
            return self._compute_chunked(op, raw, raw_base, out_dtype)
        # Each input is dropped as soon as its float32 copy exists: at most one stored copy is
        # held beside the float32 ones while converting (docs/design.md, "Where the time goes").
        tensors = []
        for i in range(len(raw)):
            tensors.append(self._prepare(raw[i]))
            raw[i] = None
        base = self._prepare(raw_base) if raw_base is not None else None
        del raw, raw_base
        rng = None
        if op.method.randomized:
            rng = torch.Generator(device=self.device).manual_seed(tensor_seed(self.seed, op.name))
        out = self._call(op, tensors, base, rng)
        del tensors, base  # before the cast: the inputs' float32 copies are not needed beside it
        return out.to(device="cpu", dtype=out_dtype)

    def _read_inputs(self, op: TensorOp) -> tuple[list[Any], Any]:
        """The op's input tensors (and base) as stored, vocabulary-aligned where planned."""
        raw = {ref: self._read(ref) for ref in op.refs()}
        if op.vocab is not None:
            aligned = op.vocab.align(op.name, {ref.model: t for ref, t in raw.items()})
            raw = {ref: aligned[ref.model] for ref in raw}
        return [raw[r] for r in op.inputs], (raw[op.base] if op.base else None)

    def _compute_chunked(self, op: TensorOp, raw: list[Any], raw_base: Any, out_dtype: Any) -> Any:
        """An elementwise method over cache-sized chunks of the flattened inputs."""
        raw = [x.reshape(-1) for x in raw]
        raw_base = raw_base.reshape(-1) if raw_base is not None else None
        numel = (raw[0] if raw else raw_base).numel()
        out = torch.empty(numel, dtype=out_dtype)
        for start in range(0, numel, CHUNK):
            end = min(numel, start + CHUNK)
            tensors = [self._prepare(x[start:end]) for x in raw]
            base = self._prepare(raw_base[start:end]) if raw_base is not None else None
            out[start:end] = self._call(op, tensors, base, None)
        return out.reshape(op.shape)

    def _call(self, op: TensorOp, tensors: list[Any], base: Any, rng: Any) -> Any:
        try:
            out = op.method.func(tensors, base, op.params, rng)
        except MergeError:
            raise
        except Exception as exc:  # a kernel bug or a numerical failure: name the tensor
            raise MethodError(f"{op.method.name} failed on tensor {op.name!r}: {type(exc).__name__}: {exc}",
                              hint="check the parameters for this tensor; if they are sound, please report it") from exc
        return out

    def _read(self, ref: TensorRef) -> Any:
        return self.checkpoints[ref.model].read(ref.name)

    def _prepare(self, tensor: Any) -> Any:
        if self.read_dtype is not None and tensor.dtype != self.read_dtype:
            tensor = tensor.to(self.read_dtype)
        compute = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        return tensor.to(device=self.device, dtype=compute)


def all_finite(tensor: Any) -> bool:
    # A sum is finite iff every entry is (barring overflow of the sum itself, which the exact
    # check then rules out); it costs a fraction of isfinite(tensor).all().
    return bool(torch.isfinite(tensor.sum())) or bool(torch.isfinite(tensor).all())
