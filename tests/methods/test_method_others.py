"""model_stock, sce, nearswap, arcee_fusion, ram and ramplus_tl against worked answers."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import merge

from mergesmith.methods.arcee_fusion import importance, sorted_entries
from mergesmith.methods.model_stock import stock_ratio
from mergesmith.methods.sce import sce_weights, variance_mask


def _at_angle(degrees: float, length: float = 1.0) -> torch.Tensor:
    rad = math.radians(degrees)
    return torch.tensor([math.cos(rad), math.sin(rad), 0.0]) * length


def test_model_stock_ratio_for_known_angles() -> None:
    base = torch.tensor([1.0, 1.0, 1.0])
    a, b = base + _at_angle(0, 2.0), base + _at_angle(60, 2.0)  # cos = 1/2, N = 2: t = 1 / 1.5
    t = 2 * 0.5 / (1 + 0.5)
    torch.testing.assert_close(merge("model_stock", [a, b], base), base + t * ((a + b) / 2 - base))
    # orthogonal task vectors: t = 0, the base; identical ones: t = 1, their average
    torch.testing.assert_close(merge("model_stock", [base + _at_angle(0), base + _at_angle(90)], base), base)
    same = base + _at_angle(30)
    torch.testing.assert_close(merge("model_stock", [same, same, same], base), same)


def test_model_stock_ratio_formula_and_clamping() -> None:
    cos = torch.tensor([0.0, 0.5, 1.0, -0.2, -0.5])
    t = stock_ratio(cos, 3)  # 3 cos / (1 + 2 cos); cos = -0.5 is singular -> 0
    torch.testing.assert_close(t, torch.tensor([0.0, 0.75, 1.0, -0.6 / 0.6, 0.0]))
    torch.testing.assert_close(stock_ratio(cos, 3, clamp=True), torch.tensor([0.0, 0.75, 1.0, 0.0, 0.0]))
    base = torch.zeros(3)
    opposed = [_at_angle(0), _at_angle(120)]  # cos = -1/2, N = 2: t = -1 / 0.5 = -2, away from the models
    average = (opposed[0] + opposed[1]) / 2
    torch.testing.assert_close(merge("model_stock", opposed, base), -2.0 * average)
    torch.testing.assert_close(merge("model_stock", opposed, base, clamp_ratio=True), base)


def test_model_stock_filter_wise_uses_one_ratio_per_row() -> None:
    base = torch.zeros(2, 3)
    a = torch.stack([_at_angle(0), _at_angle(0)])
    b = torch.stack([_at_angle(0), _at_angle(90)])  # row 0: identical (t = 1); row 1: orthogonal (t = 0)
    out = merge("model_stock", [a, b], base, filter_wise=True)
    torch.testing.assert_close(out, torch.stack([_at_angle(0), torch.zeros(3)]))


def test_sce_by_hand() -> None:
    """deltas d1 = [2, 0, -1, 1], d2 = [1, 1, 1, -1]; mean squares 6/4 and 4/4 -> w = 0.6, 0.4.

    signs of d1 + d2 = [3, 1, 0, 0] -> [+, +, +, +]; entry 2: only d2 agrees; entry 3: only d1.
    """
    base = torch.ones(4)
    d1, d2 = torch.tensor([2.0, 0.0, -1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, -1.0])
    out = merge("sce", [base + d1, base + d2], base)
    expected = torch.tensor([(0.6 * 2 + 0.4 * 1) / 1.0, 0.4 * 1 / 0.4, 1.0, 1.0]) + base
    torch.testing.assert_close(out, expected)


def test_sce_selects_entries_by_variance_across_models() -> None:
    deltas = torch.tensor([[1.0, 5.0, 0.0, 2.0], [1.0, -5.0, 0.5, 0.0]])  # variances 0, 25, 1/16, 1
    assert variance_mask(deltas, 0.5).tolist() == [0.0, 1.0, 0.0, 0.0]  # int(3 nonzero * 0.5) = 1
    assert variance_mask(deltas, 1.0).tolist() == [1.0, 1.0, 1.0, 1.0]
    assert variance_mask(deltas, 0.0).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_sce_weights_follow_energy_at_any_scale() -> None:
    """mergekit falls back to equal weights below a summed mean square of 1e-6; not here."""
    small = torch.tensor([[3e-4, 3e-4], [1e-4, 1e-4]])
    assert sce_weights(small) == pytest.approx([0.9, 0.1])
    assert sce_weights(torch.zeros(2, 3)) == [0.5, 0.5]


def test_nearswap_closed_form() -> None:
    base = torch.tensor([0.0, 0.0, 0.0, 1.0])
    other = torch.tensor([0.05, 0.2, -1.0, 1.0])
    out = merge("nearswap", [other], base, t=0.1)
    # |diff| <= t: swapped; else moved by t towards the other
    torch.testing.assert_close(out, torch.tensor([0.05, 0.1, -0.1, 1.0]))
    assert torch.equal(merge("nearswap", [other], base, t=0.0), base)


def test_arcee_fusion_keeps_the_entries_above_the_fence() -> None:
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(40, 50, generator=gen)
    other = base + torch.randn(40, 50, generator=gen) * torch.rand(40, 1, generator=gen)
    score = importance(other, base)
    ordered = score.reshape(-1).sort().values
    n = score.numel()
    q1, q2, q3 = (float(ordered[int(q * (n - 1))]) for q in (0.25, 0.5, 0.75))
    assert sorted_entries(score, [int(q * (n - 1)) for q in (0.25, 0.5, 0.75)]) == [q1, q2, q3]
    keep = score >= q2 + 1.5 * (q3 - q1)
    assert 0 < int(keep.sum()) < n
    out = merge("arcee_fusion", [other], base)
    torch.testing.assert_close(out, torch.where(keep, other, base))
    assert torch.equal(merge("arcee_fusion", [base.clone()], base), base)


def test_ram_keeps_unique_changes_and_averages_shared_ones() -> None:
    base = torch.zeros(5)
    a = torch.tensor([1.0, 2.0, 0.0, 0.0, 1e-6])
    b = torch.tensor([0.0, 4.0, -3.0, 0.0, 1e-6])
    out = merge("ram", [a, b], base, epsilon=1e-5)
    assert out.tolist() == [1.0, 3.0, -3.0, 0.0, 0.0]  # changes below epsilon do not count


def test_ramplus_boosts_each_models_unique_entries_by_its_overlap_ratio() -> None:
    base = torch.zeros(6)
    a = torch.tensor([1.0, 1.0, 2.0, 0.0, 0.0, 0.0])  # unique 2 entries, shared 1: rho = 0.5
    b = torch.tensor([0.0, 0.0, 4.0, 1.0, 0.0, 0.0])  # unique 1, shared 1: rho = 1
    out = merge("ramplus_tl", [a, b], base, r=0.5, alpha=0.8, epsilon=1e-5)
    la, lb = 1 + 0.5 * 0.5, 1 + 0.5 * 0.8  # lambda = 1 + r clamp(rho, 0, alpha)
    torch.testing.assert_close(out, torch.tensor([la, la, 3.0, lb, 0.0, 0.0]))
    # with r = 0 it is RAM
    torch.testing.assert_close(merge("ramplus_tl", [a, b], base, r=0.0), merge("ram", [a, b], base))
