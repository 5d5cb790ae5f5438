"""Parameters a method does not use: a mergekit recipe runs (one warning each), typos are refused."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from factory import load_tensors, write_recipe

from mergesmith.cli.main import main
from mergesmith.errors import RecipeError
from mergesmith.methods.known_params import MERGEKIT_PARAMETERS, known_parameter_names
from mergesmith.recipe import load_recipe

# mergekit's own test recipes give every model `weight: 0.5`, whatever the method.
SLERP_WITH_WEIGHTS = """\
models:
  - model: ./a
    parameters:
      weight: 0.5
  - model: ./b
    parameters:
      weight: 0.5
merge_method: slerp
base_model: ./a
parameters:
  t: 0.3
  density: [0.2, 0.8]
"""


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_a_parameter_some_method_knows_is_a_warning_naming_it_the_model_and_the_method(
        caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        recipe = load_recipe(SLERP_WITH_WEIGHTS)
    assert recipe.models[0].parameters == {"weight": 0.5}  # kept as written: the recipe is unchanged
    assert _warnings(caplog) == [
        '<string>:12: slerp does not use parameter "density" (top-level parameters); ignored, as mergekit ignores it',
        '<string>:4: slerp does not use parameter "weight" (model ./a); ignored, as mergekit ignores it',
        '<string>:7: slerp does not use parameter "weight" (model ./b); ignored, as mergekit ignores it',
    ]


def test_ignored_parameters_in_slices_and_sources_name_the_slice(caplog: pytest.LogCaptureFixture) -> None:
    text = """\
slices:
  - sources:
      - model: ./a
        layer_range: [0, 2]
        parameters: {weight: [0.1, 0.9]}
      - model: ./b
        layer_range: [0, 2]
    parameters: {select_topk: 0.5}
merge_method: nearswap
base_model: ./a
parameters: {t: 0.5}
"""
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        load_recipe(text)
    assert _warnings(caplog) == [
        '<string>:8: nearswap does not use parameter "select_topk" (slices[0]); ignored, as mergekit ignores it',
        '<string>:5: nearswap does not use parameter "weight" (slices[0] model ./a); ignored, as mergekit ignores it',
    ]


@pytest.mark.parametrize("method", ["slerp", "sce", "ram", "ramplus_tl", "model_stock", "arcee_fusion", "nearswap"])
def test_the_methods_mergekit_recipes_give_weight_to_load_with_one_warning_per_model(
        method: str, caplog: pytest.LogCaptureFixture) -> None:
    shared = "parameters: {t: 0.5}\n" if method in ("slerp", "nearswap") else ""
    text = (f"models:\n  - {{model: ./a, parameters: {{weight: 0.5}}}}\n  - {{model: ./b, parameters: {{weight: 0.5}}}}\n"
            f"  - {{model: ./c, parameters: {{weight: 0.5}}}}\nmerge_method: {method}\nbase_model: ./a\n{shared}")
    if method in ("slerp", "nearswap", "arcee_fusion"):
        text = text.replace("  - {model: ./c, parameters: {weight: 0.5}}\n", "")
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        load_recipe(text)
    lines = _warnings(caplog)
    assert lines and all(f'{method} does not use parameter "weight"' in line for line in lines)
    assert len(lines) == text.count("weight: 0.5")


def test_a_name_no_method_knows_is_still_refused_with_did_you_mean() -> None:
    with pytest.raises(RecipeError) as info:
        load_recipe(SLERP_WITH_WEIGHTS.replace("t: 0.3", "tt: 0.3").replace("density:", "desnity:"))
    text = str(info.value)
    assert info.value.exit_code == 2
    assert 'unknown parameter "tt" for slerp (did you mean "t"?); slerp takes: t' in text
    # not a name of slerp's: the suggestion comes from every method's names
    assert 'unknown parameter "desnity" for slerp (did you mean "density"?)' in text


def test_the_known_names_are_mergekits_and_ours() -> None:
    names = known_parameter_names()
    assert names >= MERGEKIT_PARAMETERS
    assert {"weight", "density", "select_topk", "filter_wise", "nuslerp_row_wise", "consensus", "weighted"} <= names
    assert "wieght" not in names


def test_cli_validate_warns_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture,
                                        caplog: pytest.LogCaptureFixture) -> None:
    recipe = write_recipe(tmp_path, SLERP_WITH_WEIGHTS)
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        assert main(["validate", str(recipe)]) == 0
    assert "valid" in capsys.readouterr().out
    assert f'{recipe}:4: slerp does not use parameter "weight" (model ./a)' in "\n".join(_warnings(caplog))


def test_slerp_with_ignored_weights_gives_the_tensors_of_slerp_without_them(llama: dict[str, Path], tmp_path: Path) -> None:
    plain = f"""\
