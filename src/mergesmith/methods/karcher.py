"""Karcher mean: the weighted Riemannian (Fréchet) mean of the models on the hypersphere.

With inputs x_i (all of them: the base is not treated specially), flattened, and weights
a_i = w_i / sum_j w_j (equal weights unless `weighted: true`, see below):

    r_i = |x_i|, u_i = x_i / r_i                    inputs with r_i <= tol are left out of
                                                    the direction (they still count in the
                                                    final length); the a_i of the rest are
                                                    renormalised to sum to 1
    mu = normalize(sum_i a_i u_i)                   start at the normalised weighted mean
                                                    (u_first when that sum is shorter than tol)
    repeat at most max_iter times:
        theta_i = arccos <mu, u_i>
        g = sum_i a_i theta_i / sin(theta_i) (u_i - cos(theta_i) mu)   over theta_i >= tol
                                                    the Riemannian gradient (log map sum)
        stop when |g| < tol
        mu = normalize(cos(|g|) mu + sin(|g|) g / |g|)   exponential map step
    out = (sum_i a_i r_i) mu                        the weighted mean length, all inputs

Karcher 1977; for model merging: https://arxiv.org/abs/2603.04972. Parameters as in
mergekit (max_iter, tol), whose karcher takes equal weights and ignores a `weight`: so does
this one, unless `weighted: true` is set (a mergesmith extension, opt-in so that a mergekit
recipe keeps its meaning); the recipe then gets a warning for each ignored `weight`.
The unit vectors are never materialised: u_i = x_i / r_i enters every sum as a scalar.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, NonNegative, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor


class KarcherParams(MethodParams):
    max_iter: int = Field(10, ge=0, description="Most gradient steps on the sphere.")
    tol: float = Field(1e-5, gt=0.0, description="Stop when the gradient norm falls below this; "
                       "also the smallest norm and angle that count.")
    weighted: bool = Field(False, description="Use the per-model `weight` in the mean (a mergesmith extension: "
                           "mergekit's karcher ignores weights, and so does this one unless this is true).")
    weight: list[NonNegative] = per_model(
        description="Weight of each model in the mean; read only with `weighted: true`.", default=1.0
    )


def _dot(a: Tensor, b: Tensor) -> float:
    return float(torch.dot(a.reshape(-1), b.reshape(-1)))


def karcher_mean(tensors: list[Tensor], alphas: list[float], max_iter: int, tol: float) -> Tensor:
    """The weighted Karcher mean of ``tensors`` (alphas summing to 1), as in the docstring."""
    norms = [float(torch.linalg.vector_norm(x)) for x in tensors]
    valid = [i for i, r in enumerate(norms) if r > tol]
    if not valid:
        return torch.zeros_like(tensors[0])
    weight_sum = sum(alphas[i] for i in valid)
    if weight_sum <= 0:
        return torch.zeros_like(tensors[0])
    share = {i: alphas[i] / weight_sum for i in valid}
    mean = torch.zeros_like(tensors[0])
    for i in valid:
        mean.add_(tensors[i], alpha=share[i] / norms[i])
    length = float(torch.linalg.vector_norm(mean))
    if length < tol:
        mean = tensors[valid[0]] / norms[valid[0]]
    else:
        mean.div_(length)
    tangent = torch.empty_like(mean)
    for _ in range(max_iter):
        # g = sum_i a_i theta_i/sin(theta_i) (x_i / r_i - cos(theta_i) mu)
        tangent.zero_()
        along_mean = 0.0
        for i in valid:
            cos = min(1.0, max(-1.0, _dot(mean, tensors[i]) / norms[i]))
            theta = math.acos(cos)
            if theta < tol:
                continue
            coef = share[i] * theta / math.sin(theta)
            tangent.add_(tensors[i], alpha=coef / norms[i])
            along_mean += coef * cos
        tangent.add_(mean, alpha=-along_mean)
        step = float(torch.linalg.vector_norm(tangent))
        if step < tol:
            break
        mean.mul_(math.cos(step)).add_(tangent, alpha=math.sin(step) / step)
        unit = float(torch.linalg.vector_norm(mean))
        if unit > tol:
            mean.div_(unit)
    return mean.mul_(sum(a * r for a, r in zip(alphas, norms, strict=True)))


def karcher(tensors: list[Tensor], base: Tensor | None, params: KarcherParams, rng: Generator | None) -> Tensor:
    if len(tensors) == 1:
        return tensors[0]
    weights = params.weight if params.weighted else [1.0] * len(tensors)
    total = float(sum(weights))
    alphas = [float(w) / total for w in weights] if total > 0 else [1.0 / len(tensors)] * len(tensors)
    return karcher_mean(tensors, alphas, params.max_iter, params.tol)


SPEC = MethodSpec(
    name="karcher",
    func=karcher,
    params=KarcherParams,
    summary="Riemannian (Karcher) mean of the models on the hypersphere, rescaled to their mean norm.",
    paper="https://arxiv.org/abs/2603.04972",
    base="ignored",
    min_models=1,
    passthrough_singletons=False,
    opt_in=(("weight", "weighted"),),
)
