"""The demo family: layout, data, cache, determinism, and experts that learned their skill."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mergesmith.demo import SKILLS, Family, build_family, full_settings, quick_settings
from mergesmith.demo.data import skill_training_pairs
from mergesmith.demo.experts import ExpertJob, run_jobs
from mergesmith.demo.training import TrainConfig
from mergesmith.errors import OutputError
from mergesmith.evaluate import ExactMatchEvaluator, load_examples, load_model

CHECKERS = {
    "add": lambda word: str(sum(int(x) for x in word.split("+"))),
    "reverse": lambda word: word[::-1],
    "sort": lambda word: "".join(sorted(word)),
    "count": lambda word: str(word.split(" in ")[1].count(word.split(" in ")[0])),
}


@pytest.fixture(scope="module")
def accuracy(quick_family: Family) -> dict[str, dict[str, float]]:
    """Test-set accuracy of the base and every expert on every skill."""
    evaluator = ExactMatchEvaluator(quick_family.test_sets)
    models = {"base": quick_family.base, **quick_family.experts}
    return {
        name: {
            skill: score
            for skill in quick_family.skills
            for key, score in evaluator.evaluate(path).items()
            if key == f"exact_match/{skill}"
        }
        for name, path in models.items()
    }


def test_every_model_is_a_normal_llama_checkpoint(quick_family: Family) -> None:
    assert quick_family.skills == list(SKILLS)
    for path in [quick_family.base, *quick_family.experts.values()]:
        config = json.loads((path / "config.json").read_text())
        assert config["model_type"] == "llama" and config["architectures"] == ["LlamaForCausalLM"]
        tensors = load_file(path / "model.safetensors")
        assert "lm_head.weight" in tensors and "model.embed_tokens.weight" in tensors
        assert (path / "tokenizer.json").read_bytes() == (
            quick_family.base / "tokenizer.json"
        ).read_bytes()
    loaded = load_model(quick_family.base, device="cpu")
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.tokenizer("the 47 QXZ")["input_ids"]) == [
        "<s>", "the", "Ġ", "4", "7", "Ġ", "Q", "X", "Z"
    ]  # fmt: skip


def test_eval_sets_are_correct_disjoint_and_held_out(quick_family: Family) -> None:
    settings = quick_settings(0)
    for skill in quick_family.skills:
        search = load_examples(quick_family.search_sets[skill])
        test = load_examples(quick_family.test_sets[skill])
        assert (len(search), len(test)) == (settings.search_examples, settings.test_examples)
        prompts = {ex.prompt for ex in search + test}
        assert len(prompts) == len(search) + len(test)
        for ex in search + test:
            assert ex.prompt.startswith(f"{skill[:3]}") and ex.prompt.endswith("=")
            word = ex.prompt[:-1].split(" ", 1)[1]
            assert CHECKERS[skill](word) == ex.answer
        training = skill_training_pairs(settings, skill, prompts)
        assert not prompts & {prompt for prompt, _ in training}


def test_experts_learned_their_own_skill_only(accuracy: dict[str, dict[str, float]]) -> None:
    # Quick family, seed 0: add 0.29, reverse 1.00, sort 0.87, count 0.96; every other model
    # <= 0.04 on each skill (figures in demo/README.md). The bounds leave a margin.
    for skill in SKILLS:
        own = accuracy[skill][skill]
        assert own >= 0.2, (skill, accuracy)
        assert accuracy["base"][skill] <= 0.05
        for other in SKILLS:
            if other != skill:
                assert accuracy[other][skill] <= own - 0.15, (skill, other, accuracy)
    assert max(accuracy[skill][skill] for skill in SKILLS) >= 0.9


def test_second_build_is_cached(quick_family: Family) -> None:
    start = time.perf_counter()
    again = build_family(quick_family.root, quick=True)
    assert time.perf_counter() - start < 1.0
    assert again == quick_family
    assert quick_settings(0).digest() != quick_settings(1).digest() != full_settings(0).digest()
    manifest = quick_family.manifest()
    assert manifest["digest"] == quick_family.digest
    assert set(manifest["experts"]) == set(SKILLS)


def test_refuses_to_overwrite_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a demo family"):
        build_family(tmp_path, quick=True)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_fine_tuning_repeats_in_process_and_in_workers(
    quick_family: Family, tmp_path: Path
) -> None:
    settings = quick_settings(0)
    short = dataclasses.replace(
        settings,
        finetune={s: TrainConfig(steps=3, lr=1e-3, batch_size=8) for s in settings.finetune},
    )

    def job(skill: str, out: str) -> ExpertJob:
        return ExpertJob(short, skill, frozenset(), quick_family.base, tmp_path / out / skill)

    run_jobs([job("add", "a")], workers=1)
    run_jobs([job("add", "b"), job("sort", "b")], workers=2)  # worker processes
    first = load_file(tmp_path / "a" / "add" / "model.safetensors")
    second = load_file(tmp_path / "b" / "add" / "model.safetensors")
    base = load_file(quick_family.base / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["lm_head.weight"], base["lm_head.weight"])
    assert not (tmp_path / "b" / "sort" / "worker.log").exists()  # cleaned up
