"""The streaming executor: every op of a plan, computed and handed to a sink, in bounded memory.

Each op becomes a job for the worker pool (engine/schedule.py). On the CPU, copies, dtype
conversions and elementwise methods written for numpy (linear, task arithmetic, passthrough)
run on numpy arrays (engine/numpy_path.py), so a merge of only those never imports torch (2-3 s)
and big tensors are cut into pieces the workers share. Every other op is one job computed with
torch (engine/torch_path.py); torch then runs one intra-op thread per worker, so that results
(reductions included) do not depend on `threads`. The two paths write the same bytes.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Callable, Iterator
from typing import Any

from mergesmith.engine.numpy_path import PIECE, NumpyOp, runs_on_numpy
from mergesmith.engine.schedule import run_jobs
from mergesmith.engine.torch_path import TorchOps, tensor_seed
from mergesmith.errors import OptionsError
from mergesmith.io.safetensors_format import DTYPE_SIZES
from mergesmith.lazy_torch import torch
from mergesmith.plan.ops import Plan, TensorOp
from mergesmith.threads import torch_threads

__all__ = ["Executor", "check_device", "tensor_seed"]

Sink = Callable[[str, Any], None]
# Bytes of tensors in flight before the pool waits for one to be written: a few hundred MB keep
# both cores busy on any model; a bigger op runs alone (measured, docs/design.md).
BUDGET = 256 << 20


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
    def __init__(self, plan: Plan, *, device: str = "cpu", seed: int = 0, threads: int = 2,
                 numpy: bool = True) -> None:
        """`numpy=False` computes every op with torch (to compare the two paths)."""
        self.plan = plan
        self.device = check_device(device)
        self.seed = seed
        self.threads = max(1, threads)
        self.numpy = numpy
        self.read_dtype = plan.recipe.dtype
        self._torch: TorchOps | None = None

    @property
    def torch_ops(self) -> TorchOps:
        if self._torch is None:
            self._torch = TorchOps(self.plan.checkpoints, device=self.device, seed=self.seed,
                                   read_dtype=self.read_dtype)
        return self._torch

    def run(self, sink: Sink, on_done: Callable[[int], None] | None = None, skip: set[str] | None = None) -> None:
        """Compute every op of the plan (but those in `skip`) and hand each result to `sink(name, tensor)`:
        a numpy array (the output dtype's bits) or a torch tensor."""
        jobs = [self._job(op) for op in self.plan.ops if op.name not in (skip or set())]
        uses_torch = any(isinstance(job, _TorchJob) for job in jobs)
        # One torch thread per worker: results then do not depend on --threads (a reduction
        # split over intra-op threads rounds differently), and on 2 busy cores OpenMP threads
        # on top of 2 workers made an elementwise merge 3-10x slower.
        with torch_threads(1) if uses_torch else contextlib.nullcontext(), _no_cyclic_gc():
            run_jobs(jobs, sink, on_done, threads=self.threads, budget=BUDGET)

    def compute(self, op: TensorOp) -> Any:
        """One output tensor, in its output dtype, as a torch tensor on the CPU."""
        return self.torch_ops.compute(op)

    def uses_numpy(self, op: TensorOp) -> bool:
        return self.numpy and runs_on_numpy(op, self.plan.checkpoints, self.read_dtype, self.device)

    def _job(self, op: TensorOp) -> Any:
        if self.uses_numpy(op):
            return _NumpyJob(op, NumpyOp(op, self.plan.checkpoints, self.read_dtype), self.threads)
        return _TorchJob(op, self, _torch_cost(op, self.plan))


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Python's cycle collector off while tensors stream through: the merge allocates many
    short-lived tensor objects (none in cycles), and each collection walked every object the
    imports left (3-5% of a TIES merge's CPU time in gc_collect_main, measured with perf)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _NumpyJob:
    def __init__(self, op: TensorOp, work: NumpyOp, threads: int) -> None:
        self.name = op.name
        self.work = work
        self.pieces = work.pieces
        self.nbytes = _nbytes(op)
        reads = sum(DTYPE_SIZES[work.checkpoints[r.model].tensors[r.name].dtype] for r in op.refs())
        self.cost = self.nbytes + min(self.pieces, threads) * PIECE * reads

    def start(self) -> None:
        self.work.start()

    def piece(self, index: int) -> None:
        self.work.piece(index)

    def result(self) -> Any:
        return self.work.result()


class _TorchJob:
    pieces = 1

    def __init__(self, op: TensorOp, executor: Executor, cost: int) -> None:
        self.name = op.name
        self.op = op
        self.executor = executor
        self.cost = cost
        self.nbytes = _nbytes(op)
        self._out: Any = None

    def start(self) -> None:
        pass

    def piece(self, index: int) -> None:
        self._out = self.executor.compute(self.op)

    def result(self) -> Any:
        out, self._out = self._out, None
        return out


def _nbytes(op: TensorOp) -> int:
    n = DTYPE_SIZES[op.out_dtype]
    for d in op.shape:
        n *= d
    return n


def _torch_cost(op: TensorOp, plan: Plan) -> int:
    """Bytes an op holds on the torch path: its inputs as stored and, unless elementwise (then
    chunked), float32 copies of them, the result and the method's scratch."""
    metas = [plan.checkpoints[r.model].tensors[r.name] for r in op.refs()]
    stored = sum(meta.nbytes for meta in metas)
    numel = metas[0].numel if metas else 0
    if op.method.elementwise or op.copy_only:
        return stored + _nbytes(op)
    return stored + 4 * numel * (len(metas) + 2) + _nbytes(op)
