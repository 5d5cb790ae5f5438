"""End to end: the CLI on real tiny checkpoints; outputs load in transformers and generate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from factory import load_tensors, write_recipe

from mergesmith.api import merge, merge_state_dicts
from mergesmith.cli.main import main


def cli(*args: str) -> int:
    return main([*map(str, args)])


def _linear(fam: dict[str, Path], wa: float = 0.7, wb: float = 0.5) -> str:
    return (f"models:\n  - model: {fam['a']}\n    parameters: {{weight: {wa}}}\n"
            f"  - model: {fam['b']}\n    parameters: {{weight: {wb}}}\nmerge_method: linear\n")


def test_linear_merge_is_the_weighted_mean(llama: dict[str, Path], tmp_path: Path) -> None:
    assert cli("merge", write_recipe(tmp_path, _linear(llama)), tmp_path / "out", "--quiet") == 0
    out, a, b = (load_tensors(p) for p in (tmp_path / "out", llama["a"], llama["b"]))
    assert set(out) == set(a)
    for name in a:
        torch.testing.assert_close(out[name], (0.7 * a[name] + 0.5 * b[name]) / 1.2, rtol=1e-6, atol=1e-7)


def test_merged_model_loads_and_generates(family: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    recipe = write_recipe(tmp_path, f"""
models:
  - model: {family['a']}
    parameters: {{weight: 1.0}}
  - model: {family['b']}
    parameters: {{weight: 0.5, density: 0.5}}
merge_method: task_arithmetic
base_model: {family['base']}
parameters: {{lambda: 0.8}}
""")
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ids = torch.tensor([[1, 5, 7, 9]])
    generated = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 4)
    out, base, a, b = (load_tensors(p) for p in (tmp_path / "out", family["base"], family["a"], family["b"]))
    name = next(n for n in out if ".0." in n and n.endswith("weight"))
    expected = base[name] + 0.8 * ((a[name] - base[name]) + 0.5 * (b[name] - base[name]))
    torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-6)


def test_passthrough_stacks_layers_and_fixes_config(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, f"""
slices:
  - sources: [{{model: {llama['a']}, layer_range: [0, 3]}}]
  - sources: [{{model: {llama['b']}, layer_range: [1, 4]}}]
merge_method: passthrough
""")
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 0
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_hidden_layers"] == 6
    assert len(config.get("layer_types", [None] * 6)) == 6
    out, a, b = (load_tensors(p) for p in (tmp_path / "out", llama["a"], llama["b"]))
    assert torch.equal(out["model.layers.2.mlp.up_proj.weight"], a["model.layers.2.mlp.up_proj.weight"])
    assert torch.equal(out["model.layers.3.mlp.up_proj.weight"], b["model.layers.1.mlp.up_proj.weight"])
    assert torch.equal(out["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert torch.equal(out["lm_head.weight"], b["lm_head.weight"])
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert len(model.model.layers) == 6
    ids = AutoTokenizer.from_pretrained(tmp_path / "out")("w1 w2 w3", return_tensors="pt").input_ids
    assert ids.tolist() == [[4, 5, 6]]
    assert model.generate(ids, max_new_tokens=3, do_sample=False).shape == (1, 6)


def test_slerp_gradient_endpoints(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, f"""
slices:
  - sources:
      - {{model: {llama['base']}, layer_range: [0, 4]}}
      - {{model: {llama['a']}, layer_range: [0, 4]}}
merge_method: slerp
base_model: {llama['base']}
parameters:
  t:
    - filter: self_attn
      value: [0, 1]
    - value: 0.5
