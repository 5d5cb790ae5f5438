"""Statistics of task vectors (deltas = model - base) for one tensor group, computed in chunks.

A group is one tensor as the base, N models and (for a merged output) the merged model hold
it. Everything is reduced to sufficient statistics (`GroupSums`: sums of squares, dot
products, sign counts, kept energies) that add up across the tensors of a layer, so a layer's
cosine is the cosine of its concatenated deltas, not a mean of per-tensor cosines.

The inputs stay in their stored dtype; only CHUNK entries at a time are upcast to float32, so
the memory beyond the stored tensors is a few MB per model, whatever the tensor size.

Energy kept at a density p (what TIES' magnitude trim keeps): the share of sum(d^2) held by
the k = max(1, int(p n)) entries of largest |d| (the same k as methods/sparsify.py). It is
exact without sorting: pass 1 builds a histogram of |d| over fixed logarithmic bins (the
float32 exponent and SUB_BINS mantissa steps, counts and energy per bin); the bins above the
cut are summed whole, and pass 2 selects (torch.topk) only the entries of the one bin the
k-th entry falls in.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from mergesmith.lazy_torch import torch

if TYPE_CHECKING:
    from torch import Tensor

CHUNK = 1 << 20  # entries upcast at a time; < 2**24, so float32 sign-count matmuls stay exact
SUB_BINS = 16  # histogram bins per octave of |d|
_EXP_OFFSET = 150  # float32 frexp exponents lie in [-148, 128]
N_BINS = (128 + _EXP_OFFSET + 1) * SUB_BINS  # bin 0 holds exact zeros


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


def keep_count(density: float, n: int) -> int:
    """Entries a magnitude trim keeps at `density` (as methods/sparsify.py counts them)."""
    if density >= 1:
        return n
    return 0 if density <= 0 or n == 0 else max(1, int(density * n))


def magnitude_bins(a: Tensor) -> Tensor:
    """Histogram bin of each |d| (float32, >= 0): monotone in the value, 0 for exact zeros."""
    mantissa, exponent = torch.frexp(a)  # a = mantissa * 2**exponent, mantissa in [0.5, 1)
    step = ((mantissa - 0.5) * (2 * SUB_BINS)).long().clamp_(0, SUB_BINS - 1)
    bins = (exponent.long() + _EXP_OFFSET) * SUB_BINS + step
    return bins.masked_fill_(a == 0, 0)


@dataclass
class _Cut:
    """Where the k-th largest |d| of one model falls for one density."""

    model: int  # row in the chunk stack
    density: int  # index into the densities
    bin: int
    take: int  # entries needed from that bin
    above: float  # energy of the bins above it


def plan_cuts(counts: np.ndarray, energy: np.ndarray, n: int, densities: list[float],
              row: int) -> tuple[list[float], list[_Cut]]:
    """Kept energy per density from one model's histogram; cuts that need pass 2 (else 0)."""
    count_ge = np.cumsum(counts[::-1])[::-1]  # entries in bins >= j
    energy_ge = np.cumsum(energy[::-1])[::-1]
    kept, cuts = [], []
    for p_index, density in enumerate(densities):
        k = keep_count(density, n)
        if k >= count_ge[1]:  # keeps every non-zero entry: all the energy
            kept.append(float(energy_ge[0]))
            continue
        j = int(np.nonzero(count_ge >= k)[0].max())
        above = float(energy_ge[j + 1]) if j + 1 < len(energy_ge) else 0.0
        take = k - (int(count_ge[j + 1]) if j + 1 < len(count_ge) else 0)
        if take == counts[j]:
            kept.append(above + float(energy[j]))
        else:
            kept.append(0.0)
            cuts.append(_Cut(row, p_index, j, take, above))
    return kept, cuts


def chunk_spans(n: int) -> list[slice]:
    return [slice(s, min(n, s + CHUNK)) for s in range(0, n, CHUNK)]


def _finite(t: Tensor) -> Tensor:
    return torch.nan_to_num_(t, nan=0.0, posinf=0.0, neginf=0.0)


def delta_chunk(base: Tensor | None, models: list[Tensor], span: slice) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """(deltas, models, base, non-finite counts) of one span as float32 [N, C] stacks.

    NaN/inf entries count as 0 (and are reported). Without a base the deltas are the models
    themselves (only distances use them then)."""
    raw = torch.stack([m[span].float() for m in models])
    non_finite = (~torch.isfinite(raw)).sum(1)
    raw = _finite(raw)
    b = _finite(base[span].float()) if base is not None else None
    return (raw - b if b is not None else raw), raw, b, non_finite


def _np(t: Tensor) -> np.ndarray:
    return t.double().numpy()


