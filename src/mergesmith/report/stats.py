"""Statistics of task vectors (deltas = model - base) for one tensor group, computed in chunks.

A group is one tensor as the base, N models and (for a merged output) the merged model hold
it. Everything is reduced to sufficient statistics (`GroupSums`: sums of squares, dot
products, sign counts, kept energies) that add up across the tensors of a layer, so a layer's
cosine is the cosine of its concatenated deltas, not a mean of per-tensor cosines.

The inputs stay in their stored dtype; only CHUNK entries at a time are upcast to float32, so
the memory beyond the stored tensors is a few MB per model, whatever the tensor size.

Per chunk the work is a few matrix products over the [N, C] stack of deltas D: D D^T gives
every |d_i|^2 and <d_i, d_j>; with S = sign(D) and A = |S|, A A^T counts the entries where
both are non-zero and (A A^T - S S^T) / 2 those where their signs differ. The energy kept at
a density is in report/energy.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mergesmith.lazy_torch import torch
from mergesmith.report.energy import Histogram, kept_energy

if TYPE_CHECKING:
    from torch import Tensor

CHUNK = 1 << 20  # entries upcast at a time; < 2**24, so float32 sign-count matmuls stay exact


def _zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, dtype=np.float64)


@dataclass
class GroupSums:
    """Sufficient statistics of one tensor group (or, summed, of a layer); indexed by model."""

    n_models: int
    n_densities: int
    has_base: bool = True
    tensors: int = 0
    present: np.ndarray = field(init=False)  # [N] tensors in which the model takes part
    numel: np.ndarray = field(init=False)  # [N] entries seen per model
    base_sq: np.ndarray = field(init=False)  # [N] |b|^2 over the model's tensors
    model_sq: np.ndarray = field(init=False)  # [N] |x|^2
    delta_sq: np.ndarray = field(init=False)  # [N] |d|^2
    nonzero: np.ndarray = field(init=False)  # [N] entries with d != 0
    non_finite: np.ndarray = field(init=False)  # [N] NaN/inf entries (counted as 0)
    kept: np.ndarray = field(init=False)  # [N, P] energy of the top-k entries per density
    gram: np.ndarray = field(init=False)  # [N, N] <d_i, d_j>
    pair_sq: np.ndarray = field(init=False)  # [N, N] |d_i|^2 over tensors where j is present too
    pair_numel: np.ndarray = field(init=False)  # [N, N] entries where both are present
    both: np.ndarray = field(init=False)  # [N, N] entries where d_i != 0 and d_j != 0
    conflicts: np.ndarray = field(init=False)  # [N, N] ... and their signs differ
    any_conflict: float = 0.0  # entries where some non-zero deltas disagree in sign
    multi_nonzero: float = 0.0  # entries with at least two non-zero deltas
    merged: bool = False
    merged_sq: float = 0.0  # |m|^2
    merged_delta_sq: float = 0.0  # |m - b|^2
    merged_base_sq: float = 0.0  # |b|^2 over the merged tensors
    merged_numel: float = 0.0
    proj: np.ndarray = field(init=False)  # [N] <m - b, d_i>
    dist_sq: np.ndarray = field(init=False)  # [N] |m - x_i|^2
    nominal: np.ndarray = field(init=False)  # [N] recipe weight x entries (report)
    nominal_numel: np.ndarray = field(init=False)  # [N] entries with a recipe weight

    def __post_init__(self) -> None:
        n, p = self.n_models, self.n_densities
        for name in ("present", "numel", "base_sq", "model_sq", "delta_sq", "nonzero", "non_finite",
                     "proj", "dist_sq", "nominal", "nominal_numel"):
            setattr(self, name, _zeros(n))
        self.kept = _zeros(n, p)
        for name in ("gram", "pair_sq", "pair_numel", "both", "conflicts"):
            setattr(self, name, _zeros(n, n))

    def add(self, other: GroupSums) -> None:
        """Accumulate another group's sums (tensors of one layer add up)."""
        for key, value in vars(other).items():
            if isinstance(value, (np.ndarray, float)):
                setattr(self, key, getattr(self, key) + value)
        self.tensors += other.tensors
        self.merged = self.merged or other.merged
        self.has_base = self.has_base and other.has_base


