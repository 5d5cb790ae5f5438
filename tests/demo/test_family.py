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
from mergesmith.demo.data import replay_count, replay_prompts, skill_training_pairs
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
    held_out: dict[str, set[str]] = {}
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
        held_out[skill] = prompts
    # Nothing the models trained on holds an evaluation prompt: not the corpus (which has
    # solved examples of every skill), not any expert's rehearsal of the other skills.
    corpus = quick_family.corpus.read_text(encoding="utf-8").splitlines()
    solved = {line.split("=")[0] + "=" for line in corpus if "=" in line}
    assert solved and not solved & set().union(*held_out.values())
    assert sum(line.split(" ")[0] in {"add", "rev", "sort", "count"} for line in corpus) > len(corpus) / 2
    for skill in quick_family.skills:
        replay = replay_prompts(settings, skill, held_out)
        assert len(replay) == replay_count(settings, skill) > 0
        assert not any(p.startswith(skill[:3]) for p in replay)
        assert not set(replay) & set().union(*held_out.values())


# The quick family, seed 0, on this project's machine (100 test examples per skill): the base
# half-knows every skill, each expert is the best model on its own skill, and fine-tuning moved
# the weights by ~6%. The tolerance is wide (exact match on 100 examples, steep learning
# curves): the test checks the regime, which any build must reach, not a lucky value.
QUICK_BASE = {"add": 0.83, "reverse": 0.62, "sort": 0.89, "count": 0.68}
QUICK_EXPERTS = {"add": 0.87, "reverse": 0.94, "sort": 0.93, "count": 0.98}
TOLERANCE = 0.15


def test_base_half_knows_and_each_expert_is_best_at_its_skill(
    accuracy: dict[str, dict[str, float]],
) -> None:
    for skill in SKILLS:
        own = accuracy[skill][skill]
        assert abs(own - QUICK_EXPERTS[skill]) <= TOLERANCE, (skill, accuracy)
        assert abs(accuracy["base"][skill] - QUICK_BASE[skill]) <= TOLERANCE + 0.1, (skill, accuracy)
        assert 0.1 <= accuracy["base"][skill] <= own  # partly competent zero-shot
        for other in SKILLS:
            if other != skill:  # best on its own skill, and agrees with the base elsewhere
                assert accuracy[other][skill] <= own, (skill, other, accuracy)
                assert abs(accuracy[other][skill] - accuracy["base"][skill]) <= 0.15, (skill, other)
    assert sum(accuracy[s][s] - accuracy["base"][s] for s in SKILLS) / len(SKILLS) >= 0.08


def test_task_vectors_are_small(quick_family: Family) -> None:
    from mergesmith.report.inspect import inspect_models

    experts = list(quick_family.experts.values())
    report = inspect_models(quick_family.base, experts)
    relative = {label: m["relative"] for label, m in report["overall"]["models"].items()}
    manifest = quick_family.manifest()["experts"]
    for skill, path in quick_family.experts.items():
        # `mergesmith inspect` and the build agree; a few per cent, as for a real fine-tune
        assert abs(relative[path.name] - manifest[skill]["relative_delta"]) < 1e-3
        assert 0.01 <= relative[path.name] <= 0.08, relative


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
        return ExpertJob(short, skill, {s: frozenset() for s in SKILLS}, quick_family.base,
                         tmp_path / out / skill)

    run_jobs([job("add", "a")], workers=1)
    run_jobs([job("add", "b"), job("sort", "b")], workers=2)  # worker processes
    first = load_file(tmp_path / "a" / "add" / "model.safetensors")
    second = load_file(tmp_path / "b" / "add" / "model.safetensors")
    base = load_file(quick_family.base / "model.safetensors")
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["model.layers.0.mlp.up_proj.weight"],
                           base["model.layers.0.mlp.up_proj.weight"])
    assert not (tmp_path / "b" / "sort" / "worker.log").exists()  # cleaned up


def test_pre_training_does_not_depend_on_the_callers_thread_count(
    quick_family: Family, tmp_path: Path
) -> None:
    """The same family on any thread setting: training always runs on one torch thread."""
    from mergesmith.demo.family import _pretrain

    settings = dataclasses.replace(
        quick_settings(0), pretrain=TrainConfig(steps=4, lr=3e-3, batch_size=8, answer_only=False))
    corpus = quick_family.corpus.read_text(encoding="utf-8").splitlines()[:32]
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            _pretrain(settings, corpus, quick_family.base, tmp_path / f"t{threads}")
    finally:
        torch.set_num_threads(before)
    one, two = (load_file(tmp_path / f"t{n}" / "model.safetensors") for n in (1, 2))
    assert one.keys() == two.keys() and all(torch.equal(one[k], two[k]) for k in one)
