"""Closed-form checks of `fisher` and `regmean` on hand-made statistics files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mergesmith.errors import MethodError
from mergesmith.methods.data_aware import FisherParams, RegMeanParams, fisher, regmean


def _stats_file(tmp_path: Path, name: str, tensor: torch.Tensor) -> str:
    path = tmp_path / f"{name}.safetensors"
    save_file({"w": tensor.contiguous()}, str(path))
    return str(path)


def test_regmean_of_two_regressions_is_the_joint_least_squares(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(0)
    xs = [torch.randn(40, 5, generator=gen, dtype=torch.float64) for _ in range(2)]
    ys = [x @ torch.randn(5, 3, generator=gen, dtype=torch.float64) + 0.1 * torch.randn(40, 3, generator=gen,
                                                                                         dtype=torch.float64)
          for x in xs]
    # Each model is the least-squares fit of its own data, as an nn.Linear weight (out x in).
    weights = [torch.linalg.lstsq(x, y).solution.T for x, y in zip(xs, ys)]
    stats = [_stats_file(tmp_path, f"g{i}", x.T @ x) for i, x in enumerate(xs)]
    params = RegMeanParams(alpha=1.0, stats=stats, tensor_names=["w", "w"], weight=[1.0, 1.0],
                           calibration=[None, None])
    merged = regmean(weights, None, params, None)
    joint = torch.linalg.lstsq(torch.cat(xs), torch.cat(ys)).solution.T
    torch.testing.assert_close(merged, joint, rtol=1e-9, atol=1e-9)


def test_regmean_alpha_zero_weighs_each_input_feature_by_its_energy(tmp_path: Path) -> None:
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 6.0]])
    stats = [_stats_file(tmp_path, "ga", torch.tensor([[1.0, 5.0], [5.0, 3.0]])),
             _stats_file(tmp_path, "gb", torch.tensor([[3.0, -5.0], [-5.0, 1.0]]))]
    params = RegMeanParams(alpha=0.0, stats=stats, tensor_names=["w", "w"], weight=[1.0, 1.0],
                           calibration=[None, None])
    # Diagonals only: column j is (ga_jj a_j + gb_jj b_j) / (ga_jj + gb_jj).
    expected = torch.tensor([[(1 * 1 + 3 * 3) / 4, (3 * 2 + 1 * 6) / 4]])
    torch.testing.assert_close(regmean([a, b], None, params, None), expected)


def test_regmean_falls_back_to_the_average_without_grams() -> None:
    norms = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])]
    params = RegMeanParams(stats=[None, None], tensor_names=["n", "n"], weight=[1.0, 1.0], calibration=[None, None])
    torch.testing.assert_close(regmean(norms, None, params, None), torch.tensor([2.0, 4.0]))


def test_fisher_with_equal_fishers_is_the_average(tmp_path: Path) -> None:
    a, b = torch.tensor([[1.0, -2.0], [0.5, 4.0]]), torch.tensor([[3.0, 2.0], [1.5, 0.0]])
    same = torch.tensor([[0.3, 2.0], [1.0, 7.0]])
    stats = [_stats_file(tmp_path, "fa", same), _stats_file(tmp_path, "fb", same)]
    params = FisherParams(stats=stats, tensor_names=["w", "w"], weight=[1.0, 1.0], calibration=[None, None])
    torch.testing.assert_close(fisher([a, b], None, params, None), (a + b) / 2)


def test_fisher_follows_the_model_whose_data_moves_the_parameter(tmp_path: Path) -> None:
    a, b = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([5.0, 5.0, 5.0])
    stats = [_stats_file(tmp_path, "fa", torch.tensor([1.0, 0.0, 1.0])),
             _stats_file(tmp_path, "fb", torch.tensor([0.0, 1.0, 3.0]))]
    params = FisherParams(stats=stats, tensor_names=["w", "w"], weight=[1.0, 1.0], calibration=[None, None],
                          epsilon=1e-12)
    torch.testing.assert_close(fisher([a, b], None, params, None), torch.tensor([1.0, 5.0, 4.0]))


def test_fisher_scaling_weights_the_fishers(tmp_path: Path) -> None:
    a, b = torch.tensor([0.0]), torch.tensor([4.0])
    stats = [_stats_file(tmp_path, "fa", torch.tensor([1.0])), _stats_file(tmp_path, "fb", torch.tensor([1.0]))]
    params = FisherParams(stats=stats, tensor_names=["w", "w"], weight=[3.0, 1.0], calibration=[None, None])
    torch.testing.assert_close(fisher([a, b], None, params, None), torch.tensor([1.0]))


@pytest.mark.parametrize("func, model", [(fisher, FisherParams), (regmean, RegMeanParams)])
def test_calibration_without_statistics_is_an_error(func, model) -> None:
    params = model(calibration=["data.txt", "data.txt"], stats=[None, None], weight=[1.0, 1.0])
    with pytest.raises(MethodError, match="no statistics"):
        func([torch.zeros(2), torch.ones(2)], None, params, None)


def test_regmean_fallback_task_arithmetic_adds_the_deltas_to_the_base() -> None:
    base = torch.tensor([1.0, 1.0])
    norms = [torch.tensor([2.0, 1.0]), torch.tensor([1.0, 4.0])]
    params = RegMeanParams(stats=[None, None], tensor_names=["n", "n"], weight=[1.0, 0.5], calibration=[None, None],
                           fallback="task_arithmetic")
    # base + 1.0 * (2-1, 1-1) + 0.5 * (1-1, 4-1)
    torch.testing.assert_close(regmean(norms, base, params, None), torch.tensor([2.0, 2.5]))


def test_a_fallback_over_the_base_needs_a_base_model(tmp_path: Path) -> None:
    from mergesmith.api import check_recipe
    from mergesmith.errors import RecipeError
    from mergesmith.recipe import load_recipe

    (tmp_path / "a.txt").write_text("one example\n")
    recipe = load_recipe({"merge_method": "regmean", "parameters": {"fallback": "ties"},
                          "models": [{"model": "a", "parameters": {"calibration": "a.txt"}}]})
    with pytest.raises(RecipeError, match="fallback ties needs `base_model`"):
        check_recipe(recipe, tmp_path)
    (tmp_path / "empty.txt").write_text("\n")
    recipe = load_recipe({"merge_method": "fisher", "models": [{"model": "a", "parameters": {"calibration": "empty.txt"}}]})
    with pytest.raises(RecipeError) as err:
        check_recipe(recipe, tmp_path)
    assert err.value.problems == [f"model 'a': calibration file {tmp_path / 'empty.txt'} holds no examples"]
