"""torch's CPU thread policy: every place that sets torch's thread count goes through here.

Tiny models (the demo family, test checkpoints) run many small operations that are too
small to split across threads, and on shared cores OpenMP threads spin-waiting on each other
collapse: on this project's 2-core machine, one monster candidate took 10 ms on one thread and
340 ms on two; 32 Fisher examples 0.7 s against 53 s. Below SMALL_MODEL_PARAMS on the CPU, one
thread; larger models keep torch's default.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

SMALL_MODEL_PARAMS = 20_000_000


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` intra-op threads (None: leave torch's setting), then restore."""
    import torch

    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def per_worker(workers: int) -> int:
    """Intra-op threads for each of `workers` pool threads (the executor's, inspect's): the cores
    shared out. Measured on 2 cores: OpenMP threads on top of 2 workers made an elementwise
    merge 3-10x slower (threads spinning against each other)."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def pin(n: int) -> None:
    """`n` intra-op threads for the rest of the process: a worker process that does only this
    work (a Ray actor: Ray owns the parallelism)."""
    import torch

    torch.set_num_threads(n)


def is_small_cpu_model(model: Any, device: str) -> bool:
    return str(device) == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS


def cpu_threads_for(model: Any, device: str, override: int | None = None):
    """`override` threads if given, else one for a small model on the CPU, else unchanged."""
    return torch_threads(override or (1 if is_small_cpu_model(model, device) else None))
