"""The task-vector family as one pipeline of small primitives.

Each non-base model i contributes a task vector (delta) d_i = x_i - base. The pipeline:

    1. sparsify   d_i <- keep a `density` share of d_i (magnitude / random / ...), optionally
                  rescaled (DARE, DELLA)
    2. weight     d_i <- w_i d_i
    3. elect sign (TIES) m_i = [sign(d_i) == sign(sum_j d_j)]   (consensus: sum | count)
    4. combine    D = sum_i m_i d_i
    5. normalize  D <- D / sum_i m_i w_i     (when `normalize`; a zero divisor counts as 1)
    6. lambda     D <- lambda * D
    out = base + D

Task arithmetic (Ilharco et al. 2023, https://arxiv.org/abs/2212.04089) is steps 2, 4, 5, 6.
Presets for TIES, DARE, breadcrumbs and DELLA are built on the same `merge_deltas`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import Fraction, MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor

Consensus = Literal["sum", "count"]
# sparsify(delta, density, params, index, rng) -> sparse delta
Sparsifier = Callable[..., "Tensor"]


class TaskArithmeticParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each model's task vector.")
    density: list[Fraction] = per_model(
        description="Share of each task vector kept (unused by task_arithmetic itself).", default=1.0
    )
    normalize: bool = Field(False, description="Divide the summed task vectors by the sum of the weights.")
    rescale: bool = Field(False, description="Rescale sparsified task vectors (unused without sparsification).")
    lambda_: float = Field(1.0, alias="lambda", description="Scale of the combined task vector.")
    int8_mask: bool = Field(False, description="Accepted for mergekit compatibility; has no effect on results.")


def elect_sign(deltas: Tensor, consensus: Consensus) -> Tensor:
    """TIES step 'elect': mask of entries whose sign agrees with the elected sign.

    sum: the sign of the summed (weighted) deltas (the TIES paper's mass election);
    count: the sign held by most models. Ties go to +.
    """
    signs = deltas.sign()
    votes = deltas.sum(dim=0) if consensus == "sum" else signs.sum(dim=0)
    elected = torch.where(votes >= 0, 1.0, -1.0).to(deltas.dtype)
    return signs == elected


def merge_deltas(
    tensors: list[Tensor],
    base: Tensor,
    params: TaskArithmeticParams,
    rng: Generator | None,
    *,
    sparsify: Sparsifier | None = None,
    consensus: Consensus | None = None,
) -> Tensor:
    """Run the task-vector pipeline (steps 1-6 of the module docstring)."""
    if not tensors:
        return base.clone()
    deltas = torch.stack([t - base for t in tensors])
    if sparsify is not None:
        for i in range(len(tensors)):
            deltas[i] = sparsify(deltas[i], params, i, rng)
    weights = torch.tensor(params.weight, dtype=deltas.dtype, device=deltas.device)
    weights = weights.reshape((-1,) + (1,) * base.dim())
    deltas.mul_(weights)
    if consensus is not None:
        mask = elect_sign(deltas, consensus)
        mixed = (deltas * mask).sum(dim=0)
        divisor = (weights * mask).sum(dim=0)
        divisor[divisor == 0] = 1.0
    else:
        mixed = deltas.sum(dim=0)
        divisor = weights.sum(dim=0)
        divisor[divisor.abs() < 1e-8] = 1.0
    if params.normalize:
        mixed.div_(divisor)
    if params.lambda_ != 1.0:
        mixed.mul_(params.lambda_)
    return mixed.add_(base)


def task_arithmetic(tensors: list[Tensor], base: Tensor | None, params: TaskArithmeticParams, rng: Generator | None) -> Tensor:
    assert base is not None
    return merge_deltas(tensors, base, params, rng)


TASK_ARITHMETIC = MethodSpec(
    name="task_arithmetic",
    func=task_arithmetic,
    params=TaskArithmeticParams,
    summary="Add weighted task vectors (model - base) to the base.",
    paper="https://arxiv.org/abs/2212.04089",
    base="required",
    min_models=0,
    passthrough_singletons=True,
)

SPECS = (TASK_ARITHMETIC,)
