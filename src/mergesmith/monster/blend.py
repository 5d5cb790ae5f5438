"""MergeMonster's five blends of a layer tensor `a` (model 1) with `b` (the donor).

The math lives with the merge methods (`mergesmith.methods.mergemonster`), so that
`mergesmith merge` replays a monster run's recipe with the very same arithmetic; this module
is the monster's view of it.
"""

from __future__ import annotations

from mergesmith.methods.mergemonster import (
    BLENDS,
    CYCLIC_SCALE,
    blend,
    cyclic_mix,
    gradient_mix,
    positions,
    ratios_for,
    slerp,
    slice_mix,
)

METHODS = BLENDS

__all__ = ["CYCLIC_SCALE", "METHODS", "blend", "cyclic_mix", "gradient_mix", "positions", "ratios_for",
           "slerp", "slice_mix"]
