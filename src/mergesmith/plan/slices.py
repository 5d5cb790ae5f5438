"""A `models:` list or `slices:` -> a uniform list of slices (`models:` is one slice over all
layers), for a whole recipe or one module of a `modules:` recipe."""

from __future__ import annotations

from dataclasses import dataclass

from mergesmith.errors import IncompatibleModelsError, RecipeError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.recipe.model import ModelEntry, Params, SliceDef


@dataclass(frozen=True)
class SourceSpec:
    model: str
    start: int
    end: int  # exclusive
    params: Params | None = None


@dataclass(frozen=True)
class SliceSpec:
    sources: list[SourceSpec]
    base: str | None
    params: Params | None
    module_params: Params | None = None  # the `parameters:` of the module (`modules:`) it is in

    @property
    def length(self) -> int:
        return self.sources[0].end - self.sources[0].start


def group_slices(models: list[ModelEntry] | None, slices: list[SliceDef] | None, base: str | None,
                 module_params: Params | None, checkpoints: dict[str, Checkpoint], where: str = "") -> list[SliceSpec]:
    """A `models:` list or `slices:` (of a recipe or of one of its modules) as slices."""
    if models:
        return [_models_slice(models, base, module_params, checkpoints)]
    out = []
    for s, slc in enumerate(slices or []):
        sources = []
        for i, src in enumerate(slc.sources):
            start, end = src.layer_range
            available = checkpoints[src.model].num_layers
            if end > available:
                raise RecipeError(
                    f"{where}slices[{s}].sources[{i}]: layer_range [{start}, {end}] goes beyond model "
                    f"{src.model!r}, which has {available} layers (0..{available - 1})",
                    hint=f"the end of a layer_range is exclusive; use at most [{start}, {available}]")
            sources.append(SourceSpec(src.model, start, end, src.parameters))
        out.append(SliceSpec(sources, slc.base_model or base, slc.parameters, module_params))
    return out


def _models_slice(models: list[ModelEntry], base: str | None, module_params: Params | None,
                  checkpoints: dict[str, Checkpoint]) -> SliceSpec:
    entries = [(m.model, m.parameters) for m in models]
    if base and base not in [m for m, _ in entries]:
        entries.append((base, None))  # mergekit merges the base as an input too
    counts = {model: checkpoints[model].num_layers for model, _ in entries}
    if len(set(counts.values())) > 1:
        listing = ", ".join(f"{m}: {n}" for m, n in counts.items())
        raise IncompatibleModelsError(
            f"the models have different numbers of layers ({listing})",
            hint="use `slices:` with a layer_range per model to choose which layers to merge")
    count = next(iter(counts.values()))
    sources = [SourceSpec(model, 0, count, params) for model, params in entries]
    return SliceSpec(sources, base, None, module_params)
