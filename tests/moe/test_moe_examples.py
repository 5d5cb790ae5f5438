"""examples/moe/*.yaml: each is a valid config and builds from the demo family (the session's
quick family stands in for ~/.cache/mergesmith/demo/full); the result loads in transformers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from demo_examples import EXAMPLES, one_thread_fixture, pointed_config  # noqa: F401
from factory import load_tensors

from mergesmith.moe import MoEResult, build_moe, load_moe_config
from mergesmith.moe.routing import load_moe

MOE_EXAMPLES = sorted((EXAMPLES / "moe").glob("*.yaml"))
CLASSES = {"mixtral.yaml": "MixtralForCausalLM", "qwen2_moe_shared.yaml": "Qwen2MoeForCausalLM",
           "random_gates.yaml": "MixtralForCausalLM"}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built(quick_family, tmp_path_factory: pytest.TempPathFactory) -> dict[str, MoEResult]:
    """example name -> its MoE, built from the quick demo family."""
    root = tmp_path_factory.mktemp("moe-examples")
    return {example.name: build_moe(pointed_config(example, quick_family), root / example.stem,
                                    allow_identical_experts=example.name == "random_gates.yaml")
            for example in MOE_EXAMPLES}


def test_there_are_examples() -> None:
    assert {p.name for p in MOE_EXAMPLES} >= set(CLASSES)


@pytest.mark.parametrize("example", MOE_EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_and_builds_from_the_demo_family(example: Path, built: dict[str, MoEResult]) -> None:
    from transformers import AutoModelForCausalLM

    load_moe_config(example)
    result = built[example.name]
    _, info = AutoModelForCausalLM.from_pretrained(result.out_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    model, tokenizer = load_moe(result.out_dir)
    assert type(model).__name__ == CLASSES[example.name]
    assert result.tensors == len(load_tensors(result.out_dir)) and result.experts == 4
    ids = tokenizer("rev ABC=", return_tensors="pt").input_ids
    assert ids.shape[1] < model.generate(ids, max_new_tokens=3, do_sample=False).shape[1] <= ids.shape[1] + 3


def test_qwen2_shared_expert_is_the_base_mlp(quick_family, built: dict[str, MoEResult]) -> None:
    out = load_tensors(built["qwen2_moe_shared.yaml"].out_dir)
    base, count = load_tensors(quick_family.base), load_tensors(quick_family.experts["count"])
    name = "model.layers.1.mlp.{}.weight"  # the demo models have two layers
    assert torch.equal(out[name.format("shared_expert.up_proj")], base[name.format("up_proj")])
    # residual_scale: 0.9 on the count expert's down projection
    assert torch.allclose(out[name.format("experts.3.down_proj")], 0.9 * count[name.format("down_proj")])
    assert out[name.format("shared_expert_gate")].shape == (1, 128)  # hidden size 128
