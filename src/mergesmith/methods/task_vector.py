"""The task-vector family as one pipeline of small primitives.

Each non-base model i contributes a task vector (delta) d_i = x_i - base. The pipeline:

    1. sparsify   d_i <- keep a `density` share of d_i (magnitude / random / outliers /
                  DELLA), optionally rescaled (`rescale`, see methods/sparsify.py)
    2. weight     d_i <- w_i d_i
    3. elect sign (TIES) s = sign(sum_j d_j) (consensus: sum) or the sign most d_j hold
                  (consensus: count); ties go to +. m_i = [sign(d_i) == s]
    4. combine    D = sum_i m_i d_i                  (m_i = 1 without election)
    5. normalize  D <- D / sum_i m_i w_i             (when `normalize`; a zero divisor counts
                  as 1, and without election so does a weight sum below 1e-8)
    6. lambda     D <- lambda * D
    out = base + D

Task arithmetic (Ilharco et al. 2023, https://arxiv.org/abs/2212.04089) is steps 2, 4, 5,
6, elementwise (written with methods/arrays.py, so it also runs on numpy arrays); the presets
in methods/task_vector_presets.py (TIES, DARE, breadcrumbs, DELLA) choose the sparsifier and the election. Inputs are never written to; the deltas are fresh buffers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import Field

import mergesmith.methods.arrays as arrays
from mergesmith.lazy_torch import torch
from mergesmith.methods.base import Fraction, MethodParams, MethodSpec, per_model
from mergesmith.methods.chunks import Workspace, chunk_spans
from mergesmith.methods.sparsify import ChunkMask, DeltaSource, Rescale

if TYPE_CHECKING:
    from torch import Generator, Tensor

Consensus = Literal["sum", "count"]
# sparsify(source, spans, params, model index, rng) -> the model's prepared ChunkMask
Sparsifier = Callable[..., ChunkMask]

RESCALE_HELP = (
    "Rescale the kept entries of a sparsified task vector: true (or \"l1\") matches the L1 norm "
    "of the original delta, as mergekit does; \"inverse_density\" divides by density (the DARE "
    "paper's 1/p); false keeps them as they are."
)
CONSENSUS_HELP = (
    "Sign election: \"sum\" takes the sign of the summed weighted deltas (TIES), \"count\" the "
    "sign held by most models."
)


class TaskArithmeticParams(MethodParams):
    weight: list[float] = per_model(description="Weight of each model's task vector (any real).")
    density: list[Fraction] = per_model(
        description="Share of each task vector kept, in [0, 1] (unused by task_arithmetic).", default=1.0
    )
    normalize: bool = Field(False, description="Divide the combined task vector by the sum of the weights.")
    rescale: bool | Rescale = Field(False, description=RESCALE_HELP)
    lambda_: float = Field(1.0, alias="lambda", description="Scale of the combined task vector.")
    int8_mask: bool = Field(False, description="Accepted for mergekit compatibility; no effect on results.")


def rescale_mode(value: bool | Rescale) -> Rescale | None:
    """The `rescale` parameter as a mode: true is mergekit's L1 matching, false none."""
    if value is True:
        return "l1"
    return None if value is False else value


def elect_sign(deltas: Tensor, weights: list[float], consensus: Consensus, out: Tensor, scratch: Tensor) -> Tensor:
    """TIES step 'elect' on stacked deltas [models, n]: the sign (+1/-1) of every entry.

    The vote is on the weighted deltas w_i d_i. sum: the sign of sum_i w_i d_i (the TIES
    paper's mass election); count: the sign most w_i d_i hold. Ties go to +.
    """
    votes = out.zero_()
    for delta, w in zip(deltas, weights, strict=True):
        if w == 0:
            continue
        if consensus == "sum":
            votes.add_(delta, alpha=w)
        else:
            votes.add_(torch.sign(delta, out=scratch), alpha=1.0 if w > 0 else -1.0)
    return votes.ge_(0).mul_(2.0).sub_(1.0)


