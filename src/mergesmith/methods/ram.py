"""RAM and RAM+ (tensor-local): Reinforced Agent Merging.

With task vectors d_i = x_i - base and a threshold epsilon, per entry:

    changed_i = |d_i| > epsilon               did model i change this entry?
    c = sum_i changed_i                       how many models changed it
    RAM:   out = base + sum_i changed_i d_i / max(c, 1)
           an entry changed by one model takes its delta whole; one changed by several
           takes their mean (entries nobody changed, including |d| <= epsilon, stay base)
    RAM+:  per model, over this tensor: shared_i = #(changed_i and c > 1),
           unique_i = #(changed_i and c == 1), rho_i = shared_i / max(unique_i, epsilon),
           lambda_i = 1 + r * clamp(rho_i, 0, alpha);
           out = base + sum_i changed_i d_i (lambda_i [c == 1] + [c > 1] / c)
           the unique part of a model is boosted when much of its update overlaps others.

"Reinforced Agent Merging", https://arxiv.org/abs/2601.13572. Parameters and defaults as in
mergekit (`ram`: epsilon; `ramplus_tl`: r, alpha, epsilon). "Tensor-local": the counts are
taken per tensor, not over the whole model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, NonNegative

if TYPE_CHECKING:
    from torch import Generator, Tensor


class RamParams(MethodParams):
    epsilon: NonNegative = Field(1e-5, description="An entry counts as changed when |delta| > epsilon.")


class RamPlusParams(RamParams):
    r: NonNegative = Field(0.1, description="Strength of the boost of each model's unique entries.")
    alpha: NonNegative = Field(0.2, description="Cap on the overlap ratio rho in the boost.")


def _changed(tensors: list[Tensor], base: Tensor, epsilon: float) -> tuple[Tensor, Tensor, Tensor]:
    """(deltas zeroed where unchanged [M, n], changed mask [M, n], counts c [n] as float)."""
    deltas = torch.stack([x.reshape(-1) - base.reshape(-1) for x in tensors])
    changed = deltas.abs() > epsilon
    deltas.mul_(changed)
    return deltas, changed, changed.sum(dim=0, dtype=deltas.dtype)


def ram(tensors: list[Tensor], base: Tensor | None, params: RamParams, rng: Generator | None) -> Tensor:
    assert base is not None
    if not tensors:
        return base.clone()
    deltas, _, counts = _changed(tensors, base, params.epsilon)
    merged = deltas.sum(dim=0).div_(counts.clamp_(min=1.0))
    return merged.reshape(base.shape).add_(base)


def ramplus_tl(tensors: list[Tensor], base: Tensor | None, params: RamPlusParams, rng: Generator | None) -> Tensor:
    assert base is not None
    if not tensors:
        return base.clone()
    deltas, changed, counts = _changed(tensors, base, params.epsilon)
    unique = counts == 1
    merged = deltas.sum(dim=0).div_(counts.clamp(min=1.0)).mul_(~unique)  # the shared entries
    for i in range(len(tensors)):
        n_unique = int(torch.count_nonzero(changed[i] & unique))
        n_shared = int(torch.count_nonzero(changed[i])) - n_unique
        rho = n_shared / max(n_unique, params.epsilon) if n_shared else 0.0
        boost = 1.0 + params.r * min(max(rho, 0.0), params.alpha)
        merged.add_(deltas[i] * unique, alpha=boost)
    return merged.reshape(base.shape).add_(base)


_PAPER = "https://arxiv.org/abs/2601.13572"

SPECS = (
    MethodSpec(name="ram", func=ram, params=RamParams, paper=_PAPER, base="required", min_models=0,
               summary="Keep each entry's delta where one model changed it, average where several did."),
    MethodSpec(name="ramplus_tl", func=ramplus_tl, params=RamPlusParams, paper=_PAPER, base="required", min_models=0,
               summary="RAM with each model's unique entries boosted by its overlap ratio (per tensor)."),
)
