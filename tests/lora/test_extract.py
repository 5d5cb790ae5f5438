"""extract-lora: PEFT loads the adapter and reproduces the fine-tune; error falls with rank."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from factory import make_family
from lora_fixtures import full_adapter_fixture, rank4_adapter_fixture  # noqa: F401 (fixtures)
from safetensors.torch import load_file

from mergesmith.cli.main import main
from mergesmith.lora import extract_lora

IDS = torch.tensor([[1, 5, 6, 7, 40, 41, 80, 3]])


@pytest.fixture(scope="module")
def qwen2(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_family(tmp_path_factory.mktemp("lora_models"), "qwen2", layers=2)


def _logits(path: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(path)(IDS).logits


def _peft_logits(base: Path, adapter: Path) -> tuple[torch.Tensor, list[str]]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter)
    with torch.no_grad():
        return model(IDS).logits, [str(w.message) for w in caught]


def test_full_rank_adapter_reproduces_the_fine_tune(llama: dict[str, Path], full_adapter: Path) -> None:
    peft, caught = _peft_logits(llama["base"], full_adapter)
    ft, base = _logits(llama["a"]), _logits(llama["base"])
    assert (peft - ft).abs().max() < 1e-4 < (base - ft).abs().max()
    assert not [w for w in caught if "missing" in w.lower() or "unexpected" in w.lower()], caught


def test_adapter_files_use_peft_names(full_adapter: Path) -> None:
    config = json.loads((full_adapter / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 32 and config["lora_alpha"] == 32
    assert set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    # k/v projections are 16 x 32: their full rank is 16, so they differ from r
    assert config["rank_pattern"]["model.layers.0.self_attn.k_proj"] == 16
    assert config["alpha_pattern"] == config["rank_pattern"]
    assert "model.norm" in config["modules_to_save"] and "model.layers.0.input_layernorm" in config["modules_to_save"]
    keys = load_file(full_adapter / "adapter_model.safetensors").keys()
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight" in keys
    assert "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight" in keys
    assert "base_model.model.model.norm.weight" in keys
    report = json.loads((full_adapter / "extraction_report.json").read_text())
    assert report["summary"]["overall_rel_error"] < 1e-5 and len(report["tensors"]) > 30


def test_error_falls_as_rank_grows(llama: dict[str, Path], tmp_path: Path) -> None:
    errors = []
    for rank in (1, 4, 16, 32):
        result = extract_lora(str(llama["a"]), str(llama["base"]), tmp_path / f"r{rank}", rank=rank)
        errors.append(json.loads((tmp_path / f"r{rank}" / "extraction_report.json").read_text())
                      ["summary"]["overall_rel_error"])
        assert result.extraction.ranks
    assert errors == sorted(errors, reverse=True) and errors[0] > 0.5 and errors[-1] < 1e-5


def test_low_rank_logits_sit_between_base_and_fine_tune(llama: dict[str, Path], rank4_adapter: Path) -> None:
    peft, _ = _peft_logits(llama["base"], rank4_adapter)
    ft, base = _logits(llama["a"]), _logits(llama["base"])
    assert 0 < (peft - ft).norm() < (base - ft).norm()


def test_tied_embeddings_and_biases_qwen2(qwen2: dict[str, Path], tmp_path: Path) -> None:
    family = qwen2
    extract_lora(str(family["a"]), str(family["base"]), tmp_path / "ad", rank=32)
    config = json.loads((tmp_path / "ad" / "adapter_config.json").read_text())
    assert config["bias"] == "all" and "lm_head" in config["modules_to_save"]
    peft, _ = _peft_logits(family["base"], tmp_path / "ad")
    assert (peft - _logits(family["a"])).abs().max() < 1e-4
    # the embeddings decomposed too: the tied head follows them
    extract_lora(str(family["a"]), str(family["base"]), tmp_path / "emb", rank=32, embeddings=True)
    config = json.loads((tmp_path / "emb" / "adapter_config.json").read_text())
    assert {"embed_tokens", "lm_head"} <= set(config["target_modules"])
    peft, _ = _peft_logits(family["base"], tmp_path / "emb")
    assert (peft - _logits(family["a"])).abs().max() < 1e-4


def test_energy_gives_per_module_ranks_peft_loads(llama: dict[str, Path], tmp_path: Path) -> None:
    result = extract_lora(str(llama["a"]), str(llama["base"]), tmp_path / "e", rank=32, energy=0.6)
    ranks = set(result.extraction.ranks.values())
    assert len(ranks) > 1 and max(ranks) < 32
    config = json.loads((tmp_path / "e" / "adapter_config.json").read_text())
    assert config["rank_pattern"] and all(v != config["r"] for v in config["rank_pattern"].values())
    peft, caught = _peft_logits(llama["base"], tmp_path / "e")
    assert peft.isfinite().all() and not [w for w in caught if "size mismatch" in w]


def test_skip_undecomposable_and_exclude(llama: dict[str, Path], tmp_path: Path) -> None:
    result = extract_lora(str(llama["a"]), str(llama["base"]), tmp_path / "s", rank=2, skip_undecomposable=True,
                          exclude=[r"mlp\.down_proj"])
    config = json.loads((tmp_path / "s" / "adapter_config.json").read_text())
    assert config["modules_to_save"] is None and "down_proj" not in config["target_modules"]
    kinds = {e.tensor: e.kind for e in result.extraction.entries}
    assert kinds["model.norm.weight"] == "dropped" and kinds["model.layers.0.mlp.down_proj.weight"] == "excluded"


def test_cli_prints_report_and_writes_json(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    code = main(["extract-lora", "--model", str(llama["b"]), "--base", str(llama["base"]), "--rank", "8",
                 "--svd", "lowrank", str(tmp_path / "cli"), "--report", str(tmp_path / "r.json")])
    assert code == 0
    out = capsys.readouterr()
    assert "model.layers.0.self_attn.q_proj.weight" in out.out and "overall relative error" in out.out
    assert "wrote a LoRA adapter" in out.err
    assert json.loads((tmp_path / "r.json").read_text())["options"]["method"] == "lowrank"
    assert main(["extract-lora", "--model", str(llama["b"]), "--base", str(llama["base"]), "--rank", "0",
                 str(tmp_path / "bad")]) == 2
    assert "--rank 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_incompatible_models_are_an_error(llama: dict[str, Path], qwen2: dict[str, Path], tmp_path: Path,
                                         capsys) -> None:
    code = main(["extract-lora", "--model", str(qwen2["a"]), "--base", str(llama["base"]), "--rank", "4",
                 str(tmp_path / "x")])
    err = capsys.readouterr().err  # told from config.json, before any tensor is read
    assert code == 2 and "different architectures" in err and "Qwen2ForCausalLM" in err, err
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("dtype", ["bfloat16"])
def test_adapter_dtype(llama: dict[str, Path], tmp_path: Path, dtype: str) -> None:
    extract_lora(str(llama["a"]), str(llama["base"]), tmp_path / "d", rank=4, dtype=dtype)
    tensors = load_file(tmp_path / "d" / "adapter_model.safetensors")
    assert tensors["base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"].dtype == torch.bfloat16
