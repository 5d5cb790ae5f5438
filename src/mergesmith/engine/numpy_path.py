"""Ops the CPU computes on numpy arrays, without importing torch.

An op runs here when it is a byte copy (`copy_only`), a dtype conversion (a method that returns
its input), or an elementwise method flagged `numpy` (linear, task arithmetic, passthrough with
a scale), on file-backed bfloat16/float16/float32 inputs and outputs. Anything else (another
method, float64 or float8, vocabulary alignment, in-memory tensors, a GPU) runs on torch.

An op is cut into pieces of about PIECE elements, which the executor's workers run in parallel;
a piece reads its slice of every input with one pread each, and computes it in cache-sized
chunks of CHUNK elements: stored bits -> float32 (rounded to the recipe's `dtype` first, as
mergekit reads inputs), the method, float32 -> output bits. The conversions are torch's:
bfloat16 <-> float32 by shifting bits with round-to-nearest-even, float16 by IEEE casts, and
the methods' arithmetic is torch's too (methods/arrays.py), so the bytes are those the torch
path writes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mergesmith.engine.checks import explain_non_finite
from mergesmith.errors import MergeError, MethodError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.methods.arrays import scratch
from mergesmith.plan.ops import TensorOp, TensorRef

FLOATS = {"BF16": np.uint16, "F16": np.float16, "F32": np.float32}  # how numpy holds the stored bits
READ_DTYPES = {None: None, "bfloat16": "BF16", "float16": "F16", "float32": "F32"}
# Measured on 2 cores (docs/design.md): chunks of 128K entries make the ~40 numpy calls of a
# chunk cost little next to the arithmetic (8K: 2x slower; 64K: ~10% slower, 256K: no better);
# pieces of 1M entries make few enough tasks for the pool and fine enough balance.
CHUNK = 1 << 17
PIECE = 1 << 20
_ROUNDING, _INPUTS, _READS = 99, 100, 200  # scratch slots (methods/arrays.py uses the small numbers)


def runs_on_numpy(op: TensorOp, checkpoints: dict[str, Checkpoint], read_dtype: str | None, device: str) -> bool:
    """Whether the numpy path computes this op (and gives the bytes the torch path would)."""
    if device != "cpu" or op.vocab is not None or read_dtype not in READ_DTYPES:
        return False
    if not all(checkpoints[r.model].stored_as_is(r.name) for r in op.refs()):
        return False  # the numpy path reads stored bytes
    if op.copy_only:
        return True
    dtypes = {checkpoints[r.model].tensors[r.name].dtype for r in op.refs()}
    if not dtypes <= FLOATS.keys() or op.out_dtype not in FLOATS:
        return False
    method = op.method
    return is_conversion(op, read_dtype) or (method.numpy and method.elementwise and not method.randomized)


def is_conversion(op: TensorOp, read_dtype: Any) -> bool:
    """The method returns its one input as it is: only the dtype changes (a cast straight to the
    output dtype; the float32 round trip gives the same bits, slower). Not when inputs are first
    rounded to the recipe's dtype, which changes the bits."""
    unchanged = op.method.returns_input
    return unchanged is not None and unchanged(op.params) and read_dtype is None


