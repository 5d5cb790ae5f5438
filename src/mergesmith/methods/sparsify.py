"""Sparsification for the task-vector family (step 1 of the pipeline), chunk by chunk.

A sparsifier is prepared once per task vector (a :class:`ChunkMask`: thresholds found,
generators seeded, the rescale factor known) and then applied to the delta one chunk at a
time, in order, inside the pipeline's chunk loop. The rescale factor is a scalar, so the
pipeline folds it into the model's weight.

    magnitude          keep the max(1, int(density n)) largest |d| (TIES 'trim')
    magnitude_outliers keep ranks [bottom, bottom + int(density n)) by ascending |d|,
                       bottom = max(0, n - int(density n) - int(gamma n)) (Breadcrumbs)
    bernoulli          keep each entry with probability density (DARE 'drop')
    della              keep with probability density - eps + 2 eps r(|d|), r the rank in
                       its row scaled to [0, 1] (DELLA 'MagPrune')

Rescaling (``rescale``): "l1" multiplies the kept entries by |d|_1 / |kept|_1 (mergekit's
``rescale: true``; skipped when either norm is below 1e-7); "inverse_density" divides them
by density (the DARE paper's 1/p); None leaves them. density >= 1 keeps everything with no
rescale; density <= 0 drops everything.

Random masks draw from a generator seeded from the method's ``rng``, one seed per model.
With L1 rescaling a dry pass records the mask (one byte an entry) and the merge pass
replays it: the kept norm must be known before the deltas are combined.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from mergesmith.lazy_torch import torch
from mergesmith.methods.chunks import Workspace, row_length
from mergesmith.methods.selection import Cut, find_cuts

if TYPE_CHECKING:
    from torch import Generator, Tensor

Rescale = Literal["l1", "inverse_density"]
_L1_EPS = 1e-7


class DeltaSource:
    """A task vector x - base read chunk by chunk (``base`` None: ``x`` is the delta)."""

    def __init__(self, x: Tensor, base: Tensor | None, work: Workspace, slot: int = 0) -> None:
        self.row = row_length(tuple(x.shape))
        self.x = x.reshape(-1)
        self.base = None if base is None else base.reshape(-1)
        self.n = self.x.numel()
        self.work = work
        self.slot = slot

    def delta(self, span: slice, out: Tensor) -> Tensor:
        if self.base is None:
            return out.copy_(self.x[span])
        return torch.sub(self.x[span], self.base[span], out=out)

    def magnitudes(self, span: slice) -> Tensor:
        """|delta[span]|, in a reused buffer for contiguous spans."""
        if span.step not in (None, 1):
            part = self.x[span] if self.base is None else self.x[span] - self.base[span]
            return part.abs()
        out = self.work.floats(self.slot, span.stop - span.start)
        return self.delta(span, out).abs_()


class ChunkMask:
    """Base class: keeps everything; ``scale`` is the rescale factor for the kept entries."""

    scale = 1.0

    def begin(self) -> None:
        """Start a pass over the chunks (resets tie counters and generators)."""

    def apply(self, delta: Tensor, work: Workspace) -> Tensor:
        """Zero the dropped entries of this chunk of the delta, in place."""
        return delta


class DropAll(ChunkMask):
    def apply(self, delta: Tensor, work: Workspace) -> Tensor:
        return delta.zero_()


class MagnitudeMask(ChunkMask):
    """Keep the entries selected by ``keep`` and not by ``drop`` (drop is within keep)."""

    def __init__(self, keep: Cut, drop: Cut | None) -> None:
        self.keep, self.drop = keep, drop
        self.begin()

    def begin(self) -> None:
        self._keep = self.keep.cursor()
        self._drop = self.drop.cursor() if self.drop is not None else None

    def apply(self, delta: Tensor, work: Workspace) -> Tensor:
        magnitudes = torch.abs(delta, out=work.floats(10, delta.numel()))
        keep = self._keep.mask(magnitudes, out=work.floats(11, delta.numel()))
        if self._drop is not None:
            keep.sub_(self._drop.mask(magnitudes, out=magnitudes))
        return delta.mul_(keep)


class RandomMask(ChunkMask):
    """Bernoulli(density) keep mask from a per-model generator (DARE).

    ``record()`` makes the next pass store the mask (one byte an entry) so that later
    passes replay it instead of drawing again (L1 rescaling needs a dry pass).
    """

    def __init__(self, density: float, seed: int, device: object) -> None:
        self.density, self.seed, self.device = density, seed, device
        self._stored: Tensor | None = None
        self._recording = False
        self.begin()

    def begin(self) -> None:
        self.generator = torch.Generator(device=self.device).manual_seed(self.seed)
        self._offset = 0

    def record(self, n: int) -> None:
        self._stored = torch.empty(n, dtype=torch.uint8, device=self.device)
        self._recording = True

    def stop_recording(self) -> None:
        self._recording = False

    def apply(self, delta: Tensor, work: Workspace) -> Tensor:
        span = slice(self._offset, self._offset + delta.numel())
        self._offset = span.stop
        if self._stored is not None and not self._recording:
            return delta.mul_(work.floats(11, delta.numel()).copy_(self._stored[span]))
        keep = self._draw(delta, work)
        if self._stored is not None:
            self._stored[span].copy_(keep)
        return delta.mul_(keep)

    def _draw(self, delta: Tensor, work: Workspace) -> Tensor:
        return work.floats(11, delta.numel()).uniform_(generator=self.generator).lt_(self.density)


class DellaMask(RandomMask):
    """DELLA's MagPrune on chunks made of whole rows of length ``row``.

    The keep probability density - epsilon + 2 epsilon r, r = (rank - 1) / (m - 1) the
    ascending rank of |x| in its row of m entries, is drawn without ranking: r is the chance
    that a uniformly drawn other entry J of the row is smaller, so with s = sign(|x| - |x_J|)
    (ties count half, as a random tie-break would) and U uniform, U < density - epsilon +
    epsilon (s + 1) has probability exactly p. Each entry draws its own J and U, so the mask
    has the distribution of independent Bernoulli(p) draws on exact ranks, as mergekit's.
    """

    def __init__(self, density: float, epsilon: float, row: int, seed: int, device: object) -> None:
        self.epsilon, self.row = epsilon, row
        super().__init__(density, seed, device)

    def _draw(self, delta: Tensor, work: Workspace) -> Tensor:
        m = self.row
        if m == 1 or self.epsilon == 0:  # no rank to speak of: Bernoulli(density)
            return super()._draw(delta, work)
        magnitudes = torch.abs(delta, out=work.floats(10, delta.numel())).view(-1, m)
        partner = work.index(delta.numel()).view(-1, m)
        # J over the whole row, itself included: a self-comparison gives s = 0, so slope and
        # offset are corrected by m / (m - 1), widening the threshold range by eps / (m - 1).
        widen = abs(self.epsilon) / (m - 1)
        if self.density - abs(self.epsilon) - widen >= 0 and self.density + abs(self.epsilon) + widen <= 1:
            partner.random_(0, m, generator=self.generator)
            slope = self.epsilon * m / (m - 1)
            offset = self.density - self.epsilon - math.copysign(widen, self.epsilon)
        else:  # J over the other entries only
            partner.random_(0, m - 1, generator=self.generator)
            partner += partner >= torch.arange(m, device=delta.device)
            slope, offset = self.epsilon, self.density - self.epsilon
        threshold = torch.gather(magnitudes, 1, partner, out=work.floats(11, delta.numel()).view(-1, m))
        threshold.sub_(magnitudes).neg_().sign_().add_(1.0).mul_(slope).add_(offset)
        return magnitudes.uniform_(generator=self.generator).lt_(threshold).view(-1)


def _l1_scale(before: float, after: float) -> float:
    return before / after if before >= _L1_EPS and after >= _L1_EPS else 1.0


def _inverse_density(mask: ChunkMask, density: float) -> ChunkMask:
    mask.scale = 1.0 / density
    return mask


def magnitude_mask(src: DeltaSource, spans: list[slice], density: float, rescale: Rescale | None) -> ChunkMask:
    if density >= 1:
        return ChunkMask()
    if density <= 0 or src.n == 0:
        return DropAll()
    k = max(1, int(density * src.n))
    return _magnitude_cuts(src, spans, k, 0, density, rescale)


def outliers_mask(src: DeltaSource, spans: list[slice], density: float, gamma: float, rescale: Rescale | None) -> ChunkMask:
    """Breadcrumbs. Unlike mergekit 0.1.4 (whose slice ``[n_bot:-n_top]`` kept nothing when
    int(gamma * n) == 0, e.g. any tensor with gamma * n < 1), the target share is kept."""
    if density >= 1:
        return ChunkMask()
    n = src.n
    target = int(density * n)
    bottom = max(0, n - target - int(gamma * n))
    if target <= 0:
        return DropAll()
    return _magnitude_cuts(src, spans, n - bottom, n - bottom - target, density, rescale)


def _magnitude_cuts(src: DeltaSource, spans: list[slice], keep: int, drop: int, density: float,
                    rescale: Rescale | None) -> ChunkMask:
    ks = [keep, drop] if drop > 0 else [keep]
    cuts, total = find_cuts(src.magnitudes, src.n, ks, spans, sums=rescale == "l1")
    mask = MagnitudeMask(cuts[0], cuts[1] if drop > 0 else None)
    if rescale == "l1":
        kept = cuts[0].top_sum - (cuts[1].top_sum if drop > 0 else 0.0)
        mask.scale = _l1_scale(total, kept)
    elif rescale == "inverse_density":
        _inverse_density(mask, density)
    return mask


def random_mask(src: DeltaSource, spans: list[slice], density: float, seed: int, rescale: Rescale | None) -> ChunkMask:
    if density >= 1:
        return ChunkMask()
    if density <= 0:
        return DropAll()
    return _finish_random(RandomMask(density, seed, src.x.device), src, spans, density, rescale)


def della_mask(src: DeltaSource, spans: list[slice], density: float, epsilon: float, seed: int,
               rescale: Rescale | None) -> ChunkMask:
    """DELLA on rows of ``src.row`` entries (the caller moves the ranking dimension last)."""
    if density >= 1:
        return ChunkMask()
    if density <= 0:
        return DropAll()
    check_della(density, epsilon)
    return _finish_random(DellaMask(density, epsilon, src.row, seed, src.x.device), src, spans, density, rescale)


def check_della(density: float, epsilon: float) -> None:
    if 0 < density < 1 and not (density - abs(epsilon) >= 0 and density + abs(epsilon) <= 1):
        raise ValueError(
            f"DELLA keep probabilities density -/+ epsilon ({density:g} -/+ {epsilon:g}) leave [0, 1]; "
            "choose epsilon <= min(density, 1 - density)"
        )


def _finish_random(mask: RandomMask, src: DeltaSource, spans: list[slice], density: float,
                   rescale: Rescale | None) -> ChunkMask:
    if rescale == "inverse_density":
        return _inverse_density(mask, density)
    if rescale == "l1":  # a dry pass for the kept norm; the merge pass replays the mask
        before = after = 0.0
        mask.record(src.n)
        for span in spans:
            delta = src.delta(span, src.work.floats(12, span.stop - span.start))
            before += float(torch.linalg.vector_norm(delta, ord=1))
            after += float(torch.linalg.vector_norm(mask.apply(delta, src.work), ord=1))
        mask.scale = _l1_scale(before, after)
        mask.stop_recording()
    return mask


def draw_seed(rng: Generator | None) -> int:
    """A 62-bit seed drawn from ``rng`` (the global generator when None)."""
    device = rng.device if rng is not None else "cpu"
    return int(torch.randint(0, 1 << 62, (1,), generator=rng, device=device))