""")
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 0
    out, base, a = (load_tensors(p) for p in (tmp_path / "out", llama["base"], llama["a"]))
    q = "model.layers.{}.self_attn.q_proj.weight"
    torch.testing.assert_close(out[q.format(0)], base[q.format(0)])  # t = 0 at the first layer
    torch.testing.assert_close(out[q.format(3)], a[q.format(3)], rtol=1e-5, atol=1e-6)  # t = 1 at the last


def test_shards_manifest_card_and_recipe_are_written(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _linear(llama))
    assert cli("merge", recipe, tmp_path / "out", "--shard-size", "20K", "--quiet") == 0
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"config.json", "model.safetensors.index.json", "README.md", "mergesmith_recipe.yaml",
            "mergesmith_manifest.json", "tokenizer.json", "generation_config.json"} <= files
    assert len([f for f in files if f.endswith(".safetensors")]) > 3
    card = (tmp_path / "out" / "README.md").read_text()
    assert card.startswith("---\n") and "- mergesmith" in card and "library_name: transformers" in card
    manifest = json.loads((tmp_path / "out" / "mergesmith_manifest.json").read_text())
    assert manifest["method"] == "linear" and len(manifest["inputs"]) == 2
    assert "config.json" in manifest["inputs"][0]["sha256"]
    torch.testing.assert_close(load_tensors(tmp_path / "out")["model.norm.weight"],
                               load_tensors(llama["a"])["model.norm.weight"] * 0.7 / 1.2
                               + load_tensors(llama["b"])["model.norm.weight"] * 0.5 / 1.2)


def test_results_do_not_depend_on_threads(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _linear(llama))
    merge(recipe, tmp_path / "one", threads=1)
    merge(recipe, tmp_path / "four", threads=4)
    one, four = load_tensors(tmp_path / "one"), load_tensors(tmp_path / "four")
    assert all(torch.equal(one[n], four[n]) for n in one)


def test_in_memory_merge_equals_file_merge(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe_text = _linear(llama)
    merge(write_recipe(tmp_path, recipe_text), tmp_path / "out")
    states = {str(llama[k]): load_tensors(llama[k]) for k in ("a", "b")}
    configs = {str(llama[k]): json.loads((llama[k] / "config.json").read_text()) for k in ("a", "b")}
    merged = merge_state_dicts(recipe_text, states, configs)
    on_disk = load_tensors(tmp_path / "out")
    assert set(merged) == set(on_disk)
    assert all(torch.equal(merged[n], on_disk[n]) for n in merged)


@pytest.mark.parametrize(("recipe", "needle"), [
    ("models:\n  - model: {a}\n    parameters: {{wieght: 1}}\nmerge_method: linear\n", "did you mean"),
    ("slices:\n  - sources: [{{model: {a}, layer_range: [0, 9]}}]\nmerge_method: passthrough\n", "has 4 layers"),
    ("models:\n  - model: {a}\n    parameters:\n      weight:\n        - filter: sefl_attn\n          value: 1\n"
     "        - value: 0.5\nmerge_method: linear\n", "match no tensor"),
    ("models:\n  - model: ./does/not/exist\n    parameters: {{weight: 1}}\nmerge_method: linear\n", "no such model folder"),
])
def test_bad_recipes_exit_2_and_leave_nothing(llama: dict[str, Path], tmp_path: Path, capsys, recipe: str, needle: str) -> None:
    path = write_recipe(tmp_path, recipe.format(a=llama["a"]))
    code = cli("merge", path, tmp_path / "out", "--quiet")
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert code == (1 if "exist" in needle or "no such" in needle else 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]


def test_output_inside_an_input_is_refused(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    before = sorted(p.name for p in llama["a"].iterdir())
    code = cli("merge", write_recipe(tmp_path, _linear(llama)), llama["a"] / "merged", "--quiet")
    assert code == 2 and "inside input model" in capsys.readouterr().err
    assert sorted(p.name for p in llama["a"].iterdir()) == before


def test_existing_output_needs_overwrite(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, _linear(llama))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 2
    assert "--overwrite" in capsys.readouterr().err
    # --overwrite replaces only what mergesmith wrote: not this folder of someone's files...
    assert cli("merge", recipe, tmp_path / "out", "--quiet", "--overwrite") == 2
    assert "not written by mergesmith" in capsys.readouterr().err
    assert (tmp_path / "out" / "old.txt").read_text() == "x"
    (tmp_path / "out" / "old.txt").unlink()
    # ...but an earlier merge, yes.
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 0
    stamp = (tmp_path / "out" / "mergesmith_manifest.json").stat().st_mtime_ns
    assert cli("merge", recipe, tmp_path / "out", "--quiet", "--overwrite") == 0
    assert (tmp_path / "out" / "mergesmith_manifest.json").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_different_layer_counts_say_use_slices(models_root: Path, tmp_path: Path, capsys) -> None:
    from factory import make_model

    make_model(tmp_path / "deep", "llama", layers=6)
    make_model(tmp_path / "shallow", "llama", layers=4)
    recipe = write_recipe(tmp_path, f"models:\n  - model: {tmp_path / 'deep'}\n  - model: {tmp_path / 'shallow'}\n"
                                    "merge_method: linear\nparameters: {weight: 1}\n")
    assert cli("merge", recipe, tmp_path / "out", "--quiet") == 2
    assert "use `slices:`" in capsys.readouterr().err


def test_tied_and_untied_heads_merge(tmp_path: Path) -> None:
    """An untied model merged with a tied one: the tied model's embedding serves as its head."""
    from factory import make_model
    from transformers import LlamaConfig, LlamaForCausalLM

    untied = make_model(tmp_path / "untied", "llama", seed=1)
    config = LlamaConfig(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    torch.manual_seed(2)
    LlamaForCausalLM(config).save_pretrained(tmp_path / "tied")
    tied = load_tensors(tmp_path / "tied")
    assert "lm_head.weight" not in tied
    recipe = write_recipe(tmp_path, f"models:\n  - model: {tmp_path / 'untied'}\n    parameters: {{weight: 1}}\n"
                                    f"  - model: {tmp_path / 'tied'}\n    parameters: {{weight: 1}}\nmerge_method: linear\n")
    merge(recipe, tmp_path / "out")
    out = load_tensors(tmp_path / "out")
    expected = (untied["lm_head.weight"] + tied["model.embed_tokens.weight"]) / 2
    torch.testing.assert_close(out["lm_head.weight"], expected)
    from mergesmith.api import plan

    reverse = write_recipe(tmp_path, f"models:\n  - model: {tmp_path / 'tied'}\n    parameters: {{weight: 1}}\n"
                                     f"  - model: {tmp_path / 'untied'}\n    parameters: {{weight: 1}}\nmerge_method: linear\n",
                           "reverse.yaml")
    assert any("ties it to the embeddings" in w for w in plan(reverse).warnings)
