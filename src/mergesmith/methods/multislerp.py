"""Multi-SLERP: barycentric interpolation of any number of models on the hypersphere.

With the non-base models x_i, weights w_i (divided by their sum when normalize_weights):

    v_i = x_i - base   (with a base)   or   x_i   (without), flattened
    u_i = v_i / (|v_i| + eps)                       project onto the unit sphere
    m   = sum_i w_i u_i;  m_hat = m / |m|           the weighted Euclidean mean, on the sphere
    tangent step: T = sum_i w_i (u_i - <u_i, m_hat> m_hat) is zero, because m_hat is the
                  direction of sum_i w_i u_i; the exponential map exp_m_hat(T) is m_hat
    out = [base +] (sum_i w_i |v_i|) m_hat          back to the weighted mean norm

so the result points along the weighted mean of the unit vectors, with the weighted mean
length. Computed directly from that closed form (mergekit evaluates the vanishing
tangent step numerically, which changes the result by rounding only). When |m| < eps
(opposite vectors cancelling) the weighted sum sum_i w_i v_i is returned instead: mergekit
does so for two models and raises an error for more.

Charles Goddard, https://goddard.blog/posts/multislerp-wow-what-a-cool-idea. One model in
gives it back unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor


class MultislerpParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each model (any real; normally positive).")
    normalize_weights: bool = Field(True, description="Divide the weights by their sum (skipped when it is 0).")
    eps: float = Field(1e-8, gt=0.0, description="Small constant guarding the divisions by norms.")


def multislerp(tensors: list[Tensor], base: Tensor | None, params: MultislerpParams, rng: Generator | None) -> Tensor:
    if len(tensors) == 1:
        return tensors[0]
    weights = [float(w) for w in params.weight]
    total = sum(weights)
    if params.normalize_weights and total != 0:
        weights = [w / total for w in weights]
    eps = params.eps
    direction = torch.zeros_like(tensors[0])  # m = sum_i w_i u_i
    mean_norm = 0.0
    for x, w in zip(tensors, weights, strict=True):
        v = x - base if base is not None else x
        norm = float(torch.linalg.vector_norm(v))
        direction.add_(v, alpha=w / (norm + eps))
        mean_norm += w * norm
    length = float(torch.linalg.vector_norm(direction))
    if length < eps:  # the unit vectors cancel: no direction to follow
        out = direction.zero_()
        for x, w in zip(tensors, weights, strict=True):
            out.add_(x - base if base is not None else x, alpha=w)
    else:
        out = direction.mul_(mean_norm / length)
    return out.add_(base) if base is not None else out


SPEC = MethodSpec(
    name="multislerp",
    func=multislerp,
    params=MultislerpParams,
    summary="Spherical barycentric interpolation of any number of models (of task vectors with a base).",
    paper="https://goddard.blog/posts/multislerp-wow-what-a-cool-idea",
    base="optional",
    min_models=1,
    passthrough_singletons=False,
)
