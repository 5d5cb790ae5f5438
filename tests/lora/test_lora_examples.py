"""LoRA on the demo family (the session's quick family): adapters extracted from the skill
experts reproduce them, and examples/lora/*.yaml run as their comments say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from demo_examples import EXAMPLES, held_out_prompts, one_thread_fixture, pointed, pointed_config  # noqa: F401
from factory import load_tensors, write_recipe

from mergesmith.api import merge
from mergesmith.lora import extract_lora
from mergesmith.moe import build_moe, load_moe_config
from mergesmith.moe.routing import load_moe, prompt_votes
from mergesmith.recipe import load_recipe

FULL_RANK = 128  # the demo models' hidden size: every matrix's full rank


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def adapters(quick_family, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """./adapters/{reverse,sort} at full rank, as the examples' comments extract them; sort also at rank 8."""
    root = tmp_path_factory.mktemp("demo-adapters")
    for skill in ("reverse", "sort"):
        extract_lora(str(quick_family.experts[skill]), str(quick_family.base), root / skill, rank=FULL_RANK)
    extract_lora(str(quick_family.experts["sort"]), str(quick_family.base), root / "sort-r8", rank=8)
    return root


def _reverse_scores(model, tokenizer, family) -> float:
    from mergesmith.evaluate import ExactMatchEvaluator

    evaluator = ExactMatchEvaluator({"reverse": family.test_sets["reverse"]}, limit=40, device="cpu")
    return evaluator.evaluate(model, tokenizer)["exact_match/reverse"]


def test_eval_loads_base_plus_adapter(quick_family, adapters: Path) -> None:
    """`mergesmith eval BASE+ADAPTER` (evaluators take the reference as a recipe does)."""
    expert = _reverse_scores(str(quick_family.experts["reverse"]), None, quick_family)
    assert _reverse_scores(f"{quick_family.base}+{adapters / 'reverse'}", None, quick_family) == expert
    assert _reverse_scores(str(quick_family.base), None, quick_family) <= expert - 0.2


def test_full_rank_adapter_loads_in_peft_and_reproduces_the_expert(quick_family, adapters: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(quick_family.base)
    base = AutoModelForCausalLM.from_pretrained(quick_family.base).eval()
    expert = AutoModelForCausalLM.from_pretrained(quick_family.experts["reverse"]).eval()
    ids = tokenizer(["rev KQXM=MXQK", "sort DBAC=ABCD", "the cat sat."], return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        want, start = expert(ids).logits, base(ids).logits
        peft = PeftModel.from_pretrained(base, adapters / "reverse").eval()
        got = peft(ids).logits
    assert (got - want).abs().max() < 1e-4 < 1.0 < (start - want).abs().max()
    accuracy = _reverse_scores(peft, tokenizer, quick_family)
    assert accuracy == _reverse_scores(expert, tokenizer, quick_family) >= 0.8  # the expert's


def test_merge_adapter_example_equals_merging_the_fine_tune(quick_family, adapters: Path, tmp_path: Path) -> None:
    example = EXAMPLES / "lora" / "merge_adapter.yaml"
    load_recipe(example.read_text())
    text = pointed(example, quick_family, adapters)
    merge(write_recipe(tmp_path, text, "adapter.yaml"), tmp_path / "via_adapter")
    fine_tune = text.replace(f"{quick_family.base}+{adapters}/reverse", str(quick_family.experts["reverse"]))
    merge(write_recipe(tmp_path, fine_tune, "ft.yaml"), tmp_path / "via_ft")
    got, want = load_tensors(tmp_path / "via_adapter"), load_tensors(tmp_path / "via_ft")
    assert set(got) == set(want)
    assert all(torch.allclose(got[n], want[n], atol=1e-5) for n in want)


def test_low_rank_merge_differs_by_the_extraction_error(quick_family, adapters: Path, tmp_path: Path) -> None:
    """task arithmetic of reverse + sort, sort as a rank-8 adapter: each tensor differs from
    the merge of the fine-tune by exactly the adapter's reconstruction error of that tensor."""
    text = pointed(EXAMPLES / "lora" / "merge_adapter.yaml", quick_family, adapters)
    via_adapter = text.replace(str(quick_family.experts["sort"]), f"{quick_family.base}+{adapters}/sort-r8")
    merge(write_recipe(tmp_path, via_adapter, "r8.yaml"), tmp_path / "r8")
    merge(write_recipe(tmp_path, text, "full.yaml"), tmp_path / "full")
    got, want = load_tensors(tmp_path / "r8"), load_tensors(tmp_path / "full")
    base, ft = load_tensors(quick_family.base), load_tensors(quick_family.experts["sort"])
    report = json.loads((adapters / "sort-r8" / "extraction_report.json").read_text())
    errors = {e["tensor"]: e["rel_error"] for e in report["tensors"] if e["rel_error"] is not None}
    assert report["summary"]["overall_rel_error"] > 0.3  # rank 8 of 128: a real error to account for
    for name, tensor in want.items():
        expected = errors.get(name, 0.0) * float((ft[name] - base[name]).norm())
        assert abs(float((got[name] - tensor).norm()) - expected) <= 1e-3 * expected + 1e-4, name


def test_moe_of_adapters_example_routes_by_skill(quick_family, adapters: Path, tmp_path: Path) -> None:
    example = EXAMPLES / "lora" / "moe_of_adapters.yaml"
    load_moe_config(example)
    build_moe(pointed_config(example, quick_family, adapters), tmp_path / "moe")
    out, sort = load_tensors(tmp_path / "moe"), load_tensors(quick_family.experts["sort"])
    got = out["model.layers.1.block_sparse_moe.experts.1.w1.weight"]
    assert (got - sort["model.layers.1.mlp.gate_proj.weight"]).abs().max() < 1e-5
    model, tokenizer = load_moe(tmp_path / "moe")
    _, reverse, sort_prompts, _ = held_out_prompts(quick_family, 20)
    votes = prompt_votes(model, tokenizer, [reverse, sort_prompts])
    # Held-out prompts go to their own skill's expert (the experts agree with the base, and
    # each other, outside their skill, so a few prompts may go either way).
    assert votes[0][0] >= 0.8 and votes[1][1] >= 0.8
