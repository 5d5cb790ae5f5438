"""The executor's worker pool: jobs cut into pieces, run by `threads` workers under a memory budget.

A job is one output tensor: `start()` allocates it, `piece(i)` computes part i (pieces of a job
may run at once, on different workers), `result()` hands it over, and the worker that finishes
the last piece passes it to the sink (the writer) itself. Workers take pieces in plan order, so
the output is written about sequentially; a new job starts only while the bytes of the jobs in
flight stay within the budget (or when none is in flight), which bounds memory by the budget
and the largest job, not by model size. Nobody waits on one future per tensor: each worker
loops until the work is done, and the caller's thread is one of them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


class Job(Protocol):
    name: str
    pieces: int
    cost: int  # bytes held while the job is in flight
    nbytes: int  # bytes of the finished tensor, for progress

    def start(self) -> None: ...
    def piece(self, index: int) -> None: ...
    def result(self) -> Any: ...


@dataclass
class _State:
    jobs: list[Job]
    budget: int
    next_job: int = 0
    next_piece: int = 0
    left: dict[int, int] = field(default_factory=dict)  # job index -> pieces not finished
    in_flight: int = 0  # bytes of started, unfinished jobs
    error: BaseException | None = None
    lock: threading.Condition = field(default_factory=threading.Condition)


def run_jobs(jobs: list[Job], sink: Callable[[str, Any], None], on_done: Callable[[int], None] | None, *,
             threads: int, budget: int) -> None:
    """Run every job; the first error stops the others and is raised here."""
    state = _State(jobs, budget)
    workers = [threading.Thread(target=_work, args=(state, sink, on_done), name=f"mergesmith_{i}", daemon=True)
               for i in range(max(1, threads) - 1)]
    for worker in workers:
        worker.start()
    try:
        _work(state, sink, on_done)
    except BaseException as exc:  # Ctrl-C in the calling thread: stop the workers too
        _fail(state, exc)
    while workers:  # each stops after its current piece once there is an error
        try:
            workers[-1].join()
            workers.pop()
        except BaseException as exc:
            _fail(state, exc)
    if state.error is not None:
        raise state.error


def _work(state: _State, sink: Callable[[str, Any], None], on_done: Callable[[int], None] | None) -> None:
    while True:
        task = _take(state)
        if task is None:
            return
        index, piece = task
        job = state.jobs[index]
        try:
            job.piece(piece)
            if _finish_piece(state, index):
                sink(job.name, job.result())
                if on_done is not None:
                    on_done(job.nbytes)
                _release(state, job)
        except BaseException as exc:
            _fail(state, exc)
            return


def _take(state: _State) -> tuple[int, int] | None:
    """The next (job, piece) to run, waiting while the budget is spent; None when all is taken."""
    with state.lock:
        while True:
            if state.error is not None or state.next_job >= len(state.jobs):
                return None
            job = state.jobs[state.next_job]
            if state.next_piece > 0 or state.in_flight == 0 or state.in_flight + job.cost <= state.budget:
                break
            state.lock.wait()
        index, piece = state.next_job, state.next_piece
        if piece == 0:
            job.start()
            state.in_flight += job.cost
            state.left[index] = job.pieces
        state.next_piece += 1
        if state.next_piece >= job.pieces:
            state.next_job, state.next_piece = state.next_job + 1, 0
        return index, piece


def _finish_piece(state: _State, index: int) -> bool:
    with state.lock:
        state.left[index] -= 1
        return state.left[index] == 0


def _release(state: _State, job: Job) -> None:
    with state.lock:
        state.in_flight -= job.cost
        state.lock.notify_all()


def _fail(state: _State, exc: BaseException) -> None:
    with state.lock:
        if state.error is None:
            state.error = exc
        state.lock.notify_all()
