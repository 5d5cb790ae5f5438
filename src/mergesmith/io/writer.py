"""Atomic, streaming, sharded safetensors output.

Every output tensor's name, dtype and shape is known from the plan before any is computed,
so shard layout and headers are fixed up front: each shard file is created (and its space
reserved) at the start, and each tensor is written at its offset as soon as it is ready, in
any order, from any thread. Memory holds only the tensors in flight.

All files go into a temporary directory beside the target, renamed into place only when
complete; a lock stops two merges writing the same target; on failure nothing is left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError, OutputError
from mergesmith.io.journal import Journal, crc, signature
from mergesmith.io.safetensors_format import tensor_nbytes
from mergesmith.io.target import (
    BOOKKEEPING,
    TargetLock,
    check_target,
    make_parents,
    output_error,
    recover,
    remove_empty,
    swap_into_place,
)


@dataclass(frozen=True)
class OutSpec:
    name: str
    dtype: str  # safetensors dtype name
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.dtype, self.shape)


@dataclass
class _Slot:
    shard: int
    offset: int  # absolute offset in the shard file
    nbytes: int


def parse_size(text: str | int) -> int:
    """'5G', '500M', '2000000' -> bytes (K/M/G/T are powers of 1000, Ki/Mi/Gi of 1024)."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().removesuffix("B")
    factors = {"KI": 1024, "MI": 1024**2, "GI": 1024**3, "TI": 1024**4,
               "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4}
    number, factor = s, 1
    for suffix, multiple in factors.items():
        if s.endswith(suffix):
            number, factor = s[: -len(suffix)], multiple
            break
    try:
        value = float(number) * factor
    except ValueError:
        raise OptionsError(f"shard size {text!r} is not a size", hint="use e.g. 5G, 500M or 2000000") from None
    if not math.isfinite(value) or value > 2**63:
        raise OptionsError(f"shard size {text!r} is not a finite size", hint="use e.g. 5G, 500M or 2000000")
    value = int(value)
    if value <= 0:
        raise OptionsError(f"shard size {text!r} must be positive", hint="use e.g. 5G or 500M")
    return value


def shard_names(count: int) -> list[str]:
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]


def layout_shards(specs: list[OutSpec], shard_size: int) -> list[list[OutSpec]]:
    """Split tensors in order into shards of at most `shard_size` bytes (a bigger tensor gets its own)."""
    shards: list[list[OutSpec]] = [[]]
    used = 0
    for spec in specs:
        if shards[-1] and used + spec.nbytes > shard_size:
            shards.append([])
            used = 0
        shards[-1].append(spec)
        used += spec.nbytes
    return shards


def _header_bytes(specs: list[OutSpec], metadata: dict[str, str]) -> tuple[bytes, dict[str, tuple[int, int]]]:
    header: dict[str, Any] = {"__metadata__": metadata}
    offsets = {}
    pos = 0
    for spec in specs:
        offsets[spec.name] = (pos, pos + spec.nbytes)
        header[spec.name] = {"dtype": spec.dtype, "shape": list(spec.shape), "data_offsets": [pos, pos + spec.nbytes]}
        pos += spec.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # align the data to 8 bytes, as the format recommends
    return len(raw).to_bytes(8, "little") + raw, offsets


