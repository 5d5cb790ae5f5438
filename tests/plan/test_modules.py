"""`modules:` (mergekit's per-module recipes) on a tiny vision-language model (Qwen3-VL).

Expected tensors are worked from the inputs by hand (linear: normalised weighted averages);
the same recipes were checked against mergekit 0.1.5 while writing them (equal to 1 rounding
unit of fp32), and tests/compat compares against mergekit's recorded outputs.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from factory import load_tensors, make_vlm_family, write_recipe

from mergesmith.cli.main import main
from mergesmith.errors import RecipeError
from mergesmith.plan.modules import ARCH_MODULES, module_of

LAYER = "model.language_model.layers.{}.mlp.up_proj.weight"
BLOCK = "model.visual.blocks.{}.attn.qkv.weight"


@pytest.fixture(scope="module")
def vlm(models_root: Path) -> dict[str, Path]:
    return make_vlm_family(models_root)


@pytest.fixture(scope="module")
def inputs(vlm: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    return {k: load_tensors(v) for k, v in vlm.items()}


def _merge(tmp_path: Path, text: str, name: str = "out") -> dict[str, torch.Tensor]:
    assert main(["merge", str(write_recipe(tmp_path, text, f"{name}.yaml")), str(tmp_path / name), "--quiet"]) == 0
    return load_tensors(tmp_path / name)


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    torch.testing.assert_close(got, want, rtol=0, atol=2e-7)


PER_MODULE = """\
modules:
  text_decoder:
    models:
      - {{model: {a}, parameters: {{weight: [1, 0]}}}}
      - {{model: {b}, parameters: {{weight: 1}}}}
  vision_tower:
    slices:
      - sources:
          - {{model: {a}, layer_range: [0, 2], parameters: {{weight: 0.75}}}}
          - {{model: {b}, layer_range: [0, 2]}}
        parameters: {{weight: 0.25}}
      - sources:
          - {{model: {b}, layer_range: [2, 3], parameters: {{weight: 3}}}}
          - {{model: {a}, layer_range: [2, 3]}}
    parameters: {{weight: 0.5}}
  multi_modal_projector:
    models: [{{model: {a}}}, {{model: {b}}}]
merge_method: linear
parameters: {{weight: 0.1, normalize: true}}
"""


def test_each_module_merges_with_its_own_models_slices_and_parameters(vlm, inputs, tmp_path: Path) -> None:
    out = _merge(tmp_path, PER_MODULE.format(**vlm))
    a, b = inputs["a"], inputs["b"]
    assert out.keys() == a.keys()
    # text decoder: a's weight is a gradient over its 4 layers (t = j/3), b's is 1
    for j in range(4):
        wa = 1 - j / 3
        _close(out[LAYER.format(j)], (wa * a[LAYER.format(j)] + b[LAYER.format(j)]) / (wa + 1))
    emb = "model.language_model.embed_tokens.weight"
    _close(out[emb], (a[emb] + b[emb]) / 2)  # t = 0: weight 1 and 1
    # vision tower, slice 1 (blocks 0-1): a's own 0.75 over the slice's 0.25 for b
    for j in range(2):
        _close(out[BLOCK.format(j)], 0.75 * a[BLOCK.format(j)] + 0.25 * b[BLOCK.format(j)])
    # slice 2 (block 2): b's own 3, a gets the module's 0.5 (the slice sets none)
    _close(out[BLOCK.format(2)], (3 * b[BLOCK.format(2)] + 0.5 * a[BLOCK.format(2)]) / 3.5)
    patch = "model.visual.patch_embed.proj.weight"  # before the blocks: the first slice's sources
    _close(out[patch], 0.75 * a[patch] + 0.25 * b[patch])
    # projector: the top-level 0.1 for both, i.e. the mean
    for name in ("model.visual.merger.linear_fc1.weight", "model.visual.deepstack_merger_list.2.norm.weight"):
        _close(out[name], (a[name] + b[name]) / 2)


def test_stacking_blocks_in_one_module_sets_its_layer_count_and_loads(vlm, inputs, tmp_path: Path) -> None:
    text = f"""\
modules:
  text_decoder:
    models: [{{model: {vlm['a']}}}]
  vision_tower:
    slices:
      - sources: [{{model: {vlm['a']}, layer_range: [0, 3]}}]
      - sources: [{{model: {vlm['b']}, layer_range: [1, 3]}}]
  multi_modal_projector:
    models: [{{model: {vlm['b']}}}]
merge_method: passthrough
"""
    out = _merge(tmp_path, text)
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (config["vision_config"]["depth"], config["text_config"]["num_hidden_layers"]) == (5, 4)
    assert torch.equal(out[BLOCK.format(4)], inputs["b"][BLOCK.format(2)])
    assert torch.equal(out[BLOCK.format(2)], inputs["a"][BLOCK.format(2)])
    assert torch.equal(out["model.visual.merger.norm.weight"], inputs["b"]["model.visual.merger.norm.weight"])
    from transformers import Qwen3VLForConditionalGeneration

    model = Qwen3VLForConditionalGeneration.from_pretrained(tmp_path / "out")
    assert len(model.model.visual.blocks) == 5
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 96)


def test_models_recipe_on_a_vlm_merges_each_module_along_its_own_layers(vlm, inputs, tmp_path: Path) -> None:
    """As in mergekit: a gradient runs over the vision blocks as over the text layers."""
    plain = f"""\
models:
  - {{model: {vlm['a']}, parameters: {{weight: [1, 0]}}}}
  - {{model: {vlm['b']}, parameters: {{weight: 1}}}}
