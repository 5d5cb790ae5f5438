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
from mergesmith.plan.ops import Plan, TensorOp, TensorRef
from mergesmith.threads import per_worker, torch_threads

Sink = Callable[[str, Any], None]
# Elements per chunk for elementwise methods on the CPU: 4 float32 inputs of this size fit in L2.
CHUNK = 1 << 16


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

    def run(self, sink: Sink, on_done: Callable[[int], None] | None = None, skip: set[str] | None = None) -> None:
        """Compute every op of the plan (but those in `skip`) and hand each result to `sink(name, tensor)`."""
        # Parallelism comes from the pool: each worker runs torch with its share of the cores.
        with torch_threads(per_worker(self.threads)):
            self._run(sink, on_done, skip or set())

    def _run(self, sink: Sink, on_done: Callable[[int], None] | None, skip: set[str]) -> None:
        window: deque[tuple[TensorOp, Future]] = deque()
        with ThreadPoolExecutor(self.threads, thread_name_prefix="mergesmith") as pool:
            try:
                for op in (op for op in self.plan.ops if op.name not in skip):
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
        raw, raw_base = self._read_inputs(op)
        if op.copy_only:
            return raw[0] if raw else raw_base
        if self._is_plain_copy(op):
            return raw[0].to(out_dtype)
        if op.method.elementwise and self.device == "cpu" and not op.method.randomized:
            return self._compute_chunked(op, raw, raw_base, out_dtype)
        tensors = [self._prepare(x) for x in raw]
        base = self._prepare(raw_base) if raw_base is not None else None
        del raw, raw_base
        rng = None
        if op.method.randomized:
            rng = torch.Generator(device=self.device).manual_seed(tensor_seed(self.seed, op.name))
        out = self._call(op, tensors, base, rng)
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
            raise MethodError(f"{op.method.name} failed on tensor {op.name!r}: {type(exc).__name__}: {exc}") from exc
        # A sum is finite iff every entry is (barring float32 overflow of the sum itself, which
        # the exact check then rules out); it costs a fraction of isfinite(out).all().
        if not bool(torch.isfinite(out.sum())) and not bool(torch.isfinite(out).all()):
            raise MethodError(f"{op.method.name} produced NaN or infinite values in tensor {op.name!r}",
                              hint="check the weights and parameters for this tensor (e.g. weights summing to 0)")
        return out

    def _is_plain_copy(self, op: TensorOp) -> bool:
        """The method returns its one input as it is: cast it straight to the output dtype (the
        float32 round trip gives the same bits, slower). Not when inputs are first rounded to
        the recipe's dtype, which changes the bits."""
        unchanged = op.method.returns_input
        return unchanged is not None and unchanged(op.params) and self.read_dtype is None

    def _read(self, ref: TensorRef) -> Any:
        return self.plan.checkpoints[ref.model].read(ref.name)

    def _prepare(self, tensor: Any) -> Any:
        if self.read_dtype is not None and tensor.dtype != self.read_dtype:
            tensor = tensor.to(self.read_dtype)
        compute = torch.float64 if tensor.dtype == torch.float64 else torch.float32
        return tensor.to(device=self.device, dtype=compute)
