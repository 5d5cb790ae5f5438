"""Linear merge (model soups): a weighted average of the inputs.

    out = sum_i w_i x_i / sum_i w_i        (normalize: true, the default)
    out = sum_i w_i x_i                    (normalize: false)

Wortsman et al. 2022, "Model soups", https://arxiv.org/abs/2203.05482.
Weights that sum to zero for a tensor with `normalize: true` are refused when the recipe is
planned (mergekit would write inf/NaN there): the average is undefined, and `normalize:
false` is the way to ask for the plain weighted sum (e.g. a difference a - b).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

import mergesmith.methods.arrays as arrays
from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor


class LinearParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each model (any real number).")
    normalize: bool = Field(True, description="Divide by the sum of the weights.")

    @model_validator(mode="after")
    def _sum_not_zero(self) -> LinearParams:
        total = sum(self.weight)
        if self.normalize and self.weight and abs(total) <= 1e-8 * max(1.0, *(abs(w) for w in self.weight)):
            raise ValueError(f"the weights {self.weight} sum to 0, so their average is undefined; make "
                             "them sum to something else, or set normalize: false for the plain weighted sum")
        return self


def linear(tensors: list[Tensor], base: Tensor | None, params: LinearParams, rng: Generator | None) -> Tensor:
    out = arrays.weighted_sum(tensors, [float(w) for w in params.weight])
    if params.normalize:
        arrays.div_(out, sum(params.weight))  # not 0: LinearParams refuses that when the recipe is planned
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
