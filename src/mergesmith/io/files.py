"""Reading files of a model folder without hanging on a FIFO or following a link out of it.

A model folder is untrusted input: a `tokenizer_config.json` that links to
`/proc/self/environ` would copy the environment (tokens included) into the output, and a
weights file that is a FIFO would block the first read forever. Only regular files are read,
and side files only when they resolve inside the model folder (or, for a model in the
Hugging Face cache, inside that repository's `blobs/`, where the cache keeps the real files).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from mergesmith.errors import CheckpointError


def check_regular(path: Path, what: str = "file") -> None:
    """Raise unless `path` is a regular file (after links): FIFOs, devices and folders are refused."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read this {what}: {exc.strerror or exc}",
                              hint="check that the file exists and is readable") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
        raise CheckpointError(f"{path}: this {what} is {kind}, not a regular file",
                              hint="replace it with the real file")


def _allowed_roots(model_dir: Path) -> list[Path]:
    root = Path(os.path.realpath(model_dir))
    roots = [root]
    if root.parent.name == "snapshots":  # huggingface_hub cache: snapshots/REV/x -> ../../blobs/HASH
        roots.append(root.parent.parent / "blobs")
    return roots


def read_side_file(model_dir: Path, name: str) -> bytes | None:
    """The bytes of `model_dir/name`, None when absent; refuses links out of the folder."""
    path = model_dir / name
    if not os.path.lexists(path):
        return None
    real = Path(os.path.realpath(path))
    if not any(real == r or r in real.parents for r in _allowed_roots(model_dir)):
        raise CheckpointError(f"{path} links to {real}, outside the model folder; mergesmith copies "
                              "only files inside it", hint=f"replace the link with a copy of the real {name}")
    check_regular(real, "side file")
    try:
        return real.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}",
                              hint="check the file's permissions, or fetch the model again") from None
