"""Presets of the task-vector pipeline: TIES, DARE, Model Breadcrumbs and DELLA.

Each preset is `merge_deltas` (methods/task_vector.py) with a sparsifier
(methods/sparsify.py) and, for the *_ties variants and della, a sign election. Names,
parameters and defaults are mergekit's (merge_methods/registry.py):

    method            sparsify (step 1)       elect (step 3)  normalize  rescale
    ties              magnitude top-k         sum             true       false
    dare_ties         random (Bernoulli)      sum             false      true
    dare_linear       random (Bernoulli)      -               false      true
    breadcrumbs       magnitude band (gamma)  -               false      false
    breadcrumbs_ties  magnitude band (gamma)  sum             false      false
    della             MagPrune (epsilon)      sum             true       true
    della_linear      MagPrune (epsilon)      -               false      true

Beyond mergekit: `consensus: count` on the presets that elect a sign, and
`rescale: inverse_density` on all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, model_validator

import mergesmith.methods.sparsify as sparsify
from mergesmith.methods.base import Fraction, MethodSpec, per_model
from mergesmith.methods.sparsify import ChunkMask, DeltaSource, Rescale
from mergesmith.methods.task_vector import (
    CONSENSUS_HELP,
    RESCALE_HELP,
    Consensus,
    TaskArithmeticParams,
    merge_deltas,
    rescale_mode,
)

if TYPE_CHECKING:
    from torch import Generator, Tensor


class SparseParams(TaskArithmeticParams):
    density: list[Fraction] = per_model(description="Share of each task vector kept, in [0, 1].", default=1.0)


class TiesParams(SparseParams):
    normalize: bool = Field(True, description="Divide by the summed weights of the models agreeing with the elected sign.")
    consensus: Consensus = Field("sum", description=CONSENSUS_HELP)


class DareLinearParams(SparseParams):
    rescale: bool | Rescale = Field(True, description=RESCALE_HELP)


class DareTiesParams(DareLinearParams):
    consensus: Consensus = Field("sum", description=CONSENSUS_HELP)


class BreadcrumbsParams(SparseParams):
    gamma: list[Fraction] = per_model(
        description="Share of each task vector's largest-magnitude entries dropped as outliers, in [0, 1].",
        default=0.01,
    )


class BreadcrumbsTiesParams(BreadcrumbsParams):
    consensus: Consensus = Field("sum", description=CONSENSUS_HELP)


class DellaLinearParams(DareLinearParams):
    epsilon: list[float] = per_model(
        description="Spread of the keep probability around density: from density - epsilon (smallest "
        "entry of a row) to density + epsilon (largest); both ends must lie in [0, 1].",
        default=0.15,
    )

    @model_validator(mode="after")
    def _probabilities_in_range(self) -> DellaLinearParams:
        for i, (density, epsilon) in enumerate(zip(self.density, self.epsilon, strict=True)):
            if 0 < density < 1 and not (density - abs(epsilon) >= 0 and density + abs(epsilon) <= 1):
                raise ValueError(
                    f"model {i}: density {density:g} +/- epsilon {epsilon:g} leaves [0, 1]; "
                    "choose epsilon <= min(density, 1 - density)"
                )
        return self


class DellaParams(DellaLinearParams):
    normalize: bool = Field(True, description="Divide by the summed weights of the models agreeing with the elected sign.")
    consensus: Consensus = Field("sum", description=CONSENSUS_HELP)


# Step 1 adapters: (source, spans, params, model index, rng) -> the model's ChunkMask.
def _magnitude(src: DeltaSource, spans: list[slice], params: SparseParams, i: int, rng: Generator | None) -> ChunkMask:
    return sparsify.magnitude_mask(src, spans, params.density[i], rescale_mode(params.rescale))


def _random(src: DeltaSource, spans: list[slice], params: SparseParams, i: int, rng: Generator | None) -> ChunkMask:
    return sparsify.random_mask(src, spans, params.density[i], sparsify.draw_seed(rng), rescale_mode(params.rescale))


def _outliers(src: DeltaSource, spans: list[slice], params: BreadcrumbsParams, i: int, rng: Generator | None) -> ChunkMask:
    return sparsify.outliers_mask(src, spans, params.density[i], params.gamma[i], rescale_mode(params.rescale))


def _della(src: DeltaSource, spans: list[slice], params: DellaLinearParams, i: int, rng: Generator | None) -> ChunkMask:
    seed = sparsify.draw_seed(rng)
    return sparsify.della_mask(src, spans, params.density[i], params.epsilon[i], seed, rescale_mode(params.rescale))


def _rows_along_dim1(tensors: list[Tensor], base: Tensor, params: DellaLinearParams, rng: Generator | None,
                     consensus: Consensus | None) -> Tensor:
    """DELLA ranks along dimension 1 (mergekit's choice); tensors of 3+ dimensions are
    permuted so that dimension is the row, merged, and permuted back."""
    if base.dim() <= 2:
        return merge_deltas(tensors, base, params, rng, sparsify=_della, consensus=consensus)
    moved = base.movedim(1, -1).shape
    rows = [t.movedim(1, -1).reshape(-1, base.shape[1]) for t in tensors]
    out = merge_deltas(rows, base.movedim(1, -1).reshape(-1, base.shape[1]), params, rng,
                       sparsify=_della, consensus=consensus)
    return out.reshape(moved).movedim(-1, 1).contiguous()


def ties(tensors: list[Tensor], base: Tensor | None, params: TiesParams, rng: Generator | None) -> Tensor:
    """TIES: trim each delta to its top-`density` magnitudes, elect signs, disjoint mean."""
    assert base is not None
    return merge_deltas(tensors, base, params, rng, sparsify=_magnitude, consensus=params.consensus)


def dare_ties(tensors: list[Tensor], base: Tensor | None, params: DareTiesParams, rng: Generator | None) -> Tensor:
    """DARE drop-and-rescale of each delta, then TIES sign election."""
    assert base is not None
    return merge_deltas(tensors, base, params, rng, sparsify=_random, consensus=params.consensus)


def dare_linear(tensors: list[Tensor], base: Tensor | None, params: DareLinearParams, rng: Generator | None) -> Tensor:
    """DARE drop-and-rescale of each delta, then a weighted sum."""
    assert base is not None
    return merge_deltas(tensors, base, params, rng, sparsify=_random)


def breadcrumbs(tensors: list[Tensor], base: Tensor | None, params: BreadcrumbsParams, rng: Generator | None) -> Tensor:
    """Model Breadcrumbs: drop outliers and small entries of each delta, weighted sum."""
    assert base is not None
    return merge_deltas(tensors, base, params, rng, sparsify=_outliers)


def breadcrumbs_ties(tensors: list[Tensor], base: Tensor | None, params: BreadcrumbsTiesParams, rng: Generator | None) -> Tensor:
    """Model Breadcrumbs sparsification with TIES sign election."""
    assert base is not None
    return merge_deltas(tensors, base, params, rng, sparsify=_outliers, consensus=params.consensus)


def della(tensors: list[Tensor], base: Tensor | None, params: DellaParams, rng: Generator | None) -> Tensor:
    """DELLA: magnitude-ranked random drop (MagPrune), TIES election, disjoint mean."""
    assert base is not None
    return _rows_along_dim1(tensors, base, params, rng, params.consensus)


def della_linear(tensors: list[Tensor], base: Tensor | None, params: DellaLinearParams, rng: Generator | None) -> Tensor:
    """DELLA's MagPrune, then a weighted sum."""
    assert base is not None
    return _rows_along_dim1(tensors, base, params, rng, None)


def _spec(name: str, func, params, summary: str, paper: str, randomized: bool = False) -> MethodSpec:  # noqa: ANN001
    return MethodSpec(name=name, func=func, params=params, summary=summary, paper=paper, base="required",
                      min_models=0, randomized=randomized, passthrough_singletons=False)


_TIES = "https://arxiv.org/abs/2306.01708"
_DARE = "https://arxiv.org/abs/2311.03099"
_BREADCRUMBS = "https://arxiv.org/abs/2312.06795"
_DELLA = "https://arxiv.org/abs/2406.11617"

SPECS = (
    _spec("ties", ties, TiesParams, "Trim task vectors by magnitude, elect signs, average the agreeing ones.", _TIES),
    _spec("dare_ties", dare_ties, DareTiesParams, "Randomly drop and rescale task vectors (DARE), then TIES sign election.",
          _DARE, randomized=True),
    _spec("dare_linear", dare_linear, DareLinearParams, "Randomly drop and rescale task vectors (DARE), then add them.",
          _DARE, randomized=True),
    _spec("breadcrumbs", breadcrumbs, BreadcrumbsParams, "Drop the largest and smallest task-vector entries, then add.",
          _BREADCRUMBS),
    _spec("breadcrumbs_ties", breadcrumbs_ties, BreadcrumbsTiesParams,
          "Breadcrumbs sparsification with TIES sign election.", _BREADCRUMBS),
    _spec("della", della, DellaParams, "Drop task-vector entries with magnitude-ranked probabilities, TIES election.",
          _DELLA, randomized=True),
    _spec("della_linear", della_linear, DellaLinearParams, "DELLA's magnitude-ranked random drop, then add.",
          _DELLA, randomized=True),
)