models:
  - model: {llama['base']}
  - model: {llama['a']}
merge_method: slerp
base_model: {llama['base']}
parameters: {{t: [0.2, 0.7]}}
"""
    weighted = plain.replace(f"model: {llama['a']}\n", f"model: {llama['a']}\n    parameters: {{weight: 0.5}}\n")
    assert weighted != plain
    outs = []
    for i, text in enumerate((plain, weighted)):
        out = tmp_path / f"out{i}"
        assert main(["merge", str(write_recipe(tmp_path, text, f"r{i}.yaml")), str(out), "--quiet"]) == 0
        outs.append(load_tensors(out))
    assert outs[0].keys() == outs[1].keys()
    for name in outs[0]:
        assert torch.equal(outs[0][name], outs[1][name]), name


def test_a_shared_parameter_given_per_model_is_ignored_with_a_warning_as_mergekit_does(
        llama: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """mergekit reads `normalize` (one value for all models) only from the recipe's or a slice's
    `parameters:`; on a model it has no effect. The merge equals the one without it."""
    plain = f"""\
models:
  - model: {llama['a']}
    parameters: {{weight: 1.0}}
  - model: {llama['b']}
    parameters: {{weight: 3.0}}
merge_method: linear
"""
    per_model = plain.replace("{weight: 1.0}", "{weight: 1.0, normalize: false}")
    outs = []
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        for i, text in enumerate((plain, per_model)):
            out = tmp_path / f"out{i}"
            assert main(["merge", str(write_recipe(tmp_path, text, f"r{i}.yaml")), str(out), "--quiet"]) == 0
            outs.append(load_tensors(out))
    assert [w for w in _warnings(caplog) if "normalize" in w] == [
        f'{tmp_path / "r1.yaml"}:3: "normalize" is one value for all models of linear, so per model '
        f'(model {llama["a"]}) it is ignored, as mergekit ignores it; set it in the top-level or slice `parameters:`']
    a, b = load_tensors(llama["a"]), load_tensors(llama["b"])
    for name in outs[0]:  # normalised: (1 a + 3 b) / 4, in both
        assert torch.equal(outs[0][name], outs[1][name]), name
        assert torch.allclose(outs[1][name], (a[name] + 3 * b[name]) / 4, atol=1e-6), name


KARCHER = """\
models:
  - model: {a}
    parameters: {{weight: 3.0}}
  - model: {b}
    parameters: {{weight: 1.0}}
  - model: {c}
    parameters: {{weight: 0.5}}
merge_method: karcher
parameters: {{max_iter: 30, tol: 1.0e-7{extra}}}
"""


def test_karcher_ignores_weights_as_mergekit_does_unless_weighted(
        llama: dict[str, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    names = {"a": llama["base"], "b": llama["a"], "c": llama["b"]}
    equal = KARCHER.format(**names, extra="").replace("    parameters: {weight: 3.0}\n", "") \
        .replace("    parameters: {weight: 1.0}\n", "").replace("    parameters: {weight: 0.5}\n", "")
    texts = {"equal": equal, "weights": KARCHER.format(**names, extra=""),
             "weighted": KARCHER.format(**names, extra=", weighted: true")}
    outs = {}
    for key, text in texts.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="mergesmith"):
            assert main(["merge", str(write_recipe(tmp_path, text, f"{key}.yaml")), str(tmp_path / key), "--quiet"]) == 0
        warned = [m for m in _warnings(caplog) if "karcher ignores parameter" in m]
        assert len(warned) == (3 if key == "weights" else 0), warned
        outs[key] = load_tensors(tmp_path / key)
    assert 'karcher ignores parameter "weight" (model ' in warned[0] if warned else True
    name = "model.layers.1.mlp.up_proj.weight"
    for tensor in outs["equal"]:
        assert torch.equal(outs["equal"][tensor], outs["weights"][tensor]), tensor
    # with the opt-in the weights count: the mean moves towards the first model (weight 3 of 4.5)
    moved = (outs["weighted"][name] - outs["equal"][name]).abs().max().item()
    assert moved > 1e-4
    first = load_tensors(llama["base"])[name]
    assert (outs["weighted"][name] - first).norm() < (outs["equal"][name] - first).norm()


def test_karcher_warning_text_names_the_model_and_the_opt_in(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        load_recipe(KARCHER.format(a="./a", b="./b", c="./c", extra=""))
    assert _warnings(caplog)[0] == ('<string>:3: karcher ignores parameter "weight" (model ./a), as mergekit does; '
                                    "set `weighted: true` in `parameters:` to use it")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        load_recipe(KARCHER.format(a="./a", b="./b", c="./c", extra=", weighted: true"))
    assert _warnings(caplog) == []
