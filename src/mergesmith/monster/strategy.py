"""MergeMonster's strategies: which of a layer's candidates (one per ratio, in order) is kept.

Scores are signed weighted probabilities per (phrase, context) pair, lower is better, as
MergeMonster's `calculate_word_probabilities` returns them. `orig` is the layer's score
before any candidate; each candidate is offered in ratio order (`merge-monster.py`):

- cumulative: kept when its total is below the best total so far (the first candidate with
  the lowest total, if that is below the original's);
- all_phrases: kept when no pair is worse than in `orig` (`<=`); the last such candidate wins;
- quantitive: kept when the fraction of pairs better than in `orig` (`<`) is at least
  `threshold`; the last such candidate wins. Probabilities count only through that fraction.
"""

from __future__ import annotations

from collections.abc import Sequence

STRATEGIES = ("cumulative", "all_phrases", "quantitive")


class Choice:
    """Offer candidates in order; `index` is the kept one (None: the layer stays as it was)."""

    def __init__(self, strategy: str, orig: Sequence[float], threshold: float) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}")
        self.strategy, self.orig, self.threshold = strategy, list(orig), threshold
        self.best: list[float] = list(orig)
        self.index: int | None = None

    def accepts(self, new: Sequence[float]) -> bool:
        if self.strategy == "cumulative":
            return sum(new) < sum(self.best)
        if self.strategy == "all_phrases":
            return all(n <= o for n, o in zip(new, self.orig))
        improved = sum(1 for n, o in zip(new, self.orig) if n < o)
        return improved / len(new) >= self.threshold

    def offer(self, index: int, new: Sequence[float]) -> bool:
        if self.accepts(new):
            self.best, self.index = list(new), index
            return True
        return False


def choose(strategy: str, orig: Sequence[float], candidates: Sequence[Sequence[float]],
           threshold: float) -> int | None:
    """The index of the kept candidate, or None."""
    choice = Choice(strategy, orig, threshold)
    for i, new in enumerate(candidates):
        choice.offer(i, new)
    return choice.index
