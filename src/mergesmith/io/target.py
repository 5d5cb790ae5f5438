"""Where a command may write, and how a finished directory takes the place of an old one.

One rule for every command that writes (merge, moe, extract-lora, soup, evolve, monster,
--intermediate-dir): the target is never the current directory or an ancestor of it, never
an input, inside an input or an ancestor of an input; a non-empty target is replaced only
with --overwrite, and only when mergesmith wrote it (its `mergesmith_manifest.json` says so).

Replacing is two renames: the old output moves to `.NAME.old`, the new one into place. A
process killed between them leaves the old output in `.NAME.old`; the next command on that
target (under the lock) puts it back before doing anything else, and removes what the
interrupted one left.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from mergesmith.errors import OptionsError, OutputError

MANIFEST = "mergesmith_manifest.json"
# What an interrupted commit can leave inside a finished output (see io/journal.py).
BOOKKEEPING = ("mergesmith_partial.json", "mergesmith_journal.tsv")


def _real(path: Path) -> Path:
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def check_output_location(target: Path, inputs: Iterable[tuple[str, Path | None]] = (), *,
                          what: str = "output") -> None:
    """Refuse a target that would replace the working directory or touch an input.

    `inputs` are (name, directory) pairs; `what` names the option in the message
    ("output", "--intermediate-dir", "evolve output").
    """
    if str(target).strip() == "":
        raise OptionsError(f"{what} path is empty", hint="give the directory to write, e.g. ./merged")
    out = _real(target)
    cwd = _real(Path.cwd())
    if out == cwd or out in cwd.parents:
        place = "is the current directory" if out == cwd else "contains the current directory"
        raise OptionsError(f"{what} {target} {place} ({out}); writing there would replace it",
                           hint="give a new directory, e.g. ./merged")
    for name, path in inputs:
        if path is None:
            continue
        src = _real(path)
        if out == src:
            raise OptionsError(f"{what} {target} is input model {name!r} ({src})",
                               hint="write to a new directory; inputs are never written")
        if src in out.parents:
            raise OptionsError(f"{what} {target} is inside input model {name!r} ({src})",
                               hint="write to a directory outside every input model")
        if out in src.parents:
            raise OptionsError(f"{what} {target} contains input model {name!r} ({src}); replacing it "
                               "would delete that input", hint="choose another output directory")


def check_output_file(target: Path, inputs: Iterable[tuple[str, Path | None]] = (), *, what: str,
                      suffix: str, make_parents: bool = False) -> None:
    """Refuse a side file (`--json`, `--report`, `--out`) that would overwrite an input.

    The file may not be, or be inside, an input (a model folder or an input file); its
    folder must exist (unless the caller makes it: `make_parents`); an existing file is replaced only when it has the `suffix` that
    mergesmith writes there (a report.html, a scores .json), never a config or a text."""
    if str(target).strip() == "":
        raise OptionsError(f"{what} path is empty", hint=f"give a file name, e.g. out{suffix}")
    if target.is_dir():
        raise OptionsError(f"{what} {target} is a directory", hint=f"give a file name, e.g. ./out{suffix}")
    out = _real(target)
    for name, path in inputs:
        if path is None:
            continue
        src = _real(path)
        if out == src or src in out.parents:
            place = "is" if out == src else "is inside"
            raise OptionsError(f"{what} {target} {place} input {name!r} ({src}); inputs are never written",
                               hint=f"give a file outside every input, e.g. ./out{suffix}")
    if not make_parents and not out.parent.is_dir():
        raise OptionsError(f"{what} {target}: the folder {out.parent} does not exist",
                           hint="create it first, or give a path in an existing folder")
    if (target.is_symlink() or target.exists()) and (target.is_symlink() or out.suffix != suffix):
        kind = "a symbolic link" if target.is_symlink() else f"a file that is not {suffix}"
        raise OptionsError(f"{what} {target} exists and is {kind}; mergesmith replaces only its own "
                           f"{suffix} files", hint=f"give a new file name, e.g. out{suffix}")


def write_file_atomic(path: Path, text: str) -> Path:
    """Write a side file whole or not at all (a temporary file beside it, then a rename)."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise output_error(exc, path) from None
    return path


