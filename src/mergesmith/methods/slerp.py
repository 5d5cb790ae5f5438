"""SLERP: spherical linear interpolation between the base and one other model.

With v0 = base, v1 = other, both flattened:
    cos(theta) = <v0/|v0|, v1/|v1|>
    out = sin((1-t) theta)/sin(theta) * v0 + sin(t theta)/sin(theta) * v1
Nearly colinear or opposite inputs (|cos theta| > 0.9995) fall back to linear interpolation
(1-t) v0 + t v1, as mergekit does. t = 0 gives the base, t = 1 the other model.
Shoemake 1985; used for LLMs by mergekit (https://github.com/arcee-ai/mergekit).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec

if TYPE_CHECKING:
    from torch import Generator, Tensor

DOT_THRESHOLD = 0.9995
EPS = 1e-8


class SlerpParams(MethodParams):
    t: float = Field(ge=0.0, le=1.0, description="Interpolation factor: 0 = base, 1 = the other model.")


def slerp_pair(t: float, v0: Tensor, v1: Tensor) -> Tensor:
    """Spherical interpolation of two tensors of one shape, flattened."""
    n0 = torch.linalg.vector_norm(v0)
    n1 = torch.linalg.vector_norm(v1)
    n0 = n0 if n0 > EPS else torch.ones_like(n0)
    n1 = n1 if n1 > EPS else torch.ones_like(n1)
    dot = float(torch.sum((v0 / n0) * (v1 / n1)).clamp(-1.0, 1.0))
    if abs(dot) > DOT_THRESHOLD:
        return torch.lerp(v0, v1, t) if t != 0 else v0.clone()
    theta = math.acos(dot)
    sin_theta = math.sin(theta)
    c0 = math.sin((1.0 - t) * theta) / sin_theta
    c1 = math.sin(t * theta) / sin_theta
    out = v0 * c0
    out.add_(v1, alpha=c1)
    return out


def slerp(tensors: list[Tensor], base: Tensor | None, params: SlerpParams, rng: Generator | None) -> Tensor:
    assert base is not None  # guaranteed by the contract (base required)
    return slerp_pair(params.t, base, tensors[0])


SPEC = MethodSpec(
    name="slerp",
    func=slerp,
    params=SlerpParams,
    summary="Spherical interpolation between the base and one other model.",
    paper="https://en.wikipedia.org/wiki/Slerp",
    base="required",
    min_models=1,
    max_models=1,
    passthrough_singletons=True,
)
