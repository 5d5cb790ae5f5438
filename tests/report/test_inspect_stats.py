"""Task-vector statistics against values worked out by hand on small tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mergesmith.report import stats
from mergesmith.report.collect import coefficients, metrics
from mergesmith.report.energy import keep_count, magnitude_bins
from mergesmith.report.stats import group_sums


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny chunks, so every test also crosses chunk boundaries."""
    monkeypatch.setattr(stats, "CHUNK", 3)


def _sums(base: list[float], *deltas: list[float], densities=(0.2, 0.5), merged=None):
    b = torch.tensor(base)
    models = {i: b + torch.tensor(d) for i, d in enumerate(deltas)}
    m = torch.tensor(merged) if merged is not None else None
    return group_sums(b, models, len(deltas), list(densities), m)


def test_cosine_of_two_deltas_at_sixty_degrees() -> None:
    angle = math.pi / 3
    s = _sums([0.5, -2.0, 1.0, 3.0], [1.0, 0.0, 1.0, 0.0],
              [math.cos(angle), math.sin(angle), math.cos(angle), math.sin(angle)])
    pair = metrics(s, ["a", "b"], [0.2, 0.5])["pairs"][0]
    assert pair["cosine"] == pytest.approx(0.5, abs=1e-6)


def test_sign_conflicts_and_cosine_worked_by_hand() -> None:
    # a: [1, 2, -1, 0, 3, 0], b: [2, -1, -1, 5, 0, 0]. Both non-zero at 0 (+,+), 1 (+,-), 2 (-,-):
    # 3 shared entries, 1 conflict. <a,b> = 2 - 2 + 1 = 1; |a|^2 = 15; |b|^2 = 31.
    s = _sums([1.0] * 6, [1, 2, -1, 0, 3, 0], [2, -1, -1, 5, 0, 0])
    out = metrics(s, ["a", "b"], [0.2, 0.5])
    pair = out["pairs"][0]
    assert pair["sign_conflicts"] == pytest.approx(1 / 3)
    assert pair["overlap"] == pytest.approx(3 / 6)
    assert pair["cosine"] == pytest.approx(1 / math.sqrt(15 * 31))
    assert out["models"]["a"]["delta_norm"] == pytest.approx(math.sqrt(15))
    assert out["models"]["a"]["relative"] == pytest.approx(math.sqrt(15 / 6))
    assert out["models"]["a"]["nonzero"] == pytest.approx(4 / 6)


def test_any_conflict_among_three_models() -> None:
    # entries: (+,+,-) conflict; (+,0,0) one model; (+,+,0) agree; (-,0,+) conflict; (0,0,0)
    s = _sums([0.0] * 5, [1, 1, 1, -1, 0], [2, 0, 1, 0, 0], [-1, 0, 0, 2, 0])
    out = metrics(s, ["a", "b", "c"], [0.5])
    assert out["sign_conflicts_any"] == pytest.approx(2 / 3)
    ac = next(p for p in out["pairs"] if (p["a"], p["b"]) == ("a", "c"))
    assert ac["sign_conflicts"] == pytest.approx(1.0)  # shared at entries 0 and 3, both disagree


def test_top_k_energy_share_worked_by_hand() -> None:
    # |d|^2 = 16, 9, 4, 1 and six zeros: total 30. k = int(p * 10).
    s = _sums([0.0] * 10, [4, -3, 2, 1, 0, 0, 0, 0, 0, 0], densities=(0.1, 0.2, 0.3, 0.5, 1.0))
    kept = metrics(s, ["a"], [0.1, 0.2, 0.3, 0.5, 1.0])["models"]["a"]["kept_energy"]
    assert kept == pytest.approx({"0.1": 16 / 30, "0.2": 25 / 30, "0.3": 29 / 30, "0.5": 1.0, "1": 1.0})