def group_sums(base: Tensor | None, models: dict[int, Tensor], n_models: int, densities: list[float],
               merged: Tensor | None = None) -> GroupSums:
    """Statistics of one tensor: `models` maps model index -> tensor (all of the base's shape)."""
    sums = GroupSums(n_models, len(densities), has_base=base is not None, tensors=1)
    rows = sorted(models)
    idx = np.array(rows, dtype=np.int64)
    flat = [models[i].reshape(-1) for i in rows]
    b_flat = base.reshape(-1) if base is not None else None
    n = flat[0].numel()
    counts = torch.zeros(len(rows) * N_BINS, dtype=torch.float64)
    energy = torch.zeros_like(counts)
    for span in chunk_spans(n):
        deltas, raw, b, non_finite = delta_chunk(b_flat, flat, span)
        sums.non_finite[idx] += _np(non_finite)
        _add_moments(sums, idx, deltas, raw, b)
        if b is not None:
            _add_histogram(counts, energy, deltas)
        if merged is not None:
            _add_merged(sums, idx, deltas, raw, b, _finite(merged.reshape(-1)[span].float()))
    sums.present[idx] += 1
    sums.numel[idx] += n
    sums.pair_numel[np.ix_(idx, idx)] += n
    sums.pair_sq[np.ix_(idx, idx)] += sums.delta_sq[idx][:, None]
    sums.merged = merged is not None
    if b_flat is not None:
        sums.kept[idx] = _kept_energy(counts, energy, n, densities, b_flat, flat)
    return sums


def _add_moments(s: GroupSums, idx: np.ndarray, deltas: Tensor, raw: Tensor, b: Tensor | None) -> None:
    s.model_sq[idx] += _np((raw * raw).sum(1))
    if b is None:
        return
    s.base_sq[idx] += float((b * b).sum())
    s.delta_sq[idx] += _np((deltas * deltas).sum(1))
    signs = deltas.sign()
    mags = signs.abs()
    pairs = np.ix_(idx, idx)
    s.nonzero[idx] += _np(mags.sum(1))
    s.gram[pairs] += _np(deltas @ deltas.T)
    both = mags @ mags.T  # entries where both deltas are non-zero
    s.both[pairs] += _np(both)
    # s_i s_j is +1 (agree), -1 (conflict) or 0, so both - sum(s_i s_j) = 2 x conflicts
    s.conflicts[pairs] += _np((both - signs @ signs.T) / 2)
    s.any_conflict += float(((signs > 0).any(0) & (signs < 0).any(0)).sum())
    s.multi_nonzero += float((mags.sum(0) >= 2).sum())


def _add_merged(s: GroupSums, idx: np.ndarray, deltas: Tensor, raw: Tensor, b: Tensor | None, m: Tensor) -> None:
    s.merged_sq += float((m * m).sum())
    s.merged_numel += m.numel()
    merged_delta = m - b if b is not None else m
    s.merged_delta_sq += float((merged_delta * merged_delta).sum())
    if b is not None:  # least-squares coefficients of m - b on the deltas need <m - b, d_i>
        s.merged_base_sq += float((b * b).sum())
        s.proj[idx] += _np(deltas @ merged_delta)
    s.dist_sq[idx] += _np(((raw - m) ** 2).sum(1))


def _add_histogram(counts: Tensor, energy: Tensor, deltas: Tensor) -> None:
    a = deltas.abs()
    offsets = torch.arange(a.shape[0]).unsqueeze(1) * N_BINS  # one histogram per model
    bins = (magnitude_bins(a) + offsets).reshape(-1)
    counts += torch.bincount(bins, minlength=counts.numel()).double()
    energy += torch.bincount(bins, weights=a.reshape(-1).double().square(), minlength=counts.numel())


def _kept_energy(counts: Tensor, energy: Tensor, n: int, densities: list[float],
                 b_flat: Tensor, flat: list[Tensor]) -> np.ndarray:
    """Pass 2: the top-k energy per (model, density), exact."""
    counts_np = counts.numpy().reshape(len(flat), N_BINS)
    energy_np = energy.numpy().reshape(len(flat), N_BINS)
    kept = np.zeros((len(flat), len(densities)))
    cuts: list[_Cut] = []
    for row in range(len(flat)):
        kept[row], row_cuts = plan_cuts(counts_np[row], energy_np[row], n, densities, row)
        cuts.extend(row_cuts)
    if not cuts:
        return kept
    picked: list[list[Tensor]] = [[] for _ in cuts]
    for span in chunk_spans(n):
        a = delta_chunk(b_flat, flat, span)[0].abs_()
        bins = magnitude_bins(a)
        for cut, out in zip(cuts, picked):
            out.append(a[cut.model][bins[cut.model] == cut.bin])
    for cut, out in zip(cuts, picked):
        top = torch.topk(torch.cat(out), cut.take, sorted=False).values  # selection, no full sort
        kept[cut.model, cut.density] = cut.above + float(top.double().square().sum())
    return kept
