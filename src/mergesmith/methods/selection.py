"""Exact top-k selection by magnitude without sorting the tensor.

:func:`find_cuts` finds, for several k at once, the k-th largest magnitude exactly:

1. A strided sample (odd stride, so every row and column is visited) is sorted; its
   quantiles bracket each threshold with a 6-sigma margin.
2. One chunked pass counts the entries above each bracket and collects the few inside.
3. ``kthvalue`` on those candidates gives the threshold. A bracket that misses (a
   pathological layout) is retried with an unbounded bracket, which is still exact.

A :class:`Cut` keeps exactly k entries: everything above the threshold and, of the entries
equal to it, the first ones by position.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mergesmith.lazy_torch import torch

if TYPE_CHECKING:
    from torch import Tensor

# magnitudes(span) -> |delta[span]| as a flat tensor; may reuse one buffer between calls
Magnitudes = Callable[[slice], "Tensor"]

_SAMPLE = 1 << 16
_EXACT_BELOW = 1 << 17  # smaller tensors skip the sample: every entry is a candidate


@dataclass(frozen=True)
class Cut:
    """Keep the k largest magnitudes: all > threshold, plus ``ties_kept`` equal ones."""

    k: int
    threshold: float
    ties: int  # entries equal to the threshold
    ties_kept: int
    top_sum: float  # sum of the k kept magnitudes (for L1 rescaling)

    def cursor(self) -> CutCursor:
        return CutCursor(self)


class CutCursor:
    """Applies a :class:`Cut` chunk by chunk, in order, keeping the first ties."""

    def __init__(self, cut: Cut) -> None:
        self.cut = cut
        self.remaining = cut.ties_kept

    def mask(self, magnitudes: Tensor, out: Tensor) -> Tensor:
        """Write the 0/1 keep mask of this chunk's ``magnitudes`` into ``out`` (float)."""
        threshold = self.cut.threshold
        if self.cut.ties_kept == self.cut.ties:  # every tie is kept
            return torch.ge(magnitudes, threshold, out=out)
        if self.remaining == 0:
            return torch.gt(magnitudes, threshold, out=out)
        tied = (magnitudes == threshold).nonzero().squeeze(1)
        torch.gt(magnitudes, threshold, out=out)
        take = min(self.remaining, tied.numel())
        out[tied[:take]] = 1.0
        self.remaining -= take
        return out


def none_cut() -> Cut:
    return Cut(k=0, threshold=math.inf, ties=0, ties_kept=0, top_sum=0.0)


def find_cuts(magnitudes: Magnitudes, n: int, ks: list[int], spans: list[slice], *,
              sums: bool = False) -> tuple[list[Cut], float]:
    """The exact :class:`Cut` for each k in ``ks`` (0 <= k <= n), in one pass over the data.

    ``sums``: also compute each cut's ``top_sum`` and the total of all magnitudes (returned
    second; NaN without ``sums``).
    """
    brackets = _brackets(magnitudes, n, ks)
    cuts, total = _scan(magnitudes, ks, brackets, spans, sums)
    missed = [j for j, cut in enumerate(cuts) if cut is None]
    if missed:
        unbounded = [(-math.inf, math.inf)] * len(missed)
        wide, _ = _scan(magnitudes, [ks[j] for j in missed], unbounded, spans, sums)
        for j, cut in zip(missed, wide, strict=True):
            cuts[j] = cut
    return [cut for cut in cuts if cut is not None], total


def _brackets(magnitudes: Magnitudes, n: int, ks: list[int]) -> list[tuple[float, float]]:
    """A [lo, hi] bracket of each k-th largest value, from a strided sample."""
    if n <= _EXACT_BELOW:
        return [(-math.inf, math.inf)] * len(ks)
    stride = (n // _SAMPLE) | 1
    sample = torch.sort(magnitudes(slice(0, n, stride)).reshape(-1)).values
    m = sample.numel()
    out = []
    for k in ks:
        share = min(max(k / n, 0.0), 1.0)
        margin = int(6.0 * math.sqrt(m * share * (1.0 - share))) + 16
        pos = int((1.0 - share) * (m - 1))
        lo = float(sample[pos - margin]) if pos - margin >= 0 else -math.inf
        hi = float(sample[pos + 1 + margin]) if pos + 1 + margin < m else math.inf
        out.append((lo, hi))
    return out


def _scan(magnitudes: Magnitudes, ks: list[int], brackets: list[tuple[float, float]],
          spans: list[slice], sums: bool) -> tuple[list[Cut | None], float]:
    """Count above and collect inside each bracket, then solve each cut exactly."""
    above = [0] * len(ks)
    above_sum = [0.0] * len(ks)
    total = 0.0 if sums else math.nan
    bands: list[list[Tensor]] = [[] for _ in ks]
    for span in spans:
        chunk = magnitudes(span).reshape(-1)
        if sums:
            total += float(chunk.sum())
        for j, (lo, hi) in enumerate(brackets):
            if ks[j] <= 0:
                continue
            over = chunk > hi
            above[j] += int(torch.count_nonzero(over))
            if sums:
                above_sum[j] += float(chunk[over].sum())
            bands[j].append(chunk[(chunk >= lo) ^ over])
    return [_solve(k, above[j], above_sum[j], bands[j]) for j, k in enumerate(ks)], total


def _solve(k: int, above: int, above_sum: float, parts: list[Tensor]) -> Cut | None:
    if k <= 0:
        return none_cut()
    band = torch.cat(parts) if parts else torch.empty(0)
    need = k - above  # rank of the threshold inside the band, counted from the top
    if not 1 <= need <= band.numel():
        return None
    threshold_t = torch.kthvalue(band, band.numel() - need + 1).values
    threshold = float(threshold_t)
    greater = band[band > threshold_t]
    ties = int(torch.count_nonzero(band == threshold_t))
    ties_kept = need - greater.numel()
    top_sum = above_sum + float(greater.sum()) + ties_kept * threshold
    return Cut(k=k, threshold=threshold, ties=ties, ties_kept=ties_kept, top_sum=top_sum)


def top_k_mask(values: Tensor, k: int) -> Tensor:
    """Boolean mask of exactly ``k`` largest entries of ``values``; among equals, the first."""
    flat = values.reshape(-1)
    n = flat.numel()
    if k >= n:
        return torch.ones_like(values, dtype=torch.bool)
    (cut,), _ = find_cuts(lambda span: flat[span], n, [k], [slice(0, n)])
    out = torch.empty_like(flat)
    return cut.cursor().mask(flat, out).bool().reshape(values.shape)
