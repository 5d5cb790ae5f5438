"""MoE config validation: strict keys, ranges, prompts; no model is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.cli.main import main
from mergesmith.errors import RecipeError
from mergesmith.moe.arch import select_arch
from mergesmith.moe.config import load_moe_config

GOOD = """\
base_model: base
gate_mode: hidden
experts_per_token: 2
experts:
  - source_model: a
    positive_prompts: ["write a poem"]
  - source_model: b
    positive_prompts: ["solve the equation"]
"""


def _problems(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        load_moe_config(text)
    return info.value.render()


def test_good_config_parses() -> None:
    config, text = load_moe_config(GOOD)
    assert [e.source_model for e in config.experts] == ["a", "b"]
    assert config.gate_mode == "hidden" and config.experts_per_token == 2 and text == GOOD


def test_unknown_keys_suggest_the_right_one_with_line() -> None:
    text = GOOD.replace("experts_per_token: 2", "experts_per_tok: 2").replace(
        "    positive_prompts: [\"write a poem\"]", "    positive_prompt: [\"write a poem\"]")
    message = _problems(text)
    assert '<string>:3: experts_per_tok: unknown key (did you mean "experts_per_token"?)' in message
    assert '<string>:6: experts.0.positive_prompt: unknown key (did you mean "positive_prompts"?)' in message


@pytest.mark.parametrize("k", [0, 3, -1])
def test_experts_per_token_out_of_range(k: int) -> None:
    message = _problems(GOOD.replace("experts_per_token: 2", f"experts_per_token: {k}"))
    assert f"experts_per_token: {k} is out of range" in message and "between 1 and 2" in message


def test_hidden_gates_need_prompts_but_random_does_not() -> None:
    text = GOOD.replace('    positive_prompts: ["solve the equation"]\n', "")
    message = _problems(text)
    assert "experts.1 (b)" in message and "needs positive_prompts" in message and "random" in message
    config, _ = load_moe_config(text.replace("gate_mode: hidden", "gate_mode: random"))
    assert config.experts[1].positive_prompts is None


def test_identical_prompts_are_an_error() -> None:
    message = _problems(GOOD.replace("solve the equation", "write a poem"))
    assert "experts.1 (b) has the same prompts as experts.0" in message


def test_bad_gate_mode_and_types_listed_together() -> None:
    message = _problems(GOOD.replace("gate_mode: hidden", "gate_mode: hiden") + "dtype: float8\n")
    assert "2 problem(s)" in message and "gate_mode" in message and "dtype" in message


def test_dtype_aliases() -> None:
    config, _ = load_moe_config(GOOD + "dtype: bf16\n")
    assert config.dtype == "bfloat16"


def test_architecture_names() -> None:
    config, _ = load_moe_config(GOOD + "architecture: qwen\nshared_experts:\n  - source_model: base\n"
                                "    positive_prompts: [hello]\n")
    assert select_arch(config, "llama").key == "qwen2_moe"
    config, _ = load_moe_config(GOOD + "architecture: mixtrel\n")
    with pytest.raises(RecipeError, match='did you mean "mixtral"'):
        select_arch(config, "llama")
    plain, _ = load_moe_config(GOOD)
    assert select_arch(plain, "mistral").key == "mixtral"
    with pytest.raises(RecipeError, match="shared expert"):
        select_arch(plain, "qwen2")


def test_cli_validate_exit_codes(tmp_path: Path, capsys) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD.replace("experts_per_token: 2", "experts_per_token: 5"))
    assert main(["moe", str(good), str(tmp_path / "out"), "--validate"]) == 0
    assert main(["moe", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3" in err and "out of range" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
