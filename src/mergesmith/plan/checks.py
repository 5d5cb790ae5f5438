"""Checks of a plan that make sure the output is a model transformers can load.

From headers and config.json alone, before any tensor is read: the models are of one
architecture (or --allow-crimes says to merge them anyway, as in mergekit), a layer stack
has one width, the output's config.json gives the vocabulary its embedding has, and no
model folder is merged with itself under two spellings.
"""

from __future__ import annotations

import os
from typing import Any

from mergesmith.arch import head_and_embedding
from mergesmith.errors import CheckpointError, IncompatibleModelsError, RecipeError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.plan.ops import TensorOp
from mergesmith.plan.slices import SliceSpec


def architecture(ckpt: Checkpoint) -> tuple[str | None, str | None]:
    """(model_type, the model class) config.json names; None where it names none."""
    kind = ckpt.config.get("model_type")
    names = ckpt.config.get("architectures")
    cls = names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None
    return (kind if isinstance(kind, str) else None), cls


def check_architectures(checkpoints: dict[str, Checkpoint], config_source: str, allow_crimes: bool,
                        *, fix: str | None = None) -> list[str]:
    """Refuse models of different architectures unless allowed; then say what happens.
    `fix`: the hint of a command that has no --allow-crimes (soup, evolve, monster...)."""
    archs = {ref: architecture(ckpt) for ref, ckpt in checkpoints.items()}
    kinds = {a[0] for a in archs.values() if a[0]}
    classes = {a[1] for a in archs.values() if a[1]}
    if len(kinds) <= 1 and len(classes) <= 1:
        return []
    label = {ref: a[1] or a[0] for ref, a in archs.items() if a[1] or a[0]}
    listing = ", ".join(f"{ref!r} is {a}" for ref, a in label.items())
    out = f"{label.get(config_source, 'its')} model with the config.json of {config_source!r}"
    if not allow_crimes:
        raise IncompatibleModelsError(
            f"the models are of different architectures ({listing}); their weights do not mean the same "
            "things, so the merge would be a model of no architecture",
            hint=fix or "merge models of one architecture; or pass --allow-crimes to merge them anyway, as "
                        f"mergekit does: the output is then a {out}")
    return [f"--allow-crimes: merging models of different architectures ({listing}); the output is a {out}, "
            "and the other models' tensors are used by name as if they were its own"]


def _width(ckpt: Checkpoint) -> int | None:
    _, embed = head_and_embedding(ckpt.tensors)
    if embed is None or len(ckpt.tensors[embed].shape) != 2:
        return None
    return ckpt.tensors[embed].shape[1]


def check_widths(slices: list[SliceSpec], checkpoints: dict[str, Checkpoint], config_source: str) -> None:
    """Every model that gives layers has the output's hidden size (a layer stack of one width).
    A slice that merges the config source with others is compared tensor by tensor instead."""
    want = _width(checkpoints[config_source])
    if want is None:
        return
    for slc in slices:
        if any(src.model == config_source for src in slc.sources):
            continue
        for src in slc.sources:
            width = _width(checkpoints[src.model])
            if width is not None and width != want:
                raise IncompatibleModelsError(
                    f"model {src.model!r} has hidden size {width} but the output has {want}, the hidden "
                    f"size of {config_source!r}: its {_layers(src.start, src.end)} would not fit the other "
                    "layers, and transformers could not load the result",
                    hint="stack layers of models of one size (fine-tunes of one base)")


def _layers(start: int, end: int) -> str:
    return f"layer {start}" if end - start == 1 else f"layers {start} to {end - 1}"


def check_vocab_config(config: dict[str, Any], ops: list[TensorOp], config_source: str) -> None:
    """The output config.json's vocab_size is its embedding's row count, or it would not load."""
    text = config.get("text_config") if "vocab_size" not in config else config
    size = text.get("vocab_size") if isinstance(text, dict) else None
    _, embed = head_and_embedding([op.name for op in ops])
    rows = next((op.shape[0] for op in ops if op.name == embed), None)
    if isinstance(size, int) and not isinstance(size, bool) and rows is not None and size != rows:
        raise CheckpointError(
            f"model {config_source!r}: config.json says vocab_size = {size} but its embedding {embed!r} "
            f"has {rows} rows; the merged model takes this config.json and transformers could not load it",
            hint="restore the model's own config.json (this one does not belong to these weights)")


def check_same_folders(slices: list[SliceSpec], checkpoints: dict[str, Checkpoint]) -> None:
    """One model folder named twice in one merge (`./a` and `a`) would be averaged in twice."""
    for slc in slices:
        refs = [s.model for s in slc.sources] + ([slc.base] if slc.base else [])
        seen: dict[str, str] = {}
        for ref in dict.fromkeys(refs):
            ckpt = checkpoints[ref]
            if type(ckpt) is not Checkpoint or ckpt.path is None:  # BASE+ADAPTER, a planned step
                continue
            key = os.path.realpath(ckpt.path)
            if key in seen:
                raise RecipeError(f"model {seen[key]!r} and model {ref!r} are the same folder ({key}), listed "
                                  "twice in one merge", hint="name it once, with one spelling (combine their "
                                  "weights into one entry)")
            seen[key] = ref
