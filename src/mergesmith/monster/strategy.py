"""Accept rules: does a candidate's phrase table beat the current one?"""

from __future__ import annotations

from collections.abc import Sequence

STRATEGIES = ("cumulative", "all_phrases", "quantitive")


def improved(old: Sequence[float], new: Sequence[float]) -> list[bool]:
    """Per pair: the candidate's signed weighted probability is lower (better)."""
    return [n < o for o, n in zip(old, new)]


def accept(strategy: str, old: Sequence[float], new: Sequence[float], threshold: float) -> bool:
    """`old`/`new`: signed weighted probabilities per (phrase, context), lower is better.

    cumulative: the total falls. all_phrases: every pair falls. quantitive: at least
    `threshold` pairs fall (MergeMonster's count rule; probabilities ignored otherwise).
    """
    if strategy == "cumulative":
        return sum(new) < sum(old)
    if strategy == "all_phrases":
        return all(improved(old, new))
    if strategy == "quantitive":
        return sum(improved(old, new)) >= threshold
    raise ValueError(f"unknown strategy {strategy!r}")


def better(strategy: str, best: Sequence[float], new: Sequence[float], threshold: float) -> bool:
    """Among candidates at one layer: cumulative/all_phrases keep the lower total; quantitive
    keeps the one improving more pairs over the best so far (ties: lower total)."""
    if strategy == "quantitive":
        wins = sum(improved(best, new))
        return wins > len(best) - wins or (wins == len(best) - wins and sum(new) < sum(best))
    return sum(new) < sum(best)