def written_by_mergesmith(path: Path) -> bool:
    """True when `path` holds a manifest that mergesmith wrote (merge, moe, extract-lora)."""
    manifest = path / MANIFEST
    if manifest.is_symlink() or not manifest.is_file():
        return False
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and isinstance(data.get("versions"), dict) and "mergesmith" in data["versions"]


def check_target(target: Path, overwrite: bool) -> None:
    """The target may be written: new, empty, or (with --overwrite) an output of mergesmith."""
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        kind = "a symbolic link" if target.is_symlink() else "a file"
        raise OptionsError(f"output {target} exists and is {kind}", hint="choose a directory path")
    if not target.is_dir() or not any(target.iterdir()):
        return
    if not overwrite:
        raise OptionsError(f"output directory {target} exists and is not empty",
                           hint="choose a new directory, or pass --overwrite to replace it")
    if not written_by_mergesmith(target):
        raise OptionsError(f"output directory {target} was not written by mergesmith (it has no "
                           f"{MANIFEST}), so --overwrite will not replace it",
                           hint="choose a new directory, or move its files away yourself")


def output_error(exc: OSError, path: Path | None) -> OutputError:
    """An OSError while writing, as a message that names the path and the way out."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return OutputError(f"{path}: no space left to write the output ({exc.strerror}; a full disk "
                           "or no free inodes)",
                           hint="free disk space or choose an output directory on a larger disk")
    if exc.errno == errno.EROFS:
        return OutputError(f"{path}: the file system is read-only",
                           hint="choose an output directory on a writable disk")
    return OutputError(f"{path}: cannot write: {exc.strerror or exc}",
                       hint="check the permissions and free space of the output directory")


def make_parents(path: Path) -> list[Path]:
    """Create the missing parents of `path`; returns those created (deepest last)."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    for p in missing:
        try:
            p.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            remove_empty(missing[: missing.index(p)])
            raise output_error(exc, p) from None
    return missing


