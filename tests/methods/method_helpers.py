"""Helpers for the method tests: build a method's params the way the planner does, run it."""

from __future__ import annotations

from typing import Any

import torch

from mergesmith.methods import get_method
from mergesmith.methods.base import MethodParams, MethodSpec


def make_params(spec: MethodSpec, n_models: int, **values: Any) -> MethodParams:
    """Params for ``n_models`` inputs; per-model values may be given as one scalar for all."""
    fields: dict[str, Any] = {}
    for info in spec.param_infos:
        if info.name in values:
            value = values.pop(info.name)
        elif info.field_name in values:
            value = values.pop(info.field_name)
        elif info.required:
            raise TypeError(f"{spec.name} needs {info.name}")
        elif info.per_model:
            value = info.default
        else:
            continue
        if info.per_model and not isinstance(value, list):
            value = [value] * n_models
        fields[info.name] = value
    if values:
        raise TypeError(f"unknown parameters for {spec.name}: {sorted(values)}")
    return spec.params.model_validate(fields)


def merge(name: str, tensors: list[torch.Tensor], base: torch.Tensor | None = None, *, seed: int = 0,
          **values: Any) -> torch.Tensor:
    """Run method ``name`` as the executor would (a generator only for random methods)."""
    spec = get_method(name)
    params = make_params(spec, len(tensors), **values)
    rng = torch.Generator().manual_seed(seed) if spec.randomized else None
    return spec.func(list(tensors), base, params, rng)
