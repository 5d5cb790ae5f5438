"""BASE+ADAPTER inputs: the adapter is applied tensor by tensor, and merges agree with the fine-tune."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from factory import load_tensors, write_recipe
from lora_fixtures import full_adapter_fixture, rank4_adapter_fixture  # noqa: F401 (fixtures)

from mergesmith.api import merge
from mergesmith.errors import CheckpointError
from mergesmith.io.lora_source import LoraCheckpoint
from mergesmith.io.models import open_model


def test_reads_base_plus_delta_from_headers(llama: dict[str, Path], full_adapter: Path) -> None:
    ckpt = open_model(f"{llama['base']}+{full_adapter}", None)
    base, ft = load_tensors(llama["base"]), load_tensors(llama["a"])
    assert isinstance(ckpt, LoraCheckpoint) and set(ckpt.tensors) == set(base)
    assert ckpt.path == llama["base"].resolve() and ckpt.num_layers == 4
    for name in ("model.layers.1.self_attn.q_proj.weight", "model.layers.3.mlp.down_proj.weight",
                 "model.norm.weight", "model.embed_tokens.weight"):
        assert torch.allclose(ckpt.read(name), ft[name], atol=1e-5), name
    ckpt.close()


def _linear(first: str, second: str) -> str:
    return f"""
merge_method: linear
models:
  - model: {first}
    parameters: {{weight: 0.5}}
  - model: {second}
    parameters: {{weight: 0.5}}
"""


def test_merging_base_plus_adapter_equals_merging_the_fine_tune(llama: dict[str, Path], rank4_adapter: Path,
                                                                tmp_path: Path) -> None:
    via_adapter = write_recipe(tmp_path, _linear(f"{llama['base']}+{rank4_adapter}", str(llama["b"])), "lora.yaml")
    via_ft = write_recipe(tmp_path, _linear(str(llama["a"]), str(llama["b"])), "ft.yaml")
    merge(via_adapter, tmp_path / "m_lora")
    merge(via_ft, tmp_path / "m_ft")
    got, want = load_tensors(tmp_path / "m_lora"), load_tensors(tmp_path / "m_ft")
    base, ft = load_tensors(llama["base"]), load_tensors(llama["a"])
    report = json.loads((rank4_adapter / "extraction_report.json").read_text())
    errors = {e["tensor"]: e["rel_error"] for e in report["tensors"] if e["rel_error"] is not None}
    for name, tensor in want.items():
        # the merge halves the fine-tune's delta, so it differs by half the extraction error
        budget = 0.5 * errors.get(name, 0.0) * float((ft[name] - base[name]).norm()) + 1e-5
        assert float((got[name] - tensor).norm()) <= budget * 1.001, name


def test_full_rank_merge_matches_exactly(llama: dict[str, Path], full_adapter: Path, tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, _linear(f"{llama['base']}+{full_adapter}", str(llama["b"])))
    merge(recipe, tmp_path / "m")
    reference = write_recipe(tmp_path, _linear(str(llama["a"]), str(llama["b"])), "ref.yaml")
    merge(reference, tmp_path / "ref")
    got, want = load_tensors(tmp_path / "m"), load_tensors(tmp_path / "ref")
    assert all(torch.allclose(got[n], want[n], atol=1e-5) for n in want)


def test_adapter_made_by_peft_with_alpha_patterns(llama: dict[str, Path], tmp_path: Path) -> None:
    """A PEFT-trained-style adapter (alpha != r, rank/alpha patterns, rsLoRA) reads as PEFT merges it."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, use_rslora=True, target_modules=["q_proj", "up_proj"],
                        rank_pattern={"model.layers.1.mlp.up_proj": 2}, alpha_pattern={"model.layers.1.mlp.up_proj": 3},
                        modules_to_save=["model.norm"], init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(llama["base"]), config)
    with torch.no_grad():
        model.base_model.model.model.norm.modules_to_save.default.weight.mul_(1.5)
    model.save_pretrained(tmp_path / "peft_adapter")
    merged = {k: v.detach() for k, v in model.merge_and_unload().state_dict().items()}
    ckpt = open_model(f"{llama['base']}+{tmp_path / 'peft_adapter'}", None)
    for name in ("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.up_proj.weight", "model.norm.weight",
                 "model.layers.2.self_attn.k_proj.weight"):
        assert torch.allclose(ckpt.read(name), merged[name], atol=1e-6), name


def test_plus_without_an_adapter_is_a_clear_error(llama: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="has no adapter_config.json, so it is not a PEFT adapter"):
        open_model(f"{llama['base']}+{llama['a']}", None)
    with pytest.raises(CheckpointError, match="no such model folder"):
        open_model(f"{llama['base']}+{tmp_path / 'missing'}", None)


def test_a_directory_with_plus_in_its_name_is_a_model(llama: dict[str, Path], tmp_path: Path) -> None:
    odd = tmp_path / "c++model"
    shutil.copytree(llama["a"], odd)
    ckpt = open_model(str(odd), None)
    assert not isinstance(ckpt, LoraCheckpoint) and ckpt.num_layers == 4


def test_adapter_for_another_base_is_an_error(full_adapter: Path, tmp_path: Path) -> None:
    from factory import make_model

    other = tmp_path / "other"
    make_model(other, "llama", layers=2)
    with pytest.raises(CheckpointError, match="adapts module 'model.layers.2.*the base model has no tensor"):
        open_model(f"{other}+{full_adapter}", None)
