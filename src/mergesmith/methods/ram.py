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
from mergesmith.methods.chunks import Workspace, chunk_spans

if TYPE_CHECKING:
    from torch import Generator, Tensor


class RamParams(MethodParams):
    epsilon: NonNegative = Field(1e-5, description="An entry counts as changed when |delta| > epsilon.")


class RamPlusParams(RamParams):
    r: NonNegative = Field(0.1, description="Strength of the boost of each model's unique entries.")
    alpha: NonNegative = Field(0.2, description="Cap on the overlap ratio rho in the boost.")


class _Changes:
    """Chunk by chunk: the deltas zeroed where unchanged, the 0/1 changed masks [M, chunk]
    and the counts c, in reused buffers."""

    def __init__(self, tensors: list[Tensor], base: Tensor, epsilon: float) -> None:
        self.xs = [x.reshape(-1) for x in tensors]
        self.base = base.reshape(-1)
        self.epsilon = epsilon
        self.spans = chunk_spans(base)
        size = max((span.stop - span.start for span in self.spans), default=1)
        self.work = Workspace(base, size)
        self.deltas = torch.empty((len(tensors), size), dtype=base.dtype, device=base.device)
        self.changed = torch.empty_like(self.deltas)

    def chunk(self, span: slice) -> tuple[Tensor, Tensor, Tensor]:
        n = span.stop - span.start
        deltas, changed = self.deltas[:, :n], self.changed[:, :n]
        counts = self.work.floats(0, n).zero_()
        for x, delta, mask in zip(self.xs, deltas, changed, strict=True):
            torch.sub(x[span], self.base[span], out=delta)
            torch.gt(torch.abs(delta, out=mask), self.epsilon, out=mask)
            delta.mul_(mask)
            counts.add_(mask)
        return deltas, changed, counts


def ram(tensors: list[Tensor], base: Tensor | None, params: RamParams, rng: Generator | None) -> Tensor:
    """out = base + sum_i changed_i d_i / max(c, 1)."""
    assert base is not None
    if not tensors:
        return base.clone()
    changes = _Changes(tensors, base, params.epsilon)
    out = torch.empty(base.shape, dtype=base.dtype, device=base.device)
    flat = out.view(-1)
    for span in changes.spans:
        deltas, _, counts = changes.chunk(span)
        merged = deltas.sum(dim=0).div_(counts.clamp_(min=1.0))
        torch.add(changes.base[span], merged, out=flat[span])
    return out


def _boosts(changes: _Changes, params: RamPlusParams) -> list[float]:
    """lambda_i = 1 + r clamp(shared_i / max(unique_i, epsilon), 0, alpha), over the tensor."""
    n = len(changes.xs)
    unique, changed = [0] * n, [0] * n
    for span in changes.spans:
        _, masks, counts = changes.chunk(span)
        alone = counts.eq_(1.0)
        for i in range(n):
            changed[i] += int(torch.count_nonzero(masks[i]))
            unique[i] += int(torch.dot(masks[i], alone))
    boosts = []
    for u, c in zip(unique, changed, strict=True):
        rho = (c - u) / max(u, params.epsilon) if c > u else 0.0
        boosts.append(1.0 + params.r * min(max(rho, 0.0), params.alpha))
    return boosts


def ramplus_tl(tensors: list[Tensor], base: Tensor | None, params: RamPlusParams, rng: Generator | None) -> Tensor:
    """RAM with the entries only model i changed multiplied by lambda_i."""
    assert base is not None
    if not tensors:
        return base.clone()
    changes = _Changes(tensors, base, params.epsilon)
    boosts = _boosts(changes, params)
    out = torch.empty(base.shape, dtype=base.dtype, device=base.device)
    flat = out.view(-1)
    for span in changes.spans:
        deltas, _, counts = changes.chunk(span)
        boosted = changes.work.floats(1, counts.numel()).zero_()
        for delta, boost in zip(deltas, boosts, strict=True):
            boosted.add_(delta, alpha=boost)
        shared = deltas.sum(dim=0).div_(counts.clamp(min=1.0))
        torch.add(changes.base[span], torch.where(counts == 1, boosted, shared), out=flat[span])
    return out


_PAPER = "https://arxiv.org/abs/2601.13572"

SPECS = (
    MethodSpec(name="ram", func=ram, params=RamParams, paper=_PAPER, base="required", min_models=0,
               summary="Keep each entry's delta where one model changed it, average where several did."),
    MethodSpec(name="ramplus_tl", func=ramplus_tl, params=RamPlusParams, paper=_PAPER, base="required", min_models=0,
               summary="RAM with each model's unique entries boosted by its overlap ratio (per tensor)."),
)
