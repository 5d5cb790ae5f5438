"""examples/lora/*.yaml: valid recipes / MoE configs that run when pointed at the tiny test models."""

from __future__ import annotations

from pathlib import Path

import yaml
from factory import load_tensors
from lora_fixtures import full_adapter_fixture  # noqa: F401 (fixture)

from mergesmith.api import merge
from mergesmith.moe import build_moe, load_moe_config
from mergesmith.recipe import load_recipe

EXAMPLES = Path(__file__).parents[2] / "examples" / "lora"


def test_merge_adapter_example(llama: dict[str, Path], full_adapter: Path, tmp_path: Path) -> None:
    text = (EXAMPLES / "merge_adapter.yaml").read_text()
    load_recipe(text)
    text = (text.replace("./models/base+./adapters/chat", f"{llama['base']}+{full_adapter}")
            .replace("./models/code-finetune", str(llama["b"])).replace("./models/base", str(llama["base"])))
    (tmp_path / "r.yaml").write_text(text)
    merge(tmp_path / "r.yaml", tmp_path / "out")
    assert "model.layers.0.mlp.up_proj.weight" in load_tensors(tmp_path / "out")


def test_moe_of_adapters_example(llama: dict[str, Path], full_adapter: Path, tmp_path: Path) -> None:
    load_moe_config(EXAMPLES / "moe_of_adapters.yaml")
    data = yaml.safe_load((EXAMPLES / "moe_of_adapters.yaml").read_text())
    data["base_model"] = str(llama["base"])
    data["experts"][0]["source_model"] = f"{llama['base']}+{full_adapter}"
    data["experts"][1]["source_model"] = str(llama["b"])
    data["gate_mode"] = "random"  # the tiny tokenizer knows none of the English prompts
    build_moe(data, tmp_path / "moe")
    out, a = load_tensors(tmp_path / "moe"), load_tensors(llama["a"])
    name = "model.layers.1.mlp.gate_proj.weight"
    assert (out["model.layers.1.block_sparse_moe.experts.0.w1.weight"] - a[name]).abs().max() < 1e-5
