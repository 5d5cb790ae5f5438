"""NuSLERP: spherical interpolation of two models, by weights, with or without a base.

With the two non-base models x_0, x_1 and their weights w_0, w_1:

    t = w_1 / (w_0 + w_1)                   (t = 0.5 when |w_0 + w_1| < 1e-6)
    v_i = x_i - base   (with a base)   or   x_i   (without)
    split v_0, v_1 into vectors: the whole tensor (nuslerp_flatten: true, the default), the
    vectors along dimension 0 (nuslerp_row_wise: true), or along the last dimension;
    for each pair of vectors a, b:
        cos(theta) = <a/|a|, b/|b|>         (norms clamped below at 1e-7)
        c_a = sin((1-t) theta) / sin(theta),  c_b = sin(t theta) / sin(theta)
        (c_a, c_b) = (1-t, t) where the vectors are colinear (1 - cos^2 <= 1e-16)
    out = [base +] c_a a + c_b b

Shoemake 1985 (SLERP); mergekit's NuSLERP (https://github.com/arcee-ai/mergekit). Unlike
`slerp`, the base is optional and the factor comes from per-model weights; with a base
the task vectors are interpolated, which keeps the base's scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor

EPS = 1e-8


class NuslerpParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each of the two models; t = w_1 / (w_0 + w_1).")
    nuslerp_row_wise: bool = Field(
        False, description="Interpolate the vectors along dimension 0 instead of along the last dimension."
    )
    nuslerp_flatten: bool = Field(
        True, description="Interpolate the whole tensor as one vector (overrides nuslerp_row_wise)."
    )


def nuslerp_vectors(t: float, a: Tensor, b: Tensor, row_wise: bool, flatten: bool) -> Tensor:
    """SLERP of every vector pair of ``a`` and ``b`` (see the module docstring)."""
    shape = a.shape
    if flatten or a.dim() <= 1:
        a, b = a.reshape(1, -1), b.reshape(1, -1)
    elif row_wise:
        a, b = a.transpose(0, -1), b.transpose(0, -1)
    norm_a = torch.linalg.vector_norm(a, dim=-1, keepdim=True).clamp_(min=1e-7)
    norm_b = torch.linalg.vector_norm(b, dim=-1, keepdim=True).clamp_(min=1e-7)
    cos = ((a / norm_a) * (b / norm_b)).sum(dim=-1, keepdim=True).clamp_(-1.0, 1.0)
    colinear = (1 - cos.square()) <= EPS**2
    theta = torch.acos(torch.where(colinear, torch.zeros_like(cos), cos))
    sin_theta = torch.where(colinear, torch.ones_like(theta), torch.sin(theta))
    coef_a = torch.where(colinear, 1.0 - t, torch.sin((1.0 - t) * theta) / sin_theta)
    coef_b = torch.where(colinear, torch.full_like(theta, t), torch.sin(t * theta) / sin_theta)
    out = a * coef_a
    out.addcmul_(b, coef_b)
    if row_wise and not flatten and len(shape) > 1:
        out = out.transpose(0, -1)
    return out.reshape(shape)


def nuslerp(tensors: list[Tensor], base: Tensor | None, params: NuslerpParams, rng: Generator | None) -> Tensor:
    w0, w1 = params.weight
    total = w0 + w1
    t = 0.5 if abs(total) < 1e-6 else w1 / total
    x0, x1 = tensors
    if base is None:
        return nuslerp_vectors(t, x0, x1, params.nuslerp_row_wise, params.nuslerp_flatten)
    out = nuslerp_vectors(t, x0 - base, x1 - base, params.nuslerp_row_wise, params.nuslerp_flatten)
    return out.add_(base)


SPEC = MethodSpec(
    name="nuslerp",
    func=nuslerp,
    params=NuslerpParams,
    summary="Spherical interpolation of two models by weight, of task vectors when a base is given.",
    paper="https://github.com/arcee-ai/mergekit",
    base="optional",
    min_models=2,
    max_models=2,
    passthrough_singletons=True,
)
