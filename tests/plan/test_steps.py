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
    ("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
     "merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n", "at most one step without"),
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


def _all_named(fam: dict[str, Path]) -> tuple[str, str]:
    """mergekit-multi's form (and mergekit's old mega.yml): every document named, the last is the output."""
    first = f"""\
name: gradient-slerp
slices:
  - sources:
      - {{model: {fam['base']}, layer_range: [0, 4]}}
      - {{model: {fam['a']}, layer_range: [0, 4]}}
merge_method: slerp
base_model: {fam['base']}
parameters:
  t: [0, 0.5, 1]
"""
    last = f"""\
name: gradient-slerp-ties
models:
  - model: SOUP
    parameters: {{density: [1, 0.7, 0.1], weight: 1.0}}
  - model: {fam['b']}
    parameters: {{density: 0.5, weight: 0.5}}
merge_method: ties
base_model: {fam['base']}
parameters: {{normalize: true}}
"""
    return first, last


def test_every_document_named_runs_and_the_last_is_the_output(llama: dict[str, Path], tmp_path: Path) -> None:
    first, last = _all_named(llama)
    chain = write_recipe(tmp_path, first + "---\n" + last.replace("SOUP", "gradient-slerp"), "chain.yaml")
    code = main(["merge", str(chain), str(tmp_path / "out"), "--intermediate-dir", str(tmp_path / "mid"), "--quiet"])
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "mid").iterdir()) == ["gradient-slerp"]  # the last is not there
    # the same documents run one by one, the second reading the first's output folder
    assert main(["merge", str(write_recipe(tmp_path, first, "one.yaml")), str(tmp_path / "one"), "--quiet"]) == 0
    two = write_recipe(tmp_path, last.replace("SOUP", str(tmp_path / "one")), "two.yaml")
    assert main(["merge", str(two), str(tmp_path / "two"), "--quiet"]) == 0
    for step, alone in (("mid/gradient-slerp", "one"), ("out", "two")):
        chained, single = load_tensors(tmp_path / step), load_tensors(tmp_path / alone)
        assert chained.keys() == single.keys()
        for name in chained:
            assert torch.equal(chained[name], single[name]), (step, name)
    # and the chain's output really is the ties merge of the slerp (not a copy of an input)
    base = load_tensors(llama["base"])["model.layers.2.mlp.up_proj.weight"]
    assert (load_tensors(tmp_path / "out")["model.layers.2.mlp.up_proj.weight"] - base).abs().max() > 1e-3


def test_all_named_chain_validates_and_plans(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    first, last = _all_named(llama)
    chain = write_recipe(tmp_path, first + "---\n" + last.replace("SOUP", "gradient-slerp"), "chain.yaml")
    assert main(["validate", str(chain), "--models"]) == 0
    assert "valid (2 steps)" in capsys.readouterr().out
    assert main(["plan", str(chain)]) == 0
    out = capsys.readouterr().out
    assert "step 1 of 2: gradient-slerp -> --intermediate-dir/gradient-slerp" in out
    assert "step 2 of 2: gradient-slerp-ties -> the output" in out
    assert "method: slerp" in out and "method: ties" in out


def test_the_last_named_document_must_not_feed_another_step() -> None:
    text = ("name: x\nmerge_method: linear\nmodels: [{model: y, parameters: {weight: 1}}]\n---\n"
            "name: y\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n")
    with pytest.raises(RecipeError, match='step "y" is the last document, so its output is the final merge'):
        order_steps(load_recipes(text))


def test_order_puts_dependencies_first_and_the_final_step_last() -> None:
    text = ("name: c\nmerge_method: linear\nmodels: [{model: b, parameters: {weight: 1}}]\n---\n"
            "name: b\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
            "name: lone\nmerge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}]\n---\n"
            "name: d\nmerge_method: linear\nmodels: [{model: c, parameters: {weight: 1}}]\n")
    assert [r.name for r in order_steps(load_recipes(text))] == ["b", "c", "lone", "d"]
    from mergesmith.plan.steps import unused_steps

    assert unused_steps(load_recipes(text)) == ["lone"]


def test_a_named_step_no_step_uses_is_still_merged_with_a_warning(llama: dict[str, Path], tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    import logging

    text = (f"name: lone\nmerge_method: linear\nmodels: [{{model: {llama['a']}, parameters: {{weight: 1}}}}, "
            f"{{model: {llama['b']}, parameters: {{weight: 3}}}}]\n---\n"
            f"name: final\nmerge_method: linear\nmodels: [{{model: {llama['a']}, parameters: {{weight: 1}}}}, "
            f"{{model: {llama['base']}, parameters: {{weight: 1}}}}]\n")
    recipe = write_recipe(tmp_path, text)
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        code = main(["merge", str(recipe), str(tmp_path / "out"), "--intermediate-dir", str(tmp_path / "mid"),
                     "--quiet"])
    assert code == 0
    assert any('step "lone" is used by no later step' in r.getMessage() for r in caplog.records)
    name = "model.layers.0.mlp.up_proj.weight"
    a, b, base = (load_tensors(llama[k])[name] for k in ("a", "b", "base"))
    torch.testing.assert_close(load_tensors(tmp_path / "mid" / "lone")[name], (a + 3 * b) / 4)
    torch.testing.assert_close(load_tensors(tmp_path / "out")[name], (a + base) / 2)
