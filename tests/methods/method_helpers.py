"""Helpers for the method tests: build a method's params the way the planner does, run it."""

from __future__ import annotations

from typing import Any

import torch

from mergesmith.methods import get_method
from mergesmith.methods.base import MethodParams, MethodSpec
from mergesmith.methods.chunks import Workspace, chunk_spans
from mergesmith.methods.sparsify import (
    DeltaSource,
    Rescale,
    della_mask,
    draw_seed,
    magnitude_mask,
    outliers_mask,
    random_mask,
)


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


def sparsify_tensor(delta: torch.Tensor, mask_for: str, density: float, *, rescale: Rescale | None = None,
                    gamma: float = 0.01, epsilon: float = 0.15, rng: torch.Generator | None = None) -> torch.Tensor:
    """Sparsify one delta outside the pipeline (returns a new tensor).

    ``mask_for``: "magnitude", "magnitude_outliers", "random" or "della".
    """
    work = Workspace(delta, 1 << 18)
    rows = delta if delta.dim() <= 2 else delta.movedim(1, -1).reshape(-1, delta.shape[1])
    src = DeltaSource(rows.contiguous(), None, work)
    spans = chunk_spans(rows)
    if mask_for == "magnitude":
        mask = magnitude_mask(src, spans, density, rescale)
    elif mask_for == "magnitude_outliers":
        mask = outliers_mask(src, spans, density, gamma, rescale)
    elif mask_for == "random":
        mask = random_mask(src, spans, density, draw_seed(rng), rescale)
    elif mask_for == "della":
        mask = della_mask(src, spans, density, epsilon, draw_seed(rng), rescale)
    else:
        raise ValueError(f"unknown sparsification {mask_for!r}")
    out = torch.empty_like(src.x)
    mask.begin()
    for span in spans:
        mask.apply(src.delta(span, out[span]), work)
    out.mul_(mask.scale)
    if delta.dim() > 2:
        return out.reshape(rows.shape).reshape(delta.movedim(1, -1).shape).movedim(-1, 1).contiguous()
    return out.reshape(delta.shape)
