"""SCE: Select, Calculate, Erase - task vectors merged with weights read from the data.

With task vectors d_i = x_i - base:

    1. select    (select_topk < 1) keep the entries with the int(select_topk * nz) largest
                 variances across models, nz the number of entries with nonzero variance;
                 d_i <- d_i * mask for every model (select_topk <= 0 keeps nothing)
    2. calculate w_i = mean(d_i^2) / sum_j mean(d_j^2)       (equal weights when all d are 0)
    3. erase     s = sign(sum_i d_i); model i agrees where sign(d_i) == s (TIES, by sum)
    4. merge     out = base + sum_i [agree] w_i d_i / max(sum_i [agree] w_i, 1e-6)

Wan et al. 2024, "FuseChat: Knowledge Fusion of Chat Models", https://arxiv.org/abs/2408.07990.
Difference from mergekit: mergekit falls back to equal weights when sum_j mean(d_j^2)
< 1e-6, an absolute threshold that real fine-tunes (|d| ~ 1e-3, mean square ~ 1e-6) often
fall under, silently turning step 2 off. Here the fallback applies only when every task
vector is zero, so the weights follow the paper at any scale.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import Fraction, MethodParams, MethodSpec
from mergesmith.methods.chunks import Workspace, chunk_spans
from mergesmith.methods.selection import top_k_mask
from mergesmith.methods.task_vector import disjoint_sum

if TYPE_CHECKING:
    from torch import Generator, Tensor


class SceParams(MethodParams):
    select_topk: Fraction = Field(1.0, description="Share of the entries kept, by variance across models, in [0, 1].")
    int8_mask: bool = Field(False, description="Accepted for mergekit compatibility; no effect on results.")


def variance(deltas: Tensor) -> Tensor:
    """Population variance across models (dimension 0), by two element-wise passes
    (``Tensor.var`` over the leading dimension is very slow on CPU)."""
    mean = deltas.sum(dim=0).div_(deltas.shape[0])
    out = torch.zeros_like(mean)
    spread = torch.empty_like(mean)
    for delta in deltas:
        out.add_(torch.sub(delta, mean, out=spread).square_())
    return out.div_(deltas.shape[0])


def variance_mask(deltas: Tensor, share: float) -> Tensor:
    """SCE 'select': 0/1 mask of the int(share * nz) entries of largest variance (all
    entries when share >= 1; entries of zero variance only then)."""
    if share >= 1:
        return torch.ones_like(deltas[0])
    var = variance(deltas)
    k = int(int(torch.count_nonzero(var)) * share) if share > 0 else 0
    return top_k_mask(var, k).to(deltas.dtype)


def sce_weights(deltas: Tensor) -> list[float]:
    """SCE 'calculate': each model's share of the summed mean squares."""
    energy = [float(torch.linalg.vector_norm(d) ** 2) / max(1, d.numel()) for d in deltas]
    total = sum(energy)
    if not total > 0:
        return [1.0 / len(energy)] * len(energy)
    return [e / total for e in energy]


def sce(tensors: list[Tensor], base: Tensor | None, params: SceParams, rng: Generator | None) -> Tensor:
    assert base is not None
    if not tensors:
        return base.clone()
    flat_base = base.reshape(-1)
    deltas = torch.stack([x.reshape(-1) - flat_base for x in tensors])
    if params.select_topk < 1:
        deltas.mul_(variance_mask(deltas, params.select_topk))
    weights = sce_weights(deltas)
    out = torch.empty_like(flat_base)
    spans = chunk_spans(base)
    work = Workspace(flat_base, max((span.stop - span.start for span in spans), default=1))
    for span in spans:
        mixed, divisor = disjoint_sum(deltas[:, span], weights, "sum", work, divisor_weights=weights,
                                      vote_weights=[1.0] * len(weights))
        assert divisor is not None
        mixed.div_(divisor.clamp_(min=1e-6))
        torch.add(flat_base[span], mixed, out=out[span])
    return out.reshape(base.shape)


SPEC = MethodSpec(
    name="sce",
    func=sce,
    params=SceParams,
    summary="Select entries by variance, weight task vectors by their energy, erase sign conflicts.",
    paper="https://arxiv.org/abs/2408.07990",
    base="required",
    min_models=0,
    passthrough_singletons=False,
)
