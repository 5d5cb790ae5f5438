"""The registry of merge methods: the single source for `mergesmith methods`, the recipe
JSON schema and "unknown method" errors.

To add a method: write a module with a parameter model and a pure function (see
`methods/base.py` for the contract), build a `MethodSpec`, and list it in `_SPECS` below.
"""

from __future__ import annotations

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.methods import (
    arcee_fusion,
    data_aware,
    karcher,
    linear,
    mergemonster,
    model_stock,
    multislerp,
    nearswap,
    nuslerp,
    passthrough,
    ram,
    sce,
    slerp,
    task_vector,
    task_vector_presets,
)
from mergesmith.methods.base import MethodSpec

_SPECS: tuple[MethodSpec, ...] = (
    linear.SPEC,
    slerp.SPEC,
    passthrough.SPEC,
    *task_vector.SPECS,
    *task_vector_presets.SPECS,
    nuslerp.SPEC,
    multislerp.SPEC,
    karcher.SPEC,
    model_stock.SPEC,
    sce.SPEC,
    nearswap.SPEC,
    arcee_fusion.SPEC,
    mergemonster.SPEC,
    *ram.SPECS,
    *data_aware.SPECS,
)

REGISTRY: dict[str, MethodSpec] = {}
for _spec in _SPECS:
    for _name in (_spec.name, *_spec.aliases):
        if _name in REGISTRY:
            raise RuntimeError(f"merge method {_name!r} registered twice")
        REGISTRY[_name] = _spec


def get_method(name: str) -> MethodSpec:
    """The method called `name`, or a RecipeError with a did-you-mean."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise RecipeError(
            f'unknown merge_method "{name}"{did_you_mean(name, REGISTRY)}',
            hint="run `mergesmith methods` for the list of methods",
        ) from None


def method_names() -> list[str]:
    return sorted(REGISTRY)