def remove_empty(created: list[Path]) -> None:
    """Remove directories made by make_parents, if still empty (deepest first)."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()


class TargetLock:
    """An exclusive lock on one target: `.NAME.lock` beside it, held with flock.

    Releasing unlinks the file while still holding it; a process that opened the old file
    meanwhile finds, once it has the lock, that the path no longer names its file, and
    starts over with a new one. So two processes never both hold the lock of one target.
    """

    def __init__(self, target: Path) -> None:
        self.path = target.parent / f".{target.name}.lock"
        self.target = target
        self._fd: int | None = None

    def acquire(self) -> None:
        for _ in range(100):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            except OSError as exc:
                raise output_error(exc, self.path) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise OutputError(f"{self.target}: another mergesmith command is writing this target "
                                  "right now", hint="wait for it to finish, or choose another output "
                                  "directory") from None
            if self._still_linked(fd):
                self._fd = fd
                return
            os.close(fd)  # the holder released (and unlinked) it meanwhile: lock the new file
        raise OutputError(f"{self.path}: cannot take the lock", hint="remove the lock file if no "
                          "mergesmith command is running")

    def __enter__(self) -> TargetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _still_linked(self, fd: int) -> bool:
        try:
            on_disk = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (on_disk.st_dev, on_disk.st_ino) == (mine.st_dev, mine.st_ino)

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while held: nobody else holds this file now
        os.close(self._fd)
        self._fd = None


def old_copy(target: Path) -> Path:
    return target.parent / f".{target.name}.old"


def recover(target: Path) -> list[str]:
    """Finish what a killed command left at `target` (call under the target's lock)."""
    notes = []
    # Earlier versions moved the old output to .NAME.old-XXXX/previous.
    olds = [(old_copy(target), old_copy(target))]
    olds += [(p, p / "previous") for p in target.parent.glob(f".{target.name}.old-*")]
    for holder, previous in olds:
        if not holder.exists():
            continue
        if not target.exists() and previous.is_dir():
            os.rename(previous, target)
            notes.append(f"restored {target}, which an interrupted --overwrite had moved to {previous}")
        shutil.rmtree(holder, ignore_errors=True)
    for name in BOOKKEEPING if target.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            (target / name).unlink()  # a commit killed after its rename: the output is complete
    return notes


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def swap_into_place(tmp: Path, target: Path) -> None:
    """Move the finished `tmp` to `target`, replacing an old output (two renames, see above)."""
    old = None
    if target.exists():
        old = old_copy(target)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
    os.rename(tmp, target)
    fsync_dir(target.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def staged_folder(out: Path, check: Callable[[], None]) -> Iterator[Path]:
    """A folder to fill that then replaces `out` whole (extract-lora's adapter, monster's model).

    It is `.NAME.partial` beside `out`, filled under out's lock: a killed earlier run's leftovers
    are finished or removed first (`recover`), `check` runs under the lock, and the finished
    folder goes in place by `swap_into_place`. On any failure nothing new is left behind."""
    created = make_parents(out)
    tmp = out.parent / f".{out.name}.partial"  # one name: a killed run's is removed by the next
    try:
        with TargetLock(out):
            recover(out)
            check()
            for stale in [tmp, *out.parent.glob(f".{out.name}.tmp-*")]:  # earlier versions' temp dirs
                shutil.rmtree(stale, ignore_errors=True)
            tmp.mkdir()
            try:
                yield tmp
                swap_into_place(tmp, out)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise output_error(exc, out) from None
    finally:
        if not out.exists():
            remove_empty(created)


def prepare_workspace(out: Path, inputs: Iterable[tuple[str, Path | None]], command: str,
                      known: Iterable[str] = ()) -> Path:
    """The output folder of a search (soup, evolve, monster): checked, created and marked.

    Such a folder is written file by file while the search runs, so it must be new, empty,
    or an earlier output of the same command: its `.mergesmith_<command>` marker, or (written
    before markers existed) nothing but the `known` names that command writes.
    """
    check_workspace(out, inputs, command, known)
    try:
        out.mkdir(parents=True, exist_ok=True)
        mark_workspace(out, command)
    except OSError as exc:
        raise output_error(exc, out) from None
    return out


def check_workspace(out: Path, inputs: Iterable[tuple[str, Path | None]], command: str,
                    known: Iterable[str] = (), *, key: str = "output:") -> None:
    """The checks of prepare_workspace, creating nothing: the output rule, then the folder is
    new, empty or `command`'s own. `key` names the config key in messages."""
    check_output_location(out, inputs, what=f"{command} {key.rstrip(':')}")
    marker = out / f".mergesmith_{command}"
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise OptionsError(f"{command} output {out} exists and is not a directory",
                           hint=f"give a directory path for `{key}`")
    names = {p.name for p in out.iterdir()} if out.is_dir() else set()
    if names and not marker.is_file() and not names <= set(known):
        raise OptionsError(f"{command} output {out} exists, is not empty and was not written by "
                           f"mergesmith {command}", hint=f"give a new directory for `{key}`")


def mark_workspace(out: Path, command: str) -> None:
    """Mark `out` as `command`'s own, so that a later run may write into it again."""
    marker = out / f".mergesmith_{command}"
    if not marker.is_file():
        marker.write_text(json.dumps({"command": command}) + "\n", encoding="utf-8")


def discard_workspace(out: Path, command: str) -> None:
    """After a failure: remove the folder of prepare_workspace if nothing but its marker is in it."""
    marker = out / f".mergesmith_{command}"
    with contextlib.suppress(OSError):
        if marker.is_file() and [p.name for p in out.iterdir()] == [marker.name]:
            marker.unlink()
            out.rmdir()