def test_top_k_energy_within_one_histogram_bin() -> None:
    # 1.00, 1.01, 1.02, 1.03 share a bin: the cut needs the second pass's selection
    s = _sums([0.0] * 4, [1.0, -1.01, 1.02, 1.03], densities=(0.5,))
    expected = (1.03**2 + 1.02**2) / (1.0 + 1.01**2 + 1.02**2 + 1.03**2)
    assert metrics(s, ["a"], [0.5])["models"]["a"]["kept_energy"]["0.5"] == pytest.approx(expected, rel=1e-6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e4, width=32), min_size=1, max_size=40),
       st.sampled_from([0.05, 0.2, 0.37, 0.5, 0.9]))
def test_top_k_energy_equals_a_full_sort(values: list[float], density: float) -> None:
    d = torch.tensor(values)
    s = group_sums(torch.zeros_like(d), {0: d}, 1, [density])
    energy = d.double().square().sort(descending=True).values
    expected = float(energy[: keep_count(density, len(values))].sum())
    assert s.kept[0, 0] == pytest.approx(expected, rel=1e-6, abs=1e-30)  # float32 bin sums


@given(st.lists(st.floats(0, 2.0**127, width=32), min_size=2, max_size=50))
def test_histogram_bins_are_monotone(values: list[float]) -> None:
    a = torch.tensor(sorted(values))
    bins = magnitude_bins(a)
    assert torch.all(bins[1:] >= bins[:-1])
    assert torch.all(bins[a == 0] == 0)


def test_merged_coefficients_and_distances() -> None:
    base = [1.0, 2.0, 3.0, 4.0]
    a, b = [1.0, 0.0, -1.0, 2.0], [0.0, 1.0, 1.0, -1.0]
    merged = [x + 0.7 * p + 0.2 * q for x, p, q in zip(base, a, b)]
    s = _sums(base, a, b, merged=merged)
    assert coefficients(s) == pytest.approx({0: 0.7, 1: 0.2}, abs=1e-5)
    out = metrics(s, ["a", "b"], [0.5])
    dist_a = np.linalg.norm(np.array(merged) - (np.array(base) + np.array(a)))
    assert out["models"]["a"]["distance"] == pytest.approx(dist_a, rel=1e-5)
    assert out["merged"]["relative_to_base"] == pytest.approx(
        np.linalg.norm(np.array(merged) - base) / np.linalg.norm(base), rel=1e-5)


def test_non_finite_entries_are_counted_and_ignored() -> None:
    s = _sums([0.0] * 4, [1.0, float("nan"), float("inf"), 2.0])
    out = metrics(s, ["a"], [0.5])["models"]["a"]
    assert out["non_finite"] == 2
    assert out["delta_norm"] == pytest.approx(math.sqrt(5))


def test_layer_sums_give_the_cosine_of_concatenated_deltas() -> None:
    t1 = _sums([0.0, 0.0], [1.0, 0.0], [1.0, 0.0])  # same direction
    t2 = _sums([0.0, 0.0], [0.0, 3.0], [0.0, -3.0])  # opposite, larger
    t1.add(t2)
    a, b = np.array([1.0, 0, 0, 3]), np.array([1.0, 0, 0, -3])
    pair = metrics(t1, ["a", "b"], [0.5])["pairs"][0]
    assert pair["cosine"] == pytest.approx(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert pair["sign_conflicts"] == pytest.approx(0.5)


def test_bf16_inputs_upcast_per_chunk() -> None:
    base = torch.zeros(7, dtype=torch.bfloat16)
    d = torch.tensor([1.0, -2.0, 0.5, 0, 0, 4.0, -0.25], dtype=torch.bfloat16)
    s = group_sums(base, {0: base + d}, 1, [0.2])
    assert s.delta_sq[0] == pytest.approx(float((d.float() ** 2).sum()))
    assert s.kept[0, 0] == pytest.approx(16.0)  # k = int(0.2 * 7) = 1: the 4.0
