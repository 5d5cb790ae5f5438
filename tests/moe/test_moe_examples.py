"""examples/moe/*.yaml: each is a valid config, and builds when pointed at the tiny test models."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from factory import load_tensors

from mergesmith.moe import build_moe, load_moe_config
from mergesmith.moe.routing import load_moe

EXAMPLES = sorted((Path(__file__).parents[2] / "examples" / "moe").glob("*.yaml"))


def _pointed(example: Path, llama: dict[str, Path]) -> dict:
    """The example with ./models/base -> the tiny base, every other model -> fine-tunes a and b."""
    data = yaml.safe_load(example.read_text())
    data["base_model"] = str(llama["base"])
    for i, expert in enumerate(data["experts"]):
        if expert["source_model"] != "./models/base":
            expert["source_model"] = str(llama["a" if i % 2 == 0 else "b"])
        else:
            expert["source_model"] = str(llama["base"])
    for expert in data.get("shared_experts") or []:
        expert["source_model"] = str(llama["base"])
    # the tiny WordLevel tokenizer knows none of the examples' English words
    data["gate_mode"] = "random"
    return data


def test_there_are_examples() -> None:
    assert {p.name for p in EXAMPLES} >= {"mixtral.yaml", "qwen2_moe_shared.yaml", "random_gates.yaml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_and_builds(example: Path, llama: dict[str, Path], tmp_path: Path) -> None:
    load_moe_config(example)
    result = build_moe(_pointed(example, llama), tmp_path / "out", allow_identical_experts=True)
    model, _ = load_moe(tmp_path / "out")
    assert type(model).__name__ in {"MixtralForCausalLM", "Qwen2MoeForCausalLM"}
    assert result.tensors == len(load_tensors(tmp_path / "out"))
