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
    working directory). Only when no such path exists, it has the form `owner/name`, and
    `owner` is not a local folder (`models/llama-bsae` is a typo, not a hub id) is it
    resolved through huggingface_hub's local cache or a download.
    """
    candidates = [Path(ref).expanduser()]
    if base_dir is not None and not Path(ref).is_absolute():
        candidates.insert(0, base_dir / ref)
    candidates = list(dict.fromkeys(candidates))
    for path in candidates:
        if path.is_dir():
            return path.resolve()
        if path.exists():
            raise CheckpointError(f"model {ref!r}: {path} is a file, not a model directory",
                                  hint="point at the directory holding config.json")
    local_parent = any(str(p.parent) != "." and p.parent.is_dir() for p in candidates)
    if allow_hub and looks_like_hub_id(ref) and not local_parent:
        return _from_hub(ref)
    raise CheckpointError(
        f"model {ref!r}: no such model folder (looked in {', '.join(str(c) for c in candidates)})"
        + close_matches(ref, candidates),
        hint="check the path; relative paths are taken from the recipe's directory first")


def close_matches(ref: str, candidates: list[Path]) -> str:
    """' (did you mean ...?)' with folders beside the missing one whose names are close."""
    import difflib

    name = Path(ref).name
    for path in candidates:
        try:
            siblings = [p.name for p in path.parent.iterdir() if p.is_dir()] if path.parent.is_dir() else []
        except OSError:
            continue
        close = difflib.get_close_matches(name, siblings, n=3, cutoff=0.6)
        if close:
            prefix = ref[: len(ref) - len(name)]
            return " (did you mean " + " or ".join(repr(prefix + c) for c in close) + "?)"
    return ""


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
