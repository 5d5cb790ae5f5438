"""Building MoEs from tiny Llama/Qwen experts: they load in transformers, run, and route by prompt."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from factory import load_tensors, make_family, make_model

from mergesmith.cli.main import main
from mergesmith.errors import IncompatibleModelsError, RecipeError
from mergesmith.moe import build_moe
from mergesmith.moe.routing import load_moe, prompt_votes, routing_shares

# Two skills over disjoint token ranges of the tiny WordLevel vocabulary.
PROMPTS_A = ["w10 w11 w12 w13 w14", "w15 w16 w17 w18", "w11 w13 w15 w17 w19"]
PROMPTS_B = ["w60 w61 w62 w63 w64", "w65 w66 w67 w68", "w61 w63 w65 w67 w69"]


def _config(family: dict[str, Path], **extra) -> dict:
    config = {"base_model": str(family["base"]), "gate_mode": "hidden", "experts_per_token": 1,
              "experts": [{"source_model": str(family["a"]), "positive_prompts": PROMPTS_A},
                          {"source_model": str(family["b"]), "positive_prompts": PROMPTS_B}]}
    config.update(extra)
    return config


@pytest.fixture(scope="module")
def mixtral(llama: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("moe") / "mixtral"
    build_moe(_config(llama), out)
    return out


def test_mixtral_loads_without_missing_keys_and_generates(mixtral: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer, MixtralForCausalLM

    model, info = AutoModelForCausalLM.from_pretrained(mixtral, output_loading_info=True)
    assert isinstance(model, MixtralForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert model.config.num_local_experts == 2 and model.config.num_experts_per_tok == 1
    tok = AutoTokenizer.from_pretrained(mixtral)
    ids = tok("w10 w11 w12", return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, ids.shape[1] + 4)


def test_mixtral_experts_are_the_source_mlps(mixtral: Path, llama: dict[str, Path]) -> None:
    out = load_tensors(mixtral)
    a, b, base = load_tensors(llama["a"]), load_tensors(llama["b"]), load_tensors(llama["base"])
    prefix = "model.layers.2"
    assert torch.equal(out[f"{prefix}.block_sparse_moe.experts.0.w1.weight"], a[f"{prefix}.mlp.gate_proj.weight"])
    assert torch.equal(out[f"{prefix}.block_sparse_moe.experts.1.w2.weight"], b[f"{prefix}.mlp.down_proj.weight"])
    assert torch.equal(out[f"{prefix}.block_sparse_moe.experts.1.w3.weight"], b[f"{prefix}.mlp.up_proj.weight"])
    assert torch.equal(out[f"{prefix}.self_attn.q_proj.weight"], base[f"{prefix}.self_attn.q_proj.weight"])
    gate = out[f"{prefix}.block_sparse_moe.gate.weight"]
    assert gate.shape == (2, 32) and torch.allclose(gate.norm(dim=1), torch.ones(2), atol=1e-5)


def test_hidden_gates_route_each_skill_to_its_expert(mixtral: Path) -> None:
    model, tokenizer = load_moe(mixtral)
    shares = routing_shares(model, tokenizer, [PROMPTS_A, PROMPTS_B])
    assert shares[0][0] > 0.6 and shares[1][1] > 0.6, shares
    assert prompt_votes(model, tokenizer, [PROMPTS_A, PROMPTS_B]) == [[1.0, 0.0], [0.0, 1.0]]


def test_mlp_input_gates_route_each_skill_to_its_expert(llama: dict[str, Path], tmp_path: Path) -> None:
    build_moe(_config(llama, gate_mode="mlp_input"), tmp_path / "mlp")
    model, tokenizer = load_moe(tmp_path / "mlp")
    shares = routing_shares(model, tokenizer, [PROMPTS_A, PROMPTS_B])
    assert shares[0][0] > 0.6 and shares[1][1] > 0.6, shares
    hidden = load_tensors(tmp_path / "mlp")["model.layers.1.block_sparse_moe.gate.weight"]
    assert torch.allclose(hidden.norm(dim=1), torch.ones(2), atol=1e-5)


def test_model_card_and_config_written(mixtral: Path) -> None:
    card = (mixtral / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert {"moe", "mergesmith"} <= set(front["tags"])
    assert "Mixtral" in card and "w10 w11" in card
    saved = yaml.safe_load((mixtral / "mergesmith_moe.yaml").read_text())
    assert saved["gate_mode"] == "hidden" and len(saved["experts"]) == 2
    assert (mixtral / "tokenizer.json").is_file()
    assert json.loads((mixtral / "mergesmith_manifest.json").read_text())["method"] == "moe:mixtral"


def test_qwen2_moe_with_shared_expert(llama: dict[str, Path], tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, Qwen2MoeForCausalLM

    shared = [{"source_model": str(llama["base"]), "positive_prompts": PROMPTS_A + PROMPTS_B}]
    build_moe(_config(llama, shared_experts=shared, experts_per_token=2), tmp_path / "qmoe")
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "qmoe", output_loading_info=True)
    assert isinstance(model, Qwen2MoeForCausalLM) and not info["missing_keys"] and not info["unexpected_keys"]
    assert model.config.qkv_bias is False  # Llama attention has no biases
    out = load_tensors(tmp_path / "qmoe")
    assert out["model.layers.0.mlp.shared_expert_gate.weight"].shape == (1, 32)
    model, tokenizer = load_moe(tmp_path / "qmoe")
    shares = routing_shares(model, tokenizer, [PROMPTS_A, PROMPTS_B])
    assert shares[0][0] > 0.6 and shares[1][1] > 0.6, shares


def test_qwen2_experts_keep_attention_biases(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    family = make_family(tmp_path / "models", "qwen2", layers=2)
    shared = [{"source_model": str(family["base"])}]
    # random gates: transformers 5 loads the fixture's WordLevel tokenizer as a Qwen2 BPE one
    build_moe(_config(family, shared_experts=shared, dtype="bfloat16", gate_mode="random"), tmp_path / "q")
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "q", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and model.config.qkv_bias is True
    out = load_tensors(tmp_path / "q")
    assert out["model.layers.1.self_attn.q_proj.bias"].dtype == torch.bfloat16
    assert model(torch.tensor([[1, 5, 6]])).logits.isfinite().all()


@pytest.mark.parametrize("mode", ["cheap_embed", "random", "uniform_random"])
def test_other_gate_modes_build_loadable_models(llama: dict[str, Path], tmp_path: Path, mode: str) -> None:
    build_moe(_config(llama, gate_mode=mode), tmp_path / mode, seed=3)
    model, tokenizer = load_moe(tmp_path / mode)
    assert model(torch.tensor([[1, 10, 11]])).logits.isfinite().all()
    gate = load_tensors(tmp_path / mode)["model.layers.0.block_sparse_moe.gate.weight"]
    if mode == "uniform_random":
        assert gate.abs().max() <= 32 ** -0.5
    if mode == "cheap_embed":  # the same vectors in every layer
        assert torch.equal(gate, load_tensors(tmp_path / mode)["model.layers.3.block_sparse_moe.gate.weight"])


def test_noise_and_residual_scale(llama: dict[str, Path], tmp_path: Path) -> None:
    config = _config(llama, gate_mode="random")
    config["experts"][0]["residual_scale"] = 0.5
    config["experts"][1]["noise_scale"] = 0.01
    build_moe(config, tmp_path / "scaled")
    out, a, b = load_tensors(tmp_path / "scaled"), load_tensors(llama["a"]), load_tensors(llama["b"])
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.allclose(out["model.layers.1.block_sparse_moe.experts.0.w2.weight"], 0.5 * a[name])
    noisy = out["model.layers.1.block_sparse_moe.experts.1.w2.weight"] - b[name]
    assert 0.005 < noisy.std() < 0.02


def test_nearly_parallel_gates_warn(llama: dict[str, Path], tmp_path: Path, caplog) -> None:
    config = _config(llama)
    config["experts"][1]["positive_prompts"] = PROMPTS_A[:2] + ["w11 w13 w15 w17 w18"]  # almost expert 0's
    with caplog.at_level(logging.WARNING, logger="mergesmith"):
        result = build_moe(config, tmp_path / "parallel")
    assert result.warnings and "nearly parallel gates" in result.warnings[0]
    assert "nearly parallel" in caplog.text


def test_expert_of_another_architecture_or_size(llama: dict[str, Path], tmp_path: Path) -> None:
    other = tmp_path / "qwen"
    make_model(other, "qwen2", layers=4)
    config = _config(llama)
    config["experts"][1]["source_model"] = str(other)
    with pytest.raises(IncompatibleModelsError, match="experts.1 .* is a 'qwen2' model but the base is 'llama'"):
        build_moe(config, tmp_path / "out")
    small = tmp_path / "small"
    make_model(small, "llama", layers=2)
    config["experts"][1]["source_model"] = str(small)
    with pytest.raises(IncompatibleModelsError, match="has 2 layers but the base has 4"):
        build_moe(config, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_all_experts_the_same_model_needs_a_flag(llama: dict[str, Path], tmp_path: Path) -> None:
    config = _config(llama)
    config["experts"][1]["source_model"] = str(llama["a"])
    with pytest.raises(RecipeError, match="allow-identical-experts"):
        build_moe(config, tmp_path / "same")
    build_moe(config, tmp_path / "same", allow_identical_experts=True)
    assert (tmp_path / "same" / "model.safetensors").is_file()


def test_cli_builds_and_checks_routing(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    path = tmp_path / "moe.yaml"
    path.write_text(yaml.safe_dump(_config(llama)))
    assert main(["moe", str(path), str(tmp_path / "cli"), "--check-routing"]) == 0
    captured = capsys.readouterr()
    assert "built a mixtral MoE of 2 experts" in captured.err
    assert "routed first to expert" in captured.out and "mean router logit" in captured.out
    assert main(["moe", str(path), str(tmp_path / "cli")]) == 2  # not empty: needs --overwrite
    assert "--overwrite" in capsys.readouterr().err


def _qwen3_family(root: Path) -> dict[str, Path]:
    """base, a, b tiny Qwen3 models (tests/factory.py has no Qwen3)."""
    from factory import VOCAB, write_tokenizer
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    config = Qwen3Config(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                         tie_word_embeddings=False)
    base = Qwen3ForCausalLM(config)
    paths = {}
    for i, name in enumerate(("base", "a", "b")):
        model = Qwen3ForCausalLM(config)
        with torch.no_grad():
            for key, param in model.state_dict().items():
                param.copy_(base.state_dict()[key] + (0.02 * i) * torch.randn_like(param))
        model.save_pretrained(root / name)
        write_tokenizer(root / name)
        paths[name] = root / name
    return paths


def test_qwen3_moe_from_qwen3_experts(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, Qwen3MoeForCausalLM

    family = _qwen3_family(tmp_path / "qwen3")
    build_moe(_config(family, gate_mode="random"), tmp_path / "q3")
    model, info = AutoModelForCausalLM.from_pretrained(tmp_path / "q3", output_loading_info=True)
    assert isinstance(model, Qwen3MoeForCausalLM)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert "model.layers.0.self_attn.q_norm.weight" in load_tensors(tmp_path / "q3")
    assert model(torch.tensor([[1, 5, 6]])).logits.isfinite().all()
