"""Model references -> local directories. A missing local path is an error, never a download."""

from __future__ import annotations

import re
from pathlib import Path

from mergesmith.errors import CheckpointError

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


def looks_like_hub_id(ref: str) -> bool:
    return bool(_HUB_ID.match(ref)) and not ref.startswith((".", "/", "~"))


def resolve_model(ref: str, base_dir: Path | None = None, *, allow_hub: bool = True) -> Path:
    """The local directory of a model reference.

    A reference is a local directory (relative to the recipe's directory, then to the
    working directory). Only when no such path exists and it has the form `owner/name` is it
    resolved through huggingface_hub's local cache or a download.
    """
    candidates = [Path(ref).expanduser()]
    if base_dir is not None and not Path(ref).is_absolute():
        candidates.insert(0, base_dir / ref)
    for path in candidates:
        if path.is_dir():
            return path.resolve()
        if path.exists():
            raise CheckpointError(f"model {ref!r}: {path} is a file, not a model directory",
                                  hint="point at the directory holding config.json")
    if allow_hub and looks_like_hub_id(ref):
        return _from_hub(ref)
    raise CheckpointError(
        f"model {ref!r}: no such directory (looked in {', '.join(str(c) for c in dict.fromkeys(candidates))})",
        hint="check the path; relative paths are taken from the recipe's directory first")


def _from_hub(ref: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"model {ref!r} is not a local directory and looks like a hub id, but huggingface_hub "
            "is not installed", hint="pip install 'mergesmith[hub]', or download the model and "
            "give its local path") from None
    import sys

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"]
    print(f"mergesmith: {ref!r} is not a local directory; fetching it from the Hugging Face hub "
          "(safetensors, config and tokenizer files only)", file=sys.stderr)
    try:
        return Path(snapshot_download(ref, allow_patterns=patterns, local_files_only=False))
    except Exception as exc:  # the hub client raises many types (offline, 404, auth)
        raise CheckpointError(
            f"model {ref!r}: not a local directory, and fetching it from the hub failed: "
            f"{type(exc).__name__}: {exc}",
            hint="when offline, download the model elsewhere and give its local path") from None
