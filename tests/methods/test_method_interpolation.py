"""Interpolations on the sphere: slerp, nuslerp, multislerp, karcher; closed-form answers."""

from __future__ import annotations

import math

import pytest
import torch
from method_helpers import merge

from mergesmith.methods import get_method
from mergesmith.methods.karcher import karcher_mean
from mergesmith.methods.slerp import slerp_pair

E0 = torch.tensor([1.0, 0.0, 0.0])
E1 = torch.tensor([0.0, 1.0, 0.0])
R2 = 1 / math.sqrt(2)


def test_slerp_endpoints_and_orthogonal_midpoint() -> None:
    a, b = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    torch.testing.assert_close(merge("slerp", [b], a, t=0.0), a)
    torch.testing.assert_close(merge("slerp", [b], a, t=1.0), b)
    torch.testing.assert_close(merge("slerp", [b], a, t=0.5), torch.tensor([3 * R2, 3 * R2, 0.0]))
    # a third of the arc: 30 degrees from a
    torch.testing.assert_close(slerp_pair(1 / 3, E0, E1), torch.tensor([math.cos(math.pi / 6), 0.5, 0.0]))


def test_slerp_of_colinear_inputs_is_linear() -> None:
    torch.testing.assert_close(merge("slerp", [2 * E0], E0, t=0.25), 1.25 * E0)


def test_nuslerp_weights_set_t_and_without_base_interpolate_the_models() -> None:
    out = merge("nuslerp", [E0, E1], None, weight=[1.0, 1.0])
    torch.testing.assert_close(out, torch.tensor([R2, R2, 0.0]))
    out = merge("nuslerp", [E0, E1], None, weight=[2.0, 1.0])  # t = 1/3
    torch.testing.assert_close(out, torch.tensor([math.cos(math.pi / 6), 0.5, 0.0]))
    # weights summing to zero: t = 0.5
    torch.testing.assert_close(merge("nuslerp", [E0, E1], None, weight=[1.0, -1.0]), torch.tensor([R2, R2, 0.0]))


def test_nuslerp_with_a_base_interpolates_the_task_vectors() -> None:
    base = torch.tensor([1.0, 1.0, 1.0])
    out = merge("nuslerp", [base + 2 * E0, base + 2 * E1], base, weight=[0.5, 0.5])
    torch.testing.assert_close(out, base + torch.tensor([2 * R2, 2 * R2, 0.0]))


def test_nuslerp_vector_choice_flatten_last_dim_or_dim0() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    b = torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    # last dim: row 0 orthogonal (midpoint), row 1 colinear (unchanged)
    rows = merge("nuslerp", [a, b], None, weight=[1.0, 1.0], nuslerp_flatten=False)
    torch.testing.assert_close(rows, torch.tensor([[R2, R2], [0.0, 2.0]]))
    # dim 0: column 0 is (1,0) vs (0,0); column 1 is (0,2) vs (1,2)
    cols = merge("nuslerp", [a, b], None, weight=[1.0, 1.0], nuslerp_flatten=False, nuslerp_row_wise=True)
    theta = math.acos(2 / math.sqrt(5))
    c = math.sin(theta / 2) / math.sin(theta)
    expected_col1 = c * torch.tensor([0.0, 2.0]) + c * torch.tensor([1.0, 2.0])
    torch.testing.assert_close(cols[:, 1], expected_col1)
    # flatten (the default) treats the whole matrix as one vector
    flat = merge("nuslerp", [a, b], None, weight=[1.0, 1.0])
    torch.testing.assert_close(flat, slerp_pair(0.5, a.reshape(-1), b.reshape(-1)).reshape(2, 2))


def test_multislerp_points_along_the_weighted_mean_direction_with_the_mean_norm() -> None:
    out = merge("multislerp", [2 * E0, 4 * E1], None, weight=[1.0, 1.0])
    torch.testing.assert_close(out, 3 * torch.tensor([R2, R2, 0.0]))
    base = torch.tensor([0.0, 0.0, 1.0])
    three = [base + E0, base + E1, base - E0]
    out = merge("multislerp", three, base, weight=[1.0, 2.0, 1.0])
    torch.testing.assert_close(out, base + E1)  # +E0 and -E0 cancel; the length is the mean, 1


def test_multislerp_of_one_model_and_of_cancelling_models() -> None:
    x = torch.tensor([1.0, -2.0])
    assert torch.equal(merge("multislerp", [x], None, weight=[3.0]), x)
    # opposite vectors with equal weights: no direction, the weighted sum (0) is returned
    out = merge("multislerp", [E0, -E0, 2 * E1 - 2 * E1], None, weight=[1.0, 1.0, 1.0])
    torch.testing.assert_close(out, torch.zeros(3))


def test_karcher_of_two_unit_vectors_is_their_slerp_midpoint() -> None:
    a = torch.tensor([1.0, 0.0, 0.0, 0.0])
    b = torch.tensor([0.6, 0.8, 0.0, 0.0])
    out = merge("karcher", [a, b], None, max_iter=50, tol=1e-9)
    torch.testing.assert_close(out, slerp_pair(0.5, a, b))


def test_karcher_weights_move_the_mean_along_the_arc() -> None:
    """For two points the weighted Karcher mean is the slerp at t = w_b / (w_a + w_b)."""
    a = torch.tensor([2.0, 0.0, 0.0])
    b = torch.tensor([0.0, 2.0, 0.0])
    out = merge("karcher", [a, b], None, weight=[3.0, 1.0], weighted=True, max_iter=100, tol=1e-9)
    torch.testing.assert_close(out, slerp_pair(0.25, a, b), atol=1e-5, rtol=1e-5)


def test_karcher_ignores_weights_without_weighted_as_mergekit_does() -> None:
    a = torch.tensor([2.0, 0.0, 0.0])
    b = torch.tensor([0.0, 2.0, 0.0])
    out = merge("karcher", [a, b], None, weight=[3.0, 1.0], max_iter=100, tol=1e-9)
    assert torch.equal(out, merge("karcher", [a, b], None, max_iter=100, tol=1e-9))
    torch.testing.assert_close(out, slerp_pair(0.5, a, b), atol=1e-5, rtol=1e-5)


def test_karcher_scales_by_the_mean_norm_and_skips_zero_inputs() -> None:
    out = merge("karcher", [2 * E0, torch.zeros(3)], None, max_iter=10)
    torch.testing.assert_close(out, E0)  # direction from the non-zero input, length (2 + 0) / 2
    assert torch.equal(merge("karcher", [torch.zeros(3), torch.zeros(3)], None), torch.zeros(3))
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(merge("karcher", [x], None), x)


def test_karcher_mean_of_three_symmetric_vectors_is_their_axis() -> None:
    vectors = [torch.tensor([math.cos(a), math.sin(a), 1.0]) for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
    out = karcher_mean(vectors, [1 / 3] * 3, max_iter=20, tol=1e-7)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, math.sqrt(2)]), atol=1e-6, rtol=0)


@pytest.mark.parametrize(("method", "base", "count"), [
    ("nuslerp", "optional", (2, 2)), ("multislerp", "optional", (1, None)), ("karcher", "ignored", (1, None)),
    ("slerp", "required", (1, 1)),
])
def test_interpolation_specs(method: str, base: str, count: tuple[int, int | None]) -> None:
    spec = get_method(method)
    assert spec.base == base and (spec.min_models, spec.max_models) == count
    assert not spec.randomized
