"""The journal of an output in progress, so an interrupted merge can be resumed.

The work directory `.NAME.partial` holds the shard files (headers written up front), a state
file with the merge's signature (recipe, seed, inputs, shard headers), and an append-only
journal with one line per finished tensor: its name and the CRC32 of its bytes. On resume,
each journalled tensor is re-read from its shard and its CRC checked; only tensors that verify
are skipped, so a torn write or a lost page is recomputed. The journal needs no fsync for that
reason: verification, not ordering, makes resuming safe.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import zlib
from pathlib import Path

STATE = "mergesmith_partial.json"
JOURNAL = "mergesmith_journal.tsv"


def signature(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()


def crc(data: memoryview | bytes) -> int:
    return zlib.crc32(data)


class Journal:
    def __init__(self, work: Path) -> None:
        self.work = work
        self._fd: int | None = None

    def start(self, sig: str) -> None:
        tmp = self.work / f".{STATE}.tmp"
        tmp.write_text(json.dumps({"signature": sig}))
        os.replace(tmp, self.work / STATE)  # whole or absent, never a torn signature
        self._fd = os.open(self.work / JOURNAL, os.O_CREAT | os.O_WRONLY | os.O_TRUNC | os.O_APPEND, 0o644)

    def saved_signature(self) -> str | None:
        try:
            return json.loads((self.work / STATE).read_text()).get("signature")
        except (OSError, ValueError, AttributeError):
            return None

    def entries(self) -> dict[str, int]:
        """Journalled tensors (a torn last line is ignored)."""
        out = {}
        with contextlib.suppress(OSError):
            for line in (self.work / JOURNAL).read_text(errors="replace").splitlines():
                name, _, value = line.rpartition("\t")
                if name and value.isdigit():
                    out[name] = int(value)
        return out

    def reopen(self) -> None:
        self._fd = os.open(self.work / JOURNAL, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)

    def record(self, name: str, checksum: int) -> None:
        if self._fd is not None:
            os.write(self._fd, f"{name}\t{checksum}\n".encode())

    def close(self) -> None:
        """Stop recording, keeping the files (for --resume, or until the output is in place)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def finish(self) -> None:
        """Close and remove the bookkeeping files before the directory becomes the output."""
        self.close()
        for name in (STATE, JOURNAL):
            with contextlib.suppress(FileNotFoundError):
                (self.work / name).unlink()