def chunk_spans(n: int) -> list[slice]:
    return [slice(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]


def _np(t: Tensor) -> np.ndarray:
    return t.double().numpy()


class _Chunks:
    """Upcasts spans of the stored tensors into reused float32 buffers."""

    def __init__(self, base: Tensor | None, models: list[Tensor], merged: Tensor | None) -> None:
        self.base = base.reshape(-1) if base is not None else None
        self.models = [m.reshape(-1) for m in models]
        self.merged = merged.reshape(-1) if merged is not None else None
        self.n = self.models[0].numel()
        width = min(self.n, CHUNK)
        self.d_buf = torch.empty(len(models), width)
        self.b_buf = torch.empty(width) if base is not None else None
        self.m_buf = torch.empty(width) if merged is not None else None

    def deltas(self, span: slice) -> tuple[Tensor, Tensor | None, np.ndarray | None]:
        """(D [N, C], base [C], NaN/inf counts per model, or None when there were none)."""
        width = span.stop - span.start
        d = self.d_buf[:, :width]
        for row, model in enumerate(self.models):
            d[row].copy_(model[span])  # upcast in place: no temporary per model
        non_finite = None
        if not torch.isfinite(d.sum()):  # rare: count, then treat as 0
            non_finite = _np((~torch.isfinite(d)).sum(1))
            torch.nan_to_num_(d, nan=0.0, posinf=0.0, neginf=0.0)
        b = None
        if self.b_buf is not None and self.base is not None:
            b = _finite(self.b_buf[:width].copy_(self.base[span]))
            d.sub_(b)
        return d, b, non_finite

    def merged_chunk(self, span: slice) -> Tensor:
        assert self.m_buf is not None and self.merged is not None
        return _finite(self.m_buf[: span.stop - span.start].copy_(self.merged[span]))

    def all_deltas(self):  # pass 2 of the kept energy
        for span in chunk_spans(self.n):
            yield self.deltas(span)[0]


def _finite(t: Tensor) -> Tensor:
    return t if torch.isfinite(t.sum()) else torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)


def group_sums(base: Tensor | None, models: dict[int, Tensor], n_models: int, densities: list[float],
               merged: Tensor | None = None) -> GroupSums:
    """Statistics of one tensor: `models` maps model index -> tensor (all of the base's shape)."""
    sums = GroupSums(n_models, len(densities), has_base=base is not None, tensors=1)
    rows = sorted(models)
    idx = np.array(rows, dtype=np.int64)
    chunks = _Chunks(base, [models[i] for i in rows], merged)
    hist = Histogram(len(rows))
    for span in chunk_spans(chunks.n):
        deltas, b, non_finite = chunks.deltas(span)
        if non_finite is not None:
            sums.non_finite[idx] += non_finite
        _add_moments(sums, idx, deltas, b)
        if merged is not None:
            _add_merged(sums, idx, deltas, b, chunks.merged_chunk(span))
        if b is not None:
            hist.add(deltas)
    sums.present[idx] += 1
    sums.numel[idx] += chunks.n
    sums.pair_numel[np.ix_(idx, idx)] += chunks.n
    sums.pair_sq[np.ix_(idx, idx)] += sums.delta_sq[idx][:, None]
    sums.merged = merged is not None
    if base is not None:
        sums.kept[idx] = kept_energy(hist, chunks.n, densities, chunks.all_deltas)
    return sums


def _add_moments(s: GroupSums, idx: np.ndarray, deltas: Tensor, b: Tensor | None) -> None:
    gram = deltas @ deltas.T
    sq = gram.diagonal()
    if b is None:  # no base: the "deltas" are the models; only their norms are used
        s.model_sq[idx] += _np(sq)
        return
    b_sq = float(b @ b)
    s.base_sq[idx] += b_sq
    s.model_sq[idx] += b_sq + _np(2 * (deltas @ b) + sq)  # |b + d|^2
    s.delta_sq[idx] += _np(sq)
    pairs = np.ix_(idx, idx)
    s.gram[pairs] += _np(gram)
    signs = deltas.sign()
    mags = signs.abs()
    both = mags @ mags.T  # entries where both deltas are non-zero
    conflicts = (both - signs @ signs.T) / 2  # s_i s_j is +1, -1 or 0: both - sum = 2 x conflicts
    s.both[pairs] += _np(both)
    s.conflicts[pairs] += _np(conflicts)
    s.nonzero[idx] += _np(both.diagonal())
    if len(idx) == 2:  # two models: "some pair disagrees" is that pair
        s.any_conflict += float(conflicts[0, 1])
        s.multi_nonzero += float(both[0, 1])
    elif len(idx) > 2:
        # per entry, with p positive and q negative deltas: sum(s) = p - q, sum(|s|) = p + q;
        # some pair disagrees iff p > 0 and q > 0, i.e. |p - q| < p + q
        ones = torch.ones(1, len(idx))
        net, count = (ones @ signs)[0], (ones @ mags)[0]
        s.any_conflict += float((net.abs() < count).sum())
        s.multi_nonzero += float((count >= 2).sum())


def _add_merged(s: GroupSums, idx: np.ndarray, deltas: Tensor, b: Tensor | None, m: Tensor) -> None:
    s.merged_sq += float(m @ m)
    s.merged_numel += m.numel()
    if b is not None:
        s.merged_base_sq += float(b @ b)
        m = m - b  # from here on the merged task vector, like the deltas
    s.merged_delta_sq += float(m @ m)
    if b is not None:  # least-squares coefficients of m - b on the deltas need <m - b, d_i>
        s.proj[idx] += _np(deltas @ m)
    # |m - x_i| = |(m - b) - d_i|, computed directly (no cancellation when m is close to x_i)
    s.dist_sq[idx] += _np(torch.linalg.vector_norm(deltas - m, dim=1) ** 2)
