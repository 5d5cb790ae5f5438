"""The streaming executor: read, merge and write one tensor at a time.

A small thread pool keeps a bounded window of tensors in flight (torch releases the GIL, so
reading, computing and writing overlap); peak memory is bounded by the largest tensors in
the window, not by model size. The executor owns the dtype and device policy: inputs are
read in their stored dtype, rounded to the recipe's `dtype` when one is set (mergekit reads
inputs at that precision), computed in float32 (float64 if the inputs are) on the device,
and cast to the output dtype. Random methods get a generator seeded from (seed, tensor name),
so results do not depend on thread count or order.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from mergesmith.errors import MergeError, MethodError, OptionsError
from mergesmith.io.safetensors_format import TORCH_NAMES
from mergesmith.lazy_torch import torch
from mergesmith.plan import Plan, TensorOp, TensorRef

Sink = Callable[[str, Any], None]


def tensor_seed(seed: int, name: str) -> int:
    """A stable 63-bit seed for one tensor (same on every run, thread and platform)."""
    digest = hashlib.blake2b(f"{seed}\0{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def check_device(device: str) -> str:
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise OptionsError(f"--device {device}: torch reports no CUDA device here "
                               f"(torch {torch.__version__})", hint="use --device cpu, or install a CUDA build of torch")
        return device
    raise OptionsError(f"--device {device!r} is not supported", hint="use cpu or cuda (cuda:N)")


class Executor:
    def __init__(self, plan: Plan, *, device: str = "cpu", seed: int = 0, threads: int = 2) -> None:
        self.plan = plan
        self.device = check_device(device)
        self.seed = seed
        self.threads = max(1, threads)
        dtype = plan.recipe.dtype
        self.read_dtype = getattr(torch, dtype) if dtype else None

    def run(self, sink: Sink, on_done: Callable[[int], None] | None = None) -> None:
        """Compute every op of the plan and hand each result to `sink(name, tensor)`."""
        window: deque[tuple[TensorOp, Future]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="mergesmith") as pool:
            try:
                for op in self.plan.ops:
                    if len(window) > self.threads:
                        self._finish(*window.popleft(), on_done)
                    window.append((op, pool.submit(self._compute_and_write, op, sink)))
                while window:
                    self._finish(*window.popleft(), on_done)
            except BaseException:
                for _, fut in window:
                    fut.cancel()
                raise

    def _finish(self, op: TensorOp, fut: Future, on_done: Callable[[int], None] | None) -> None:
        nbytes = fut.result()
        if on_done:
            on_done(nbytes)

    def _compute_and_write(self, op: TensorOp, sink: Sink) -> int:
        out = self.compute(op)
        sink(op.name, out)
        return out.numel() * out.element_size()

    def compute(self, op: TensorOp) -> Any:
        """One output tensor, in its output dtype, on the CPU."""
        out_dtype = getattr(torch, TORCH_NAMES[op.out_dtype])
        if op.copy_only:
            return self._read(op.inputs[0] if op.inputs else op.base)
        if self._is_plain_copy(op):
            return self._read(op.inputs[0]).to(out_dtype)
        tensors = [self._prepare(self._read(r)) for r in op.inputs]
        base = self._prepare(self._read(op.base)) if op.base else None
        rng = None
        if op.method.randomized:
            rng = torch.Generator(device=self.device).manual_seed(tensor_seed(self.seed, op.name))
        try:
            out = op.method.func(tensors, base, op.params, rng)
        except MergeError:
            raise
        except Exception as exc:  # a kernel bug or a numerical failure: name the tensor
            raise MethodError(f"{op.method.name} failed on tensor {op.name!r}: {type(exc).__name__}: {exc}") from exc
        if not bool(torch.isfinite(out).all()):
            raise MethodError(f"{op.method.name} produced NaN or infinite values in tensor {op.name!r}",
                              hint="check the weights and parameters for this tensor (e.g. weights summing to 0)")
        return out.to(device="cpu", dtype=out_dtype)

    def _is_plain_copy(self, op: TensorOp) -> bool:
        scale = getattr(op.params, "scale", [None])
        return op.method.name == "passthrough" and scale[0] is None and self.read_dtype is None

    def _read(self, ref: TensorRef | None) -> Any:
        assert ref is not None
        return self.plan.checkpoints[ref.model].read(ref.name)

    def _prepare(self, tensor: Any) -> Any:
        if self.read_dtype is not None and tensor.dtype != self.read_dtype:
            tensor = tensor.to(self.read_dtype)
        compute = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        return tensor.to(device=self.device, dtype=compute)
