"""torch's CPU thread count for a stretch of work, restored afterwards.

Tiny models (the demo family, test checkpoints) run many small operations that are too
small to split across threads, and on shared cores OpenMP threads spin-waiting on each other
collapse: on this project's 2-core machine, one monster candidate took 10 ms on one thread and
340 ms on two; 32 Fisher examples 0.7 s against 53 s. Below SMALL_MODEL_PARAMS on the CPU, one
thread; larger models keep torch's default.
"""

from __future__ import annotations

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


def is_small_cpu_model(model: Any, device: str) -> bool:
    return str(device) == "cpu" and sum(p.numel() for p in model.parameters()) < SMALL_MODEL_PARAMS


def cpu_threads_for(model: Any, device: str, override: int | None = None):
    """`override` threads if given, else one for a small model on the CPU, else unchanged."""
    return torch_threads(override or (1 if is_small_cpu_model(model, device) else None))
