"""Truncated SVD factors against closed forms, and properties of the error."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mergesmith.lora.svd import decompose


def test_exact_low_rank_matrix_is_recovered_at_its_rank() -> None:
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(40, 3, generator=gen) @ torch.randn(3, 24, generator=gen)
    f = decompose(delta, 3)
    assert f.a.shape == (3, 24) and f.b.shape == (40, 3) and f.rank == 3
    assert f.rel_error < 1e-5 and abs(f.energy_kept - 1) < 1e-6
    assert torch.allclose(f.b @ f.a, delta, atol=1e-4)


def test_error_is_the_discarded_singular_energy() -> None:
    # diag(4, 3, 2, 1): rank 2 keeps 16 + 9 of 30, the error is sqrt(5 / 30)
    delta = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    f = decompose(delta, 2)
    assert abs(f.energy_kept - 25 / 30) < 1e-6 and abs(f.rel_error - (5 / 30) ** 0.5) < 1e-6
    # the factors split the singular values evenly
    assert torch.allclose(f.a.norm(dim=1), f.b.norm(dim=0), atol=1e-6)


def test_energy_picks_the_smallest_sufficient_rank() -> None:
    delta = torch.diag(torch.tensor([4.0, 3.0, 2.0, 1.0]))
    assert decompose(delta, 4, energy=0.5).rank == 1  # 16/30 >= 0.5
    assert decompose(delta, 4, energy=0.8).rank == 2
    assert decompose(delta, 2, energy=0.99).rank == 2  # capped by the rank


def test_lowrank_svd_is_close_to_exact() -> None:
    gen = torch.Generator().manual_seed(1)
    delta = torch.randn(300, 8, generator=gen) @ torch.randn(8, 200, generator=gen)
    delta += 0.01 * torch.randn(300, 200, generator=gen)
    exact, fast = decompose(delta, 8), decompose(delta, 8, method="lowrank")
    assert fast.rel_error < exact.rel_error * 1.01 + 1e-6


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(2, 12), st.integers(1, 12), st.integers(0, 10_000))
def test_error_and_kept_energy_add_up_and_error_falls_with_rank(m: int, n: int, rank: int, seed: int) -> None:
    delta = torch.randn(m, n, generator=torch.Generator().manual_seed(seed))
    f = decompose(delta, rank)
    assert abs(f.rel_error**2 + f.energy_kept - 1) < 1e-4
    assert f.rank == min(rank, m, n)
    if rank > 1:
        assert decompose(delta, rank - 1).rel_error >= f.rel_error - 1e-6
