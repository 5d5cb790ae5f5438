"""The monster's progress bar: one tick per candidate, over donors x layers x ratios.

    [#######-------------]  161/460  35% | sort layer 3/4 cyclic@0.6 | 52.3 cand/s | ETA 0:06

Written to stderr on one line (carriage return), at most ten times a second.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 20


class ProgressBar:
    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = 0.0

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        return (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0

    def line(self, what: str) -> str:
        frac = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(frac * WIDTH)
        rate = self.rate()
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        eta = f"{int(left // 60)}:{int(left % 60):02d}"
        width = len(str(self.total))
        return (f"[{'#' * filled}{'-' * (WIDTH - filled)}] {self.done:>{width}}/{self.total} "
                f"{frac * 100:3.0f}% | {what} | {rate:.1f} cand/s | ETA {eta}")

    def tick(self, donor: str, part: str, method: str, ratio: float) -> None:
        self.done += 1
        now = time.perf_counter()
        if now - self.last >= 0.1 or self.done >= self.total:
            self.last = now
            self.stream.write("\r" + self.line(f"{donor} {part} {method}@{ratio:g}")[:100].ljust(100))
            self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line, so a log line can be printed in its place."""
        if self.last:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()
