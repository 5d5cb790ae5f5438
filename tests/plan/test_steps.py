"""Multi-step recipes: named intermediate steps, dependency order, --lazy, whole-chain planning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from factory import load_tensors, write_recipe

from mergesmith.cli.main import main
from mergesmith.errors import RecipeError
from mergesmith.plan.steps import order_steps
from mergesmith.recipe import load_recipes


def _two_step(fam: dict[str, Path], final_t: str = "0.5") -> str:
    # the final step comes first in the file: order is by dependency, not by position
    return f"""
merge_method: slerp
base_model: {fam['base']}
models:
  - model: {fam['base']}
  - model: soup
parameters:
  t: {final_t}
---
name: soup
merge_method: linear
models:
  - model: {fam['a']}
    parameters: {{weight: 1.0}}
  - model: {fam['b']}
    parameters: {{weight: 1.0}}
"""


def test_two_step_recipe_runs_in_dependency_order(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _two_step(llama))
    code = main(["merge", str(recipe), str(tmp_path / "out"), "--intermediate-dir", str(tmp_path / "mid"), "--quiet"])
    assert code == 0
    base, a, b = (load_tensors(llama[k]) for k in ("base", "a", "b"))
    soup = load_tensors(tmp_path / "mid" / "soup")
    name = "model.layers.1.mlp.up_proj.weight"
    torch.testing.assert_close(soup[name], (a[name] + b[name]) / 2)
    from mergesmith.methods.slerp import slerp_pair

    out = load_tensors(tmp_path / "out")
    torch.testing.assert_close(out[name], slerp_pair(0.5, base[name], soup[name]), rtol=1e-5, atol=1e-6)


def test_lazy_skips_a_complete_step(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _two_step(llama))
    args = ["merge", str(recipe), str(tmp_path / "out"), "--intermediate-dir", str(tmp_path / "mid"), "--quiet"]
    assert main(args) == 0
    stamp = (tmp_path / "mid" / "soup" / "model.safetensors").stat().st_mtime_ns
    assert main([*args, "--lazy", "--overwrite"]) == 0
    assert (tmp_path / "mid" / "soup" / "model.safetensors").stat().st_mtime_ns == stamp
    assert main([*args, "--overwrite"]) == 0  # without --lazy the step is redone
    assert (tmp_path / "mid" / "soup" / "model.safetensors").stat().st_mtime_ns != stamp


def test_a_bad_last_step_fails_before_the_first_runs(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    text = _two_step(llama)
    recipe = write_recipe(tmp_path, text.replace("t: 0.5", "t:\n    - filter: nothing_matches\n      value: 1\n    - value: 0.5"))
    code = main(["merge", str(recipe), str(tmp_path / "out"), "--intermediate-dir", str(tmp_path / "mid"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "nothing_matches" in err
    assert not (tmp_path / "mid").exists() and not (tmp_path / "out").exists()


def test_multi_step_needs_intermediate_dir(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, _two_step(llama))
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 2
    assert "--intermediate-dir" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "needle"), [
    ("name: x\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
     "name: y\nmerge_method: linear\nmodels: [{model: x, parameters: {weight: 1}}]\n", "exactly one step without"),
    ("name: x\nmerge_method: linear\nmodels: [{model: y, parameters: {weight: 1}}]\n---\n"
     "name: y\nmerge_method: linear\nmodels: [{model: x, parameters: {weight: 1}}]\n---\n"
     "merge_method: linear\nmodels: [{model: x, parameters: {weight: 1}}]\n", "cycle"),
    ("name: x\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
     "name: x\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
     "merge_method: linear\nmodels: [{model: x, parameters: {weight: 1}}]\n", "two steps are named"),
])
def test_step_structure_errors(text: str, needle: str) -> None:
    with pytest.raises(RecipeError, match=needle):
        order_steps(load_recipes(text))
