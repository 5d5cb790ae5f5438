"""Energy kept at a density: the share of |d|^2 in the k largest |d|, without sorting.

k = max(1, int(p n)) as methods/sparsify.py counts it, so this is what TIES' magnitude trim
keeps of a task vector. Pass 1 builds a histogram of |d| per model over fixed logarithmic
bins: for a float32 >= 0, its upper 16 bits (the bfloat16 it truncates to: 8 exponent bits
and 7 mantissa bits) order like the value, so they are a bin with 128 steps per octave, read
as an int16 view at no cost (no log, no frexp; bin 0 holds zeros and the tiniest subnormals).
Bins above the cut are summed whole; pass 2 selects (torch.kthvalue) among the few entries of
the one bin where the k-th largest falls, so the selection is exact. Bin energies are
float32 sums within a chunk, float64 across chunks (relative error ~1e-6).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mergesmith.lazy_torch import torch

if TYPE_CHECKING:
    from torch import Tensor

N_BINS = 1 << 15  # the upper 16 bits of a float32 >= 0, whose sign bit is 0
_HIGH = 1 if sys.byteorder == "little" else 0  # which int16 half holds the upper bits


def keep_count(density: float, n: int) -> int:
    """Entries a magnitude trim keeps at `density` (as methods/sparsify.py counts them)."""
    if density >= 1:
        return n
    return 0 if density <= 0 or n == 0 else max(1, int(density * n))


def magnitude_bins(a: Tensor) -> Tensor:
    """Histogram bin (int32) of each |d| (float32 >= 0, last dim contiguous): monotone in |d|."""
    return a.view(torch.int16)[..., _HIGH::2].to(torch.int32)


class Histogram:
    """Counts and energies of |d| per bin, one histogram per model row."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.counts = torch.zeros(rows, N_BINS, dtype=torch.float64)
        self.energy = torch.zeros(rows, N_BINS, dtype=torch.float64)

    def add(self, deltas: Tensor) -> None:
        a = deltas.abs()
        bins = magnitude_bins(a)
        squares = a.mul_(a)
        for row in range(self.rows):
            self.counts[row] += torch.bincount(bins[row], minlength=N_BINS)
            self.energy[row] += torch.bincount(bins[row], weights=squares[row], minlength=N_BINS)


@dataclass
class Cut:
    """Where the k-th largest |d| of one model falls for one density."""

    row: int
    density: int  # index into the densities
    bin: int
    take: int  # entries needed from that bin
    above: float  # energy of the bins above it


def plan_cuts(counts: np.ndarray, energy: np.ndarray, n: int, densities: list[float],
              row: int) -> tuple[list[float], list[Cut]]:
    """Kept energy per density from one model's histogram, and the cuts pass 2 must finish
    (their kept energy is 0 here)."""
    count_ge = np.cumsum(counts[::-1])[::-1]  # entries in bins >= j
    energy_ge = np.cumsum(energy[::-1])[::-1]
    kept, cuts = [], []
    for p_index, density in enumerate(densities):
        k = keep_count(density, n)
        if k >= count_ge[1]:  # keeps every entry above bin 0: all the energy there is
            kept.append(float(energy_ge[0]))
            continue
        j = int(np.nonzero(count_ge >= k)[0].max())
        above = float(energy_ge[j + 1]) if j + 1 < len(energy_ge) else 0.0
        take = k - (int(count_ge[j + 1]) if j + 1 < len(count_ge) else 0)
        if take == counts[j]:
            kept.append(above + float(energy[j]))
        else:
            kept.append(0.0)
            cuts.append(Cut(row, p_index, j, take, above))
    return kept, cuts


def kept_energy(hist: Histogram, n: int, densities: list[float],
                chunks: Callable[[], object]) -> np.ndarray:
    """[rows, densities] top-k energies; `chunks()` yields the delta chunks again for pass 2."""
    counts, energy = hist.counts.numpy(), hist.energy.numpy()
    kept = np.zeros((hist.rows, len(densities)))
    cuts: list[Cut] = []
    for row in range(hist.rows):
        kept[row], row_cuts = plan_cuts(counts[row], energy[row], n, densities, row)
        cuts.extend(row_cuts)
    if not cuts:
        return kept
    picked: list[list[Tensor]] = [[] for _ in cuts]
    for deltas in chunks():  # type: ignore[attr-defined]
        a = deltas.abs()
        bins = magnitude_bins(a)
        for cut, out in zip(cuts, picked):
            out.append(a[cut.row][bins[cut.row] == cut.bin])
    for cut, out in zip(cuts, picked):
        kept[cut.row, cut.density] = cut.above + top_energy(torch.cat(out), cut.take)
    return kept


def top_energy(values: Tensor, take: int) -> float:
    """Sum of squares of the `take` largest values, by selection (kthvalue), not sorting.

    Deltas of bf16 weights repeat values often, so the threshold value t may be shared by
    entries on both sides of the cut: those above t count whole, t^2 makes up the rest."""
    t = values.kthvalue(values.numel() - take + 1).values
    above = values[values > t].double()
    return float(above.square().sum()) + (take - above.numel()) * float(t) ** 2