def disjoint_sum(deltas: Tensor, weights: list[float], consensus: Consensus, work: Workspace, *,
                 divisor_weights: list[float] | None = None,
                 vote_weights: list[float] | None = None) -> tuple[Tensor, Tensor | None]:
    """TIES steps 'elect' and 'disjoint merge' on stacked deltas [models, n], no mask tensor.

    The vote is on v_i d_i (v = ``vote_weights``, default ``weights``; same signs as
    ``weights``). With s the elected sign, model i agrees where w_i d_i s > 0, and w_i *
    (the part of d_i s with the sign of w_i) is w_i d_i s there and 0 elsewhere. Returns
    sum_i [agree] w_i d_i and, when ``divisor_weights`` u is given, sum_i [agree] u_i.
    Both are chunk-sized workspace buffers.
    """
    n = deltas.shape[1]
    votes = weights if vote_weights is None else vote_weights
    sign = elect_sign(deltas, votes, consensus, work.floats(1, n), work.floats(2, n))
    mixed = work.floats(3, n).zero_()
    divisor = work.floats(4, n).zero_() if divisor_weights is not None else None
    agreeing = work.floats(2, n)
    for i, w in enumerate(weights):
        if w == 0:
            continue
        torch.mul(deltas[i], sign, out=agreeing)
        agreeing.clamp_(min=0.0) if w > 0 else agreeing.clamp_(max=0.0)
        mixed.add_(agreeing, alpha=w)
        if divisor is not None and divisor_weights is not None:
            divisor.add_(agreeing.sign_(), alpha=divisor_weights[i] if w > 0 else -divisor_weights[i])
    return mixed.mul_(sign), divisor


def merge_deltas(
    tensors: list[Tensor],
    base: Tensor,
    params: TaskArithmeticParams,
    rng: Generator | None,
    *,
    sparsify: Sparsifier | None = None,
    consensus: Consensus | None = None,
) -> Tensor:
    """Run the task-vector pipeline (steps 1-6 of the module docstring), chunk by chunk.

    The sparsifiers are prepared first (thresholds, seeds, rescale factors); then each
    chunk of the output is computed from the same chunk of every input, in cache.
    """
    if not tensors:
        return base.clone()
    spans = chunk_spans(base)
    work = Workspace(base, max((span.stop - span.start for span in spans), default=1))
    flat_base = base.reshape(-1)  # one copy at most, shared by every source
    sources = [DeltaSource(x, flat_base, work) for x in tensors]
    masks = [sparsify(src, spans, params, i, rng) if sparsify else ChunkMask() for i, src in enumerate(sources)]
    weights = [float(w) for w in params.weight]
    scaled = [w * mask.scale for w, mask in zip(weights, masks, strict=True)]  # step 2, rescale folded in
    plain = plain_divisor(params, weights)
    out = torch.empty(base.shape, dtype=base.dtype, device=base.device)
    flat_out = out.view(-1)
    deltas = torch.empty((len(tensors), work.size), dtype=base.dtype, device=base.device)
    for mask in masks:
        mask.begin()
    for span in spans:
        chunk = deltas[:, : span.stop - span.start]
        for i, src in enumerate(sources):
            masks[i].apply(src.delta(span, chunk[i]), work)  # step 1
        if consensus is not None:  # steps 3-5
            divisor_weights = weights if params.normalize else None
            mixed, divisor = disjoint_sum(chunk, scaled, consensus, work, divisor_weights=divisor_weights)
            if divisor is not None:
                mixed.div_(divisor.masked_fill_(divisor == 0, 1.0))
        else:
            mixed = combine(chunk, scaled, plain, work.floats(3, chunk.shape[1]))  # steps 4-5
        torch.add(flat_base[span], mixed, alpha=params.lambda_, out=flat_out[span])  # step 6
    return out


def combine(deltas: Iterable[Tensor], weights: list[float], divisor: float | None, out: Tensor | None) -> Tensor:
    """Steps 4-5 without a sign election: out <- sum_i w_i d_i [/ divisor]."""
    out = arrays.weighted_sum(list(deltas), weights, out)
    if divisor is not None:
        arrays.div_(out, divisor)
    return out


def plain_divisor(params: TaskArithmeticParams, weights: list[float]) -> float | None:
    """Step 5 without an election: the sum of the weights, unless it is about 0."""
    total = sum(weights)
    return total if params.normalize and abs(total) >= 1e-8 else None


def task_arithmetic(tensors: list[Tensor], base: Tensor | None, params: TaskArithmeticParams, rng: Generator | None) -> Tensor:
    """out = base + lambda * sum_i w_i (x_i - base) [/ sum_i w_i when normalize]."""
    assert base is not None
    if not tensors:
        return arrays.copy(base)
    deltas = (arrays.sub(x, base) for x in tensors)  # steps 2, 4-5; no sparsifier, no election
    weights = [float(w) for w in params.weight]
    mixed = combine(deltas, weights, plain_divisor(params, weights), None)
    return arrays.add_scaled(base, mixed, params.lambda_)  # step 6


TASK_ARITHMETIC = MethodSpec(
    name="task_arithmetic",
    func=task_arithmetic,
    params=TaskArithmeticParams,
    summary="Add weighted task vectors (model - base) to the base.",
    paper="https://arxiv.org/abs/2212.04089",
    base="required",
    min_models=0,
    passthrough_singletons=False,
    elementwise=True,
    numpy=True,
)

SPECS = (TASK_ARITHMETIC,)
