"""Arcee Fusion: take the other model's value only where the change matters most.

With base b and the other model x (softmax and the sum over the last dimension; a 1-D
tensor is one row):

    p = softmax(x) + 1e-8,  q = softmax(b) + 1e-8
    KL = sum p log(p / q)                       one value per row
    importance = |x - b| * KL                   per entry
    q1, q2, q3 = the entries of importance at sorted positions floor(0.25 (n-1)),
                 floor(0.5 (n-1)), floor(0.75 (n-1))
    threshold = q2 + 1.5 (q3 - q1)              an outlier fence above the median
    out = b + (x - b) [importance >= threshold]

Arcee AI (https://arcee.ai; mergekit's `arcee_fusion`). The quantiles are exact: mergekit
estimates them from a random sample of 1M entries on larger tensors (unseeded, so its
results vary from run to run there); this implementation finds them in one pass without
sorting, so the result is deterministic and equal to mergekit's on tensors up to 1M entries.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec
from mergesmith.methods.chunks import chunk_spans
from mergesmith.methods.selection import find_cuts

if TYPE_CHECKING:
    from torch import Generator, Tensor

QUANTILES = (0.25, 0.5, 0.75)


class ArceeFusionParams(MethodParams):
    """No parameters."""


def importance(x: Tensor, base: Tensor) -> Tensor:
    """|x - base| times the KL divergence of the rows' softmaxes."""
    p = torch.softmax(x, dim=-1).add_(1e-8)
    q = torch.softmax(base, dim=-1).add_(1e-8)
    kl = (p * torch.log(p / q)).sum(dim=-1, keepdim=True)
    return torch.sub(x, base).abs_().mul_(kl)


def sorted_entries(values: Tensor, positions: list[int]) -> list[float]:
    """The entries at the given 0-based positions of ``values`` sorted ascending, exactly."""
    flat = values.reshape(-1)
    n = flat.numel()
    cuts, _ = find_cuts(lambda span: flat[span], n, [n - pos for pos in positions], chunk_spans(flat))
    return [cut.threshold for cut in cuts]


def arcee_fusion(tensors: list[Tensor], base: Tensor | None, params: ArceeFusionParams, rng: Generator | None) -> Tensor:
    assert base is not None
    x = tensors[0]
    score = importance(x, base)
    n = score.numel()
    q1, q2, q3 = sorted_entries(score, [int(q * (n - 1)) for q in QUANTILES])
    keep = score.ge_(q2 + 1.5 * (q3 - q1))
    return torch.sub(x, base).mul_(keep).add_(base)


SPEC = MethodSpec(
    name="arcee_fusion",
    func=arcee_fusion,
    params=ArceeFusionParams,
    summary="Take the other model's values where their importance (|delta| x KL) is an outlier.",
    paper="https://arcee.ai",
    base="required",
    min_models=1,
    max_models=1,
    passthrough_singletons=True,
)
