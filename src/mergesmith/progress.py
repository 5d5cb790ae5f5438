"""The progress bar of every long command (merge, inspect, calibration statistics, monster):

    merging [#######-------------]  161/460  35% | 1,204/3,440 MB | 52.3 MB/s | ETA 0:42
    [#######-------------]  161/460  35% | sort layer 3/4 cyclic@0.6 | 52.3 cand/s | ETA 0:06

One line on stderr (carriage return), redrawn at most ten times a second; silent unless
enabled (by default: when stderr is a terminal). With `total_bytes` the fraction, rate and ETA
follow bytes (a merge's tensors differ in size), else items.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

WIDTH = 20


class Progress:
    def __init__(self, total: int, *, total_bytes: int | None = None, done: int = 0, unit: str = "items",
                 label: str = "", enabled: bool | None = None, stream: TextIO | None = None) -> None:
        self.total, self.done, self.start_done = total, done, done
        self.total_bytes = total_bytes
        self.bytes = 0
        self.unit, self.label = unit, label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.monotonic()
        self._last = 0.0
        self._width = 0  # of the line last drawn, to blank it
        self._lock = threading.Lock()

    def advance(self, nbytes: int = 0, note: str = "") -> None:
        """One more item done (of `nbytes` bytes); `note` says which."""
        with self._lock:
            self.done += 1
            self.bytes += nbytes
            now = time.monotonic()
            if self.enabled and (now - self._last >= 0.1 or self.done >= self.total):
                self._last = now
                self._draw(self.line(note, now))

    def line(self, note: str = "", now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.start
        if self.total_bytes is not None:
            frac = self.bytes / max(self.total_bytes, 1)
            rate, unit = self.bytes / 1e6 / elapsed if elapsed > 0 else 0.0, "MB"
            left = elapsed / frac - elapsed if frac > 0 else 0.0
        else:
            frac = min(1.0, self.done / self.total) if self.total else 1.0
            rate, unit = (self.done - self.start_done) / elapsed if elapsed > 0 else 0.0, self.unit
            left = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = int(frac * WIDTH)
        head = f"{self.label} " if self.label else ""
        parts = [f"{head}[{'#' * filled}{'-' * (WIDTH - filled)}] {self.done:>{len(str(self.total))}}/{self.total} "
                 f"{frac * 100:3.0f}%"]
        if note:
            parts.append(note)
        if self.total_bytes is not None:
            parts.append(f"{self.bytes / 1e6:,.0f}/{self.total_bytes / 1e6:,.0f} MB")
        parts.append(f"{rate:.1f} {unit}/s")
        parts.append(f"ETA {int(left // 60)}:{int(left % 60):02d}")
        return " | ".join(parts)

    def _draw(self, line: str) -> None:
        self.stream.write("\r" + line.ljust(self._width))
        self._width = len(line)
        self.stream.flush()

    def clear(self) -> None:
        """Blank the bar's line, so a log line can be printed in its place."""
        if self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
            self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