class ShardedWriter:
    """Writes one merged checkpoint into `target`, atomically."""

    def __init__(self, target: Path, specs: list[OutSpec], *, shard_size: int, overwrite: bool = False,
                 resume: bool = False, fingerprint: str = "") -> None:
        self.target = target.absolute()
        self.specs = specs
        self.shard_size = shard_size
        self.overwrite = overwrite
        self.resume = resume
        self.fingerprint = fingerprint  # identifies recipe, seed and inputs, for --resume
        self.tmp: Path | None = None
        self.completed: set[str] = set()  # tensors verified from an interrupted run
        self.notes: list[str] = []
        self._fds: list[int] = []
        self._slots: dict[str, _Slot] = {}
        self._names: list[str] = []
        self._lock: TargetLock | None = None
        self._created: list[Path] = []
        self._journal: Journal | None = None

    # -- lifecycle -----------------------------------------------------------------
    def open(self) -> ShardedWriter:
        self._created = make_parents(self.target)
        self._lock = TargetLock(self.target)
        try:
            self._lock.acquire()
            # Under the lock: no other command creates or replaces the target meanwhile.
            self.notes += recover(self.target)
            check_target(self.target, self.overwrite)
            self.tmp = self.target.parent / f".{self.target.name}.partial"
            shards = layout_shards(self.specs, self.shard_size)
            self._names = shard_names(len(shards))
            headers = [_header_bytes(specs, {"format": "pt"}) for specs in shards]
            sig = signature(self.fingerprint, *(h for h, _ in headers))
            self._journal = Journal(self.tmp)
            if not (self.resume and self._resume(shards, headers, sig)):
                self._start_fresh(shards, headers, sig)
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.tmp or self.target) from None
        except BaseException:
            self.abort()
            raise
        return self

    def _start_fresh(self, shards: list[list[OutSpec]], headers: list, sig: str) -> None:
        assert self.tmp is not None and self._journal is not None
        if self.tmp.exists():
            self.notes.append(f"discarded an interrupted merge in {self.tmp} (pass --resume to continue one)")
            shutil.rmtree(self.tmp)
        self.tmp.mkdir()
        # The signature first: a run killed while reserving space is then still recognised.
        self._journal.start(sig)
        for index, (name, specs, (header, offsets)) in enumerate(zip(self._names, shards, headers)):
            fd = os.open(self.tmp / name, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
            self._fds.append(fd)
            _reserve(fd, len(header) + sum(s.nbytes for s in specs), self.tmp / name)
            _pwrite_all(fd, header, 0, self.tmp / name)
            self._add_slots(index, specs, header, offsets)

    def _add_slots(self, index: int, specs: list[OutSpec], header: bytes, offsets: dict) -> None:
        for spec in specs:
            start, end = offsets[spec.name]
            self._slots[spec.name] = _Slot(index, len(header) + start, end - start)

    def _resume(self, shards: list[list[OutSpec]], headers: list, sig: str) -> bool:
        """Reuse an interrupted run's verified tensors; False when there is nothing to resume."""
        assert self.tmp is not None and self._journal is not None
        if not self.tmp.is_dir():
            self.notes.append("no interrupted merge to resume; starting from the beginning")
            return False
        saved = self._journal.saved_signature()
        if saved is None:  # killed before its signature was written: it had done no work
            self.notes.append(f"the interrupted merge in {self.tmp} had not started; starting from the beginning")
            return False
        if saved != sig:
            kept, self.tmp = self.tmp, None  # keep the interrupted work: it still resumes with its own recipe
            raise OptionsError(f"{kept}: the interrupted merge was for another recipe, seed, inputs or "
                               "shard size, so it cannot be resumed",
                               hint="run again without --resume to start over")
        sizes = [len(h) + sum(s.nbytes for s in specs) for specs, (h, _) in zip(shards, headers)]
        if any(_size(self.tmp / n) != size for n, size in zip(self._names, sizes)):
            self.notes.append("the interrupted merge stopped while reserving space; starting from the beginning")
            return False
        for index, (name, specs, (header, offsets)) in enumerate(zip(self._names, shards, headers)):
            self._fds.append(os.open(self.tmp / name, os.O_RDWR))
            _pwrite_all(self._fds[-1], header, 0, self.tmp / name)  # it may have been killed before this
            self._add_slots(index, specs, header, offsets)
        for name, checksum in self._journal.entries().items():
            slot = self._slots.get(name)
            if slot is not None and crc(os.pread(self._fds[slot.shard], slot.nbytes, slot.offset)) == checksum:
                self.completed.add(name)
        self._journal.reopen()
        self.notes.append(f"resuming: {len(self.completed)} of {len(self._slots)} tensors already written and verified")
        return True

    def write(self, name: str, tensor: Any) -> None:
        """Write one finished tensor (already in its output dtype) at its place."""
        slot = self._slots[name]
        if slot.nbytes == 0:
            return
        raw = _bytes_of(tensor)
        if raw.nbytes != slot.nbytes:
            raise OutputError(f"tensor {name!r}: computed {raw.nbytes} bytes but planned {slot.nbytes}")
        _pwrite_all(self._fds[slot.shard], raw, slot.offset, self.tmp / self._names[slot.shard])
        if self._journal is not None:
            self._journal.record(name, crc(raw))

    def add_file(self, relpath: str, content: str | bytes) -> None:
        """Add a small file (config, card, tokenizer) to the output."""
        assert self.tmp is not None
        dest = (self.tmp / relpath).resolve()
        if self.tmp.resolve() not in dest.parents:
            raise OutputError(f"refusing to write {relpath!r}: it points outside the output directory")
        dest.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode() if isinstance(content, str) else content
        try:
            dest.write_bytes(data)
        except OSError as exc:
            raise output_error(exc, dest) from None

    def commit(self) -> Path:
        """Flush, write the index, and move the finished directory into place."""
        assert self.tmp is not None
        try:
            for fd in self._fds:
                os.fsync(fd)
                os.close(fd)
            self._fds = []
            if len(self._names) > 1:
                self.add_file("model.safetensors.index.json", self._index_json())
            check_target(self.target, self.overwrite)  # still under the lock: nothing else made it
            if self._journal is not None:
                self._journal.close()
            # The journal moves with the directory: killed before the rename, the work still
            # resumes; killed after it, the next command removes the two files (target.recover).
            swap_into_place(self.tmp, self.target)
            self.tmp = None
            for name in BOOKKEEPING:
                with contextlib.suppress(FileNotFoundError):
                    (self.target / name).unlink()
        except OSError as exc:
            self.abort()
            raise output_error(exc, self.target) from None
        except BaseException:
            self.abort()
            raise
        self._release()
        return self.target

    def _index_json(self) -> str:
        weight_map = {name: self._names[slot.shard] for name, slot in self._slots.items()}
        total = sum(slot.nbytes for slot in self._slots.values())
        return json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2)

    def suspend(self) -> str:
        """Stop on Ctrl-C, keeping the finished tensors for --resume; says what was kept."""
        if self.tmp is None or self._journal is None or self._journal.saved_signature() is None:
            self.abort()
            return "no output was left behind"
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        self._journal.close()
        done = len(self._journal.entries())
        kept, self.tmp = self.tmp, None
        self._release()
        return (f"{done} of {len(self._slots)} output tensors are kept in {kept}; run the same command "
                "with --resume to continue (without --resume the next run starts over)")

    def abort(self) -> None:
        """Remove everything this writer created; the target is left as it was."""
        if self._journal is not None and self.tmp is not None:
            self._journal.finish()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if not self.target.exists():
            remove_empty(self._created)
        self._created = []


def _bytes_of(tensor: Any) -> memoryview:
    """The bytes of a numpy array (the executor's CPU path) or a torch tensor, without a copy
    when they are contiguous on the CPU."""
    if type(tensor).__module__ == "numpy":
        import numpy as np

        return memoryview(np.ascontiguousarray(tensor).reshape(-1)).cast("B")
    from mergesmith.lazy_torch import torch

    data = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(data.view(torch.uint8).numpy()).cast("B")


def _reserve(fd: int, size: int, path: Path) -> None:
    """Reserve the file's space now, so a full disk fails before any merging work."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            os.ftruncate(fd, size)  # the filesystem cannot reserve; fall back to a sparse file
        else:
            raise output_error(exc, path) from None


def _pwrite_all(fd: int, data: Any, offset: int, path: Path | None) -> None:
    view = memoryview(data)
    done = 0
    try:
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
    except OSError as exc:
        raise output_error(exc, path) from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return -1