class NumpyOp:
    """One op on the numpy path: `piece(i)` computes piece i into `out`; pieces may run in parallel."""

    def __init__(self, op: TensorOp, checkpoints: dict[str, Checkpoint], read_dtype: str | None) -> None:
        self.op = op
        self.checkpoints = checkpoints
        self.read_as = READ_DTYPES[read_dtype]
        ref = op.inputs[0] if op.inputs else op.base
        assert ref is not None
        self.numel = checkpoints[ref.model].tensors[ref.name].numel
        self.pieces = max(1, -(-self.numel // PIECE))
        self.copy = op.copy_only or is_conversion(op, read_dtype)
        out_type = checkpoints[ref.model].tensors[ref.name].dtype if op.copy_only else op.out_dtype
        self.out_type = out_type
        self.out: Any = None

    def start(self) -> None:
        meta = self.checkpoints[self.op.refs()[0].model].tensors[self.op.refs()[0].name]
        if self.op.copy_only:
            self.out = np.empty(meta.nbytes, dtype=np.uint8)
        else:
            self.out = np.empty(self.numel, dtype=FLOATS[self.out_type])

    def result(self) -> Any:
        out, self.out = self.out, None
        return out

    def piece(self, index: int) -> None:
        start, stop = index * PIECE, min(self.numel, (index + 1) * PIECE)
        if self.op.copy_only:  # bytes as they are
            ref = self.op.inputs[0] if self.op.inputs else self.op.base
            size = self.out.nbytes // max(self.numel, 1)
            self.out[start * size:stop * size] = self._read(ref, start, stop, np.uint8, size)
            return
        refs = self.op.inputs if self.copy else self.op.refs()
        raw = [self._read(ref, start, stop, slot=_READS + i) for i, ref in enumerate(refs)]
        with np.errstate(all="ignore"):  # overflow becomes inf, found by the check below
            for lo in range(0, stop - start, CHUNK):
                hi = min(stop - start, lo + CHUNK)
                result = self._compute([x[lo:hi] for x in raw])
                to_output(result, self.out_type, self.out[start + lo:start + hi])
        if not all_finite(self.out[start:stop], self.out_type):
            self._non_finite()

    def _non_finite(self) -> None:
        explain_non_finite(self.op, self.checkpoints, self._input_finite)

    def _input_finite(self, ref: TensorRef) -> bool:
        meta = self.checkpoints[ref.model].tensors[ref.name]
        return all_finite(self._read(ref, 0, meta.numel), meta.dtype)

    def _read(self, ref: TensorRef, start: int, stop: int, as_type: Any = None, size: int = 0, slot: int | None = None) -> Any:
        """Entries [start, stop) of an input as stored; into this thread's scratch buffer `slot` if
        given (reused piece after piece: fresh buffers cost a page fault per 4 KB)."""
        ckpt = self.checkpoints[ref.model]
        meta = ckpt.tensors[ref.name]
        size = size or meta.nbytes // max(meta.numel, 1)
        out = None if slot is None else scratch(slot, ((stop - start) * size,), np.uint8)
        data = ckpt.read_bytes(ref.name, start * size, stop * size, out=out)
        return data if as_type is np.uint8 else data.view(FLOATS[meta.dtype])

    def _compute(self, chunks: list[Any]) -> Any:
        """float32 result of the method on one chunk of every input (stored bits in)."""
        op = self.op
        refs = op.inputs if self.copy else op.refs()
        stored = [self.checkpoints[r.model].tensors[r.name].dtype for r in refs]
        values = [to_float32(x, dtype, self.read_as, slot) for slot, (x, dtype) in enumerate(zip(chunks, stored, strict=True))]
        if self.copy:
            return values[0]
        tensors = values[: len(op.inputs)]
        base = values[len(op.inputs)] if op.base is not None else None
        try:
            return op.method.func(tensors, base, op.params, None)
        except MergeError:
            raise
        except Exception as exc:  # a kernel bug or a numerical failure: name the tensor
            raise MethodError(f"{op.method.name} failed on tensor {op.name!r}: {type(exc).__name__}: {exc}",
                              hint="check the parameters for this tensor; if they are sound, please report it") from exc


def to_float32(stored: Any, dtype: str, read_as: str | None, slot: int = 0) -> Any:
    """float32 values of stored bits, first rounded to `read_as` (the recipe's dtype) if set.
    The result is this thread's scratch buffer number `slot` (or the stored float32 array)."""
    if dtype == "BF16":
        bits = scratch(_INPUTS + slot, stored.shape, np.uint32)
        np.copyto(bits, stored)
        bits <<= 16
        values = bits.view(np.float32)
    elif dtype == "F16":
        values = scratch(_INPUTS + slot, stored.shape, np.float32)
        np.copyto(values, stored)
    else:  # float32 as read: the piece's buffer is ours alone
        values = stored
    if read_as is None or read_as == dtype or read_as == "F32":
        return values
    if read_as == "F16":
        np.copyto(values, values.astype(np.float16))
        return values
    bits = values.view(np.uint32)
    bfloat16_bits(values, out=bits)
    bits <<= 16
    return values


def bfloat16_bits(values: Any, out: Any = None) -> Any:
    """float32 -> bfloat16 bits (as uint32), rounded to nearest even as torch does (finite values)."""
    bits = values.view(np.uint32)
    rounded = np.right_shift(bits, 16, out=scratch(_ROUNDING, bits.shape, np.uint32))
    rounded &= 1
    rounded += 0x7FFF
    rounded += bits
    return np.right_shift(rounded, 16, out=rounded if out is None else out)


def to_output(values: Any, out_type: str, out: Any) -> None:
    if out_type == "BF16":
        np.copyto(out, bfloat16_bits(values), casting="unsafe")
    else:
        np.copyto(out, values, casting="unsafe")


def all_finite(out: Any, out_type: str) -> bool:
    """No NaN or infinity among output values (exponent bits not all ones)."""
    if out_type == "F32":
        return bool(np.isfinite(out.sum())) or bool(np.isfinite(out).all())
    exponent = 0x7F80 if out_type == "BF16" else 0x7C00
    bits = out.view(np.uint16)
    return int(np.bitwise_and(bits, 0x7FFF).max(initial=0)) < exponent