merge_method: linear
"""
    out = _merge(tmp_path, plain)
    a, b = inputs["a"], inputs["b"]
    for j in range(3):  # 3 vision blocks: t = j / 2
        wa = 1 - j / 2
        _close(out[BLOCK.format(j)], (wa * a[BLOCK.format(j)] + b[BLOCK.format(j)]) / (wa + 1))
    name = "model.visual.deepstack_merger_list.1.linear_fc1.weight"  # the projector's 3 layers: t = 1/2
    _close(out[name], (0.5 * a[name] + b[name]) / 1.5)
    # and it equals the modules: recipe giving the same models to every module
    body = "\n".join(f"  {m}:\n    models:\n      - {{model: {vlm['a']}, parameters: {{weight: [1, 0]}}}}\n"
                     f"      - {{model: {vlm['b']}, parameters: {{weight: 1}}}}"
                     for m in ("text_decoder", "vision_tower", "multi_modal_projector"))
    same = _merge(tmp_path, f"modules:\n{body}\nmerge_method: linear\n", "modules")
    assert same.keys() == out.keys()
    assert all(torch.equal(same[k], out[k]) for k in out)


def test_a_module_left_out_is_not_written_with_a_warning(vlm, inputs, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    text = f"""\
modules:
  text_decoder:
    models:
      - {{model: {vlm['a']}, parameters: {{weight: 0.3}}}}
      - {{model: {vlm['b']}, parameters: {{weight: 0.7}}}}
merge_method: linear
"""
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        out = _merge(tmp_path, text)
    assert not any(k.startswith("model.visual.") for k in out)
    assert set(out) == {k for k in inputs["a"] if not k.startswith("model.visual.")}
    _close(out[LAYER.format(3)], 0.3 * inputs["a"][LAYER.format(3)] + 0.7 * inputs["b"][LAYER.format(3)])
    messages = [r.getMessage() for r in caplog.records]
    assert any("module vision_tower of" in m and "its 39 tensors are not written, as in mergekit" in m for m in messages)
    assert any("module multi_modal_projector of" in m and "its 24 tensors are not written" in m for m in messages)


def test_modules_on_a_single_module_model_or_a_misspelled_module_is_exit_2(vlm, llama, tmp_path: Path, capsys) -> None:
    text = f"modules:\n  text_decoder:\n    models: [{{model: {llama['a']}}}]\nmerge_method: passthrough\n"
    assert main(["plan", str(write_recipe(tmp_path, text, "r1.yaml"))]) == 2
    err = capsys.readouterr().err
    assert "'modules:' needs a multi-module model" in err and "LlamaForCausalLM" in err
    assert "use 'models:' or 'slices:' for it" in err
    text = f"modules:\n  vision_towr:\n    models: [{{model: {vlm['a']}}}]\nmerge_method: passthrough\n"
    assert main(["validate", "--models", str(write_recipe(tmp_path, text, "r2.yaml"))]) == 2
    err = capsys.readouterr().err
    assert "has no module 'vision_towr' (did you mean \"vision_tower\"?)" in err
    assert "text_decoder, vision_tower, multi_modal_projector" in err


@pytest.mark.parametrize(("text", "needle"), [
    ("modules:\n  text_decoder: {models: [{model: a}], slices: [{sources: [{model: a, layer_range: [0, 1]}]}]}\n"
     "merge_method: passthrough\n", "a module gives exactly one of 'models:' or 'slices:'"),
    ("modules:\n  text_decoder: {models: [{model: a}]}\nmodels: [{model: a}]\nmerge_method: passthrough\n",
     "exactly one of 'models:' or 'slices:' (or 'modules:'"),
    ("modules:\n  text_decoder: {models: [{model: a, parameters: {wieght: 1}}]}\nmerge_method: linear\n",
     'unknown parameter "wieght" for linear (did you mean "weight"?)'),
    ("modules:\n  text_decoder: {models: [{model: a}, {model: b}]}\nmerge_method: linear\n", 'has no "weight"'),
    ("modules:\n  text_decoder: {models: [{model: a}]}\nmerge_method: slerp\nparameters: {t: 0.5}\n",
     "needs a base_model"),
])
def test_module_recipe_errors(text: str, needle: str) -> None:
    from mergesmith.recipe import load_recipe

    with pytest.raises(RecipeError) as info:
        load_recipe(text)
    assert needle in str(info.value)
    assert info.value.exit_code == 2


def test_tensors_belong_to_the_module_with_the_longest_prefix() -> None:
    qwen3 = ARCH_MODULES["Qwen3VLForConditionalGeneration"]
    assert module_of("model.visual.merger.norm.weight", qwen3) == "multi_modal_projector"
    assert module_of("model.visual.blocks.0.norm1.weight", qwen3) == "vision_tower"
    assert module_of("lm_head.weight", qwen3) == "text_decoder"
    qwen2 = ARCH_MODULES["Qwen2VLForConditionalGeneration"]
    assert module_of("model.layers.0.mlp.up_proj.weight", qwen2) == "text_decoder"
    assert module_of("visual.merger.mlp.0.weight", qwen2) == "multi_modal_projector"
    assert module_of("something.else", qwen2) is None


def test_plan_lists_each_modules_layers(vlm, tmp_path: Path, capsys) -> None:
    assert main(["plan", str(write_recipe(tmp_path, PER_MODULE.format(**vlm)))]) == 0
    out = capsys.readouterr().out
    assert "layer 3: 11 tensors" in out  # the text decoder's 4 layers, 11 tensors each
    assert "vision_tower layer 2: 12 tensors" in out and "vision_tower layer 3" not in out
    assert "multi_modal_projector layer 2: 6 tensors" in out
    assert "vision_tower embeddings: 3 tensors" in out
