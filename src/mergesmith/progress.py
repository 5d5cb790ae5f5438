"""A small progress bar on stderr (tensors, bytes, ETA); silent when not on a terminal."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, total_items: int, total_bytes: int, *, enabled: bool | None = None, label: str = "merging") -> None:
        self.total_items, self.total_bytes = total_items, max(total_bytes, 1)
        self.items = self.bytes = 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self.start = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self.items += 1
            self.bytes += nbytes
            now = time.monotonic()
            if self.enabled and (now - self._last > 0.1 or self.items == self.total_items):
                self._last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        frac = self.bytes / self.total_bytes
        elapsed = now - self.start
        eta = elapsed / frac - elapsed if frac > 0 else 0.0
        bar = "#" * int(frac * 30)
        sys.stderr.write(f"\r{self.label} [{bar:<30}] {self.items}/{self.total_items} tensors "
                         f"{self.bytes / 1e6:,.0f}/{self.total_bytes / 1e6:,.0f} MB ETA {eta:4.0f}s")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
