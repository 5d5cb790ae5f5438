"""A model reference -> an opened checkpoint: the one entry point for every input model.

A reference is a local directory, a hub id (resolved by `io/resolve.py`), or `BASE+ADAPTER`
(a PEFT LoRA adapter applied tensor by tensor, `io/lora_source.py`).
"""

from __future__ import annotations

from pathlib import Path

from mergesmith.errors import CheckpointError
from mergesmith.io.checkpoint import Checkpoint, open_checkpoint
from mergesmith.io.lora_source import open_with_adapter
from mergesmith.io.resolve import resolve_model


def open_model(ref: str, base_dir: Path | None, *, allow_pickle: bool = False) -> Checkpoint:
    """Resolve a recipe's model reference and index it (the one entry point for inputs)."""
    try:
        if "+" in ref:  # BASE+ADAPTER: a LoRA adapter applied tensor by tensor
            return open_with_adapter(ref, base_dir, allow_pickle=allow_pickle)
        return open_checkpoint(ref, resolve_model(ref, base_dir), allow_pickle=allow_pickle)
    except CheckpointError as exc:
        if not exc.message.startswith(f"model {ref!r}"):
            exc.message = f"model {ref!r}: {exc.message}"
        raise
