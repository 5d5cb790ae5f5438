"""Passthrough: copy one input tensor unchanged, optionally scaled.

    out = scale * x        (scale defaults to 1)

Used with `slices:` to stack layers of one or more models (frankenmerges).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor


class PassthroughParams(MethodParams):
    scale: list[float | None] = per_model(
        description="Factor applied to the tensor (e.g. 0 to silence a layer's output projection).",
        default=None,
    )


def passthrough(tensors: list[Tensor], base: Tensor | None, params: PassthroughParams, rng: Generator | None) -> Tensor:
    scale = params.scale[0]
    return tensors[0] if scale is None else tensors[0] * scale


SPEC = MethodSpec(
    name="passthrough",
    func=passthrough,
    params=PassthroughParams,
    summary="Copy one model's tensors as they are (layer stacking with slices).",
    base="ignored",
    min_models=1,
    max_models=1,
    returns_input=lambda params: params.scale[0] is None,
    elementwise=True,
    numpy=True,
)
