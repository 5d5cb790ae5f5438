"""Linear merge (model soups): a weighted average of the inputs.

    out = sum_i w_i x_i / sum_i w_i        (normalize: true, the default)
    out = sum_i w_i x_i                    (normalize: false)

Wortsman et al. 2022, "Model soups", https://arxiv.org/abs/2203.05482.
When the weights of a tensor sum to zero, normalisation is skipped instead of dividing by
zero (mergekit would produce inf/NaN there).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.methods import arrays
from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor


class LinearParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each model (any real number).")
    normalize: bool = Field(True, description="Divide by the sum of the weights.")


def linear(tensors: list[Tensor], base: Tensor | None, params: LinearParams, rng: Generator | None) -> Tensor:
    out = arrays.weighted_sum(tensors, [float(w) for w in params.weight])
    total = sum(params.weight)
    if params.normalize and abs(total) > 1e-8:
        arrays.div_(out, total)
    return out


SPEC = MethodSpec(
    name="linear",
    func=linear,
    params=LinearParams,
    summary="Weighted average of the models (model soup).",
    paper="https://arxiv.org/abs/2203.05482",
    base="ignored",
    min_models=1,
    passthrough_singletons=False,
    elementwise=True,
    numpy=True,
)
