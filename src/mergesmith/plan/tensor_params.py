"""Resolve a method's parameters for one output tensor into its params model."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from mergesmith.errors import RecipeError
from mergesmith.methods.base import MethodParams, MethodSpec
from mergesmith.recipe.model import Recipe
from mergesmith.recipe.values import is_missing, resolve

if TYPE_CHECKING:
    from mergesmith.plan.slices import SliceSpec, SourceSpec


def build_params(method: MethodSpec, recipe: Recipe, slc: SliceSpec, sources: list[SourceSpec],
                 out_name: str, input_names: list[str], t: float) -> MethodParams:
    """The params model instance for one tensor (per-model values aligned with `sources`)."""
    shared_scopes = [slc.params, slc.module_params, recipe.parameters]
    values: dict[str, Any] = {}
    for info in method.param_infos:
        if not info.per_model:
            value = resolve(info.name, shared_scopes, out_name, t)
            if is_missing(value):
                if info.required:
                    raise RecipeError(f"tensor {out_name!r}: {method.name} needs parameter "
                                      f"\"{info.name}\" and no setting (or filter rule) gives one",
                                      hint="add a rule without `filter` as the default value")
                continue
            values[info.field_name] = value
            continue
        per_model = []
        for src, name in zip(sources, input_names):
            value = resolve(info.name, [src.params, *shared_scopes], name, t)
            if is_missing(value):
                if info.required:
                    raise RecipeError(
                        f"model {src.model!r}, tensor {name!r}: {method.name} needs \"{info.name}\" "
                        "and no setting (or filter rule) gives one",
                        hint="add a value for this model, or a rule without `filter` as a default")
                value = info.default
            per_model.append(value)
        values[info.field_name] = per_model
    if method.statistics is not None:  # data-aware methods look each input's statistic up by name
        values["tensor_names"] = list(input_names)
    try:
        return method.params.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        what = f"parameter {where} = {err.get('input')!r}: {msg}" if where else f"{method.name}: {msg}"
        raise RecipeError(f"tensor {out_name!r}: {what}",
                          hint="check the values and gradients in the recipe's parameters") from None
