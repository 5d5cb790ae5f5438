"""The data-flow space (Akiba et al. 2024): inclusion array, input scaling W, variable depth."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from search_helpers import evaluators, write_config

from mergesmith.cli.main import main
from mergesmith.search.dataflow import EXCLUDE, INCLUDE, make_dataflow_space
from mergesmith.search.resident import Resident


def _space(family, scale=True):
    return make_dataflow_space([str(family["base"]), str(family["a"]), str(family["b"])],
                               repeats=2, scale=scale, dtype="float32")


def test_inclusion_array_layout_and_paths(family):
    space = _space(family)
    base, a = str(family["base"]), str(family["a"])
    # T = M * L * r inclusion values, then the M x M scaling matrix.
    assert (space.positions, space.size) == (3 * 2 * 2, 12 + 9)
    assert space.position(0) == (0, 0) and space.position(3) == (1, 1)
    assert space.position(6) == (0, 0)  # the second repetition starts again at model 0
    # The start point is a copy of the first model: one slice, no scale.
    assert space.recipe(space.default_vector())["slices"] == [
        {"sources": [{"model": base, "layer_range": [0, 2]}]}]
    # a's layer 1, then base's layer 0 and 1 again from the second repetition: length 3.
    x = [EXCLUDE] * 12 + [1.0] * 9
    x[3] = x[6] = x[7] = INCLUDE
    assert [(m, layer) for m, layer, _ in space.path(x)] == [(1, 1), (0, 0), (0, 1)]
    slices = space.recipe(x)["slices"]
    assert [s["sources"][0]["model"] for s in slices] == [a, base]
    assert slices[1]["sources"][0]["layer_range"] == [0, 2]
    # Nothing included: the most included position alone (a path is never empty).
    empty = [-1.0] * 12 + [1.0] * 9
    empty[5] = -0.1
    assert [(m, layer) for m, layer, _ in space.path(empty)] == [(2, 1)]


def test_scaling_matrix_is_input_scaling(family):
    """The emitted output-projection scales equal scaling each layer's input by W[prev][cur]."""
    space = _space(family)
    x = [EXCLUDE] * 12 + [1.0] * 9
    x[0] = x[3] = x[4] = x[6] = INCLUDE  # base0, a1, b0, then base0 again (repetition 2)
    x[12 + 0 * 3 + 1] = 1.6  # base -> a
    x[12 + 1 * 3 + 2] = 0.5  # a -> b
    x[12 + 2 * 3 + 0] = 1.3  # b -> base
    path = space.path(x)
    assert [w for _, _, w in path] == [1.0, 1.6, 0.5, 1.3]
    scales = [s["sources"][0].get("parameters", {}).get("scale") for s in space.recipe(x)["slices"]]
    assert scales[0] is None and scales[1][0] == {"filter": "o_proj", "value": pytest.approx(1 / 1.6)}
    assert scales[3][1]["value"] == pytest.approx(1 / (1.6 * 0.5 * 1.3), rel=1e-6)

    res = Resident(space.models, [])
    model = res.loaded.model
    for module in model.modules():  # the identity is exact without the norms' eps
        if hasattr(module, "variance_epsilon"):
            module.variance_epsilon = 0.0
    ids = torch.tensor([[1, 5, 9, 14, 3, 7]])
    res.load_recipe(space.recipe(x))
    assert len(model.model.layers) == 4 and model.config.num_hidden_layers == 4
    with torch.no_grad():
        scaled_recipe = model(ids).logits
    unscaled = list(x[:12]) + [1.0] * 9
    res.load_recipe(space.recipe(unscaled))
    hooks = [layer.register_forward_pre_hook(_times(w), with_kwargs=True)
             for layer, (_, _, w) in zip(model.model.layers, path)]
    with torch.no_grad():
        scaled_inputs = model(ids).logits
    for h in hooks:
        h.remove()
    with torch.no_grad():
        plain = model(ids).logits
    assert torch.allclose(scaled_recipe, scaled_inputs, rtol=1e-4, atol=1e-6)
    assert not torch.allclose(scaled_recipe, plain, atol=1e-2)  # W really changes the model


def _times(w):
    def hook(module, args, kwargs):
        if args:
            return (args[0] * w, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": kwargs["hidden_states"] * w}
    return hook


def test_dataflow_evolve_merge_reproduces_score(family, tmp_path):
    cfg = write_config(tmp_path / "df.yaml", {
        "base_model": str(family["base"]), "models": [str(family["a"]), str(family["b"])],
        "space": "dataflow", "repeats": 2, "output": str(tmp_path / "df"), "max_evals": 7,
        "population": 6, "seed": 1, "sigma": 0.4, **evaluators(family["root"])})
    assert main(["evolve", str(cfg)]) == 0
    report = json.loads((tmp_path / "df" / "report.json").read_text())
    best = yaml.safe_load((tmp_path / "df" / "best.yaml").read_text())
    assert best["merge_method"] == "passthrough"
    assert report["best_search"] >= report["default_search"]
    # `mergesmith merge` of best.yaml gives the model the search scored.
    assert main(["merge", str(tmp_path / "df" / "best.yaml"), str(tmp_path / "m"), "--seed", "1"]) == 0
    from mergesmith.evaluate import PerplexityEvaluator

    ppl = PerplexityEvaluator(str(family["root"] / "search.txt")).evaluate(str(tmp_path / "m"))
    assert -ppl["perplexity"] == pytest.approx(report["best_search"], rel=1e-5)
    depth = sum(s["sources"][0]["layer_range"][1] - s["sources"][0]["layer_range"][0]
                for s in best["slices"])
    assert json.loads((tmp_path / "m" / "config.json").read_text())["num_hidden_layers"] == depth
