"""Sparsification primitives (methods/sparsify.py): TIES trim, Breadcrumbs, DARE, DELLA."""

from __future__ import annotations

import pytest
import torch
from method_helpers import sparsify_tensor

from mergesmith.methods.sparsify import check_della, draw_seed


def _delta(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rng(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_magnitude_keeps_the_largest_share() -> None:
    delta = torch.tensor([0.5, -3.0, 0.125, 2.0, -0.25, 1.0, 0.0, -0.75])
    out = sparsify_tensor(delta, "magnitude", 0.5)
    assert out.tolist() == [0.0, -3.0, 0.0, 2.0, 0.0, 1.0, 0.0, -0.75]
    # positive density keeps at least one entry; density 1 is the identity; 0 drops all
    assert sparsify_tensor(delta, "magnitude", 0.01).tolist() == [0.0, -3.0] + [0.0] * 6
    assert torch.equal(sparsify_tensor(delta, "magnitude", 1.0), delta)
    assert not sparsify_tensor(delta, "magnitude", 0.0).any()


def test_l1_rescale_restores_the_l1_norm_and_inverse_density_divides() -> None:
    delta = _delta((300, 500))
    kept = sparsify_tensor(delta, "magnitude", 0.2, rescale="l1")
    assert int((kept != 0).sum()) == 30_000
    assert float(kept.abs().sum()) == pytest.approx(float(delta.abs().sum()), rel=1e-5)
    plain = sparsify_tensor(delta, "magnitude", 0.2)
    torch.testing.assert_close(sparsify_tensor(delta, "magnitude", 0.2, rescale="inverse_density"), plain / 0.2)


def test_breadcrumbs_drops_outliers_and_small_entries() -> None:
    delta = torch.arange(1.0, 101.0) * torch.tensor([1.0, -1.0]).repeat(50)  # |d| = 1 .. 100
    out = sparsify_tensor(delta, "magnitude_outliers", 0.5, gamma=0.1)
    kept = sorted(int(v) for v in out.abs()[out != 0])
    assert kept == list(range(41, 91))  # top 10 dropped, bottom 40 dropped, 50 kept


def test_breadcrumbs_keeps_its_target_when_gamma_times_size_is_below_one() -> None:
    """mergekit 0.1.4 kept nothing here (slice [n_bot:-0]); the target share is kept."""
    delta = torch.arange(1.0, 51.0)
    out = sparsify_tensor(delta, "magnitude_outliers", 0.3, gamma=0.01)  # gamma * 50 = 0.5
    assert out[out != 0].tolist() == [float(v) for v in range(36, 51)]


def test_breadcrumbs_reduces_outlier_removal_to_hit_the_density() -> None:
    delta = torch.arange(1.0, 11.0)
    out = sparsify_tensor(delta, "magnitude_outliers", 0.9, gamma=0.5)  # 9 kept, so 1 outlier at most
    assert out[out != 0].tolist() == [float(v) for v in range(1, 10)]


def test_dare_with_density_one_is_the_identity() -> None:
    delta = _delta((40, 50))
    assert torch.equal(sparsify_tensor(delta, "random", 1.0, rng=_rng(0)), delta)
    assert torch.equal(sparsify_tensor(delta, "della", 1.0, rng=_rng(0)), delta)


def test_dare_keeps_about_density_and_its_mean_over_seeds_approaches_the_delta() -> None:
    delta = _delta((20, 30))
    runs = torch.stack([sparsify_tensor(delta, "random", 0.4, rescale="inverse_density", rng=_rng(s))
                        for s in range(2000)])
    assert float((runs != 0).float().mean()) == pytest.approx(0.4, abs=0.005)
    # E[mask / p] = 1: the average of 2000 draws is within a few standard errors of the delta
    err = (runs.mean(dim=0) - delta).abs() / (delta.abs() * (0.6 / 0.4 / 2000) ** 0.5)
    assert float(err.max()) < 5.0


def test_random_masks_depend_only_on_the_generator() -> None:
    delta = _delta((64, 64))
    torch.manual_seed(7)
    expected_global = torch.rand(3)
    torch.manual_seed(7)
    a = sparsify_tensor(delta, "random", 0.5, rng=_rng(11))
    b = sparsify_tensor(delta, "della", 0.5, epsilon=0.2, rng=_rng(11))
    assert torch.equal(torch.rand(3), expected_global)  # the global generator was not touched
    assert torch.equal(a, sparsify_tensor(delta, "random", 0.5, rng=_rng(11)))
    assert torch.equal(b, sparsify_tensor(delta, "della", 0.5, epsilon=0.2, rng=_rng(11)))
    assert not torch.equal(a, sparsify_tensor(delta, "random", 0.5, rng=_rng(12)))
    assert draw_seed(_rng(5)) == draw_seed(_rng(5)) != draw_seed(_rng(6))


def _keep_share_by_rank(delta: torch.Tensor, runs: torch.Tensor) -> torch.Tensor:
    """Kept share of the entries of each within-row rank, averaged over rows and runs."""
    ranks = delta.abs().argsort(dim=1).argsort(dim=1)
    kept = (runs != 0).float().mean(dim=0)
    share = torch.zeros(delta.shape[1]).index_add_(0, ranks.reshape(-1), kept.reshape(-1))
    return share / delta.shape[0]


@pytest.mark.parametrize(("density", "epsilon"), [(0.5, 0.2), (0.3, 0.3), (0.8, -0.15)])
def test_della_keeps_each_entry_with_its_rank_probability(density: float, epsilon: float) -> None:
    """p = density - eps + 2 eps (rank - 1) / (m - 1) within each row, ranks exact."""
    delta = _delta((200, 11), seed=4)
    runs = torch.stack([sparsify_tensor(delta, "della", density, epsilon=epsilon, rng=_rng(s)) for s in range(150)])
    expected = density - epsilon + 2 * epsilon * torch.arange(11) / 10
    observed = _keep_share_by_rank(delta, runs)
    tolerance = 5 * (0.25 / (200 * 150)) ** 0.5
    assert float((observed - expected).abs().max()) < tolerance, (observed, expected)


def test_della_ranks_along_dimension_one_of_larger_tensors() -> None:
    delta = _delta((6, 9, 5), seed=5)
    runs = torch.stack([sparsify_tensor(delta, "della", 0.5, epsilon=0.4, rng=_rng(s)) for s in range(400)])
    ranks = delta.abs().argsort(dim=1).argsort(dim=1)
    kept = (runs != 0).float().mean(dim=0)
    for rank, expected in ((0, 0.1), (8, 0.9)):
        assert float(kept[ranks == rank].mean()) == pytest.approx(expected, abs=0.04)


def test_della_rejects_probabilities_outside_the_unit_interval() -> None:
    check_della(0.5, 0.5)  # the ends may touch 0 and 1
    with pytest.raises(ValueError, match="leave"):
        check_della(0.3, 0.35)
    with pytest.raises(ValueError, match="leave"):
        sparsify_tensor(_delta((4, 4)), "della", 0.9, epsilon=0.2, rng=_rng(0))


def test_unknown_sparsification_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown sparsification"):
        sparsify_tensor(_delta((2, 2)), "topk", 0.5)
