from __future__ import annotations

import pytest

from mergesmith.recipe import FilterRule
from mergesmith.recipe.values import evaluate, interpolate, is_missing, resolve


@pytest.mark.parametrize(("t", "expected"), [(0.0, 0.0), (0.25, 0.5), (0.5, 0.3), (0.625, 0.5), (1.0, 1.0)])
def test_gradient_interpolates_between_neighbours(t: float, expected: float) -> None:
    assert interpolate([0, 0.5, 0.3, 0.7, 1], t) == pytest.approx(expected)


def test_non_numeric_gradient_picks_discrete_entries() -> None:
    assert interpolate([True, False], 0.4) is True
    assert interpolate([True, False], 1.0) is False


def test_filters_match_substrings_first_rule_wins() -> None:
    rules = [FilterRule(filter="self_attn", value=0.1), FilterRule(filter="attn", value=0.2), FilterRule(value=0.9)]
    assert evaluate(rules, "model.layers.0.self_attn.q_proj.weight", 0) == 0.1
    assert evaluate(rules, "transformer.h.0.attn.c_attn.weight", 0) == 0.2
    assert evaluate(rules, "model.layers.0.mlp.up_proj.weight", 0) == 0.9


def test_filter_without_default_gives_no_value() -> None:
    assert is_missing(evaluate([FilterRule(filter="mlp", value=1)], "model.norm.weight", 0))


def test_precedence_source_then_slice_then_top() -> None:
    source, slc, top = {"weight": 1.0}, {"weight": 2.0, "t": 0.3}, {"weight": 3.0, "t": 0.7, "density": 0.5}
    assert resolve("weight", [source, slc, top], "x", 0) == 1.0
    assert resolve("t", [None, slc, top], "x", 0) == 0.3
    assert resolve("density", [source, slc, top], "x", 0) == 0.5
    assert is_missing(resolve("lambda", [source, slc, top], "x", 0))
