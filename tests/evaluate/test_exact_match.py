"""Exact-match evaluation: task files, batched greedy decoding with left padding."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.demo import Family
from mergesmith.errors import OptionsError
from mergesmith.evaluate import (
    CompositeEvaluator,
    Evaluator,
    ExactMatchEvaluator,
    Example,
    LoadedModel,
    PerplexityEvaluator,
    load_examples,
    load_model,
    objective,
)
from mergesmith.evaluate.exact_match import answer_token_budget


def test_task_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "task.jsonl"
    path.write_text('{"prompt": "a", "answer": "b"}\n\n{"prompt": "c"}\n')
    with pytest.raises(OptionsError, match=r"task.jsonl:3"):
        load_examples(path)
    path.write_text('{"prompt": "a", "answer": 7}\n')
    assert load_examples(path) == [Example("a", "7")]


def test_answer_budget_counts_tokens_in_context(quick_base: LoadedModel) -> None:
    examples = [Example("add 1+2=", "3"), Example("add 50+50=", "100")]
    assert answer_token_budget(quick_base.tokenizer, examples) == 3 + 1  # digits are single tokens


def test_expert_answers_and_batching_does_not_matter(quick_family: Family) -> None:
    skill = "count"
    loaded = load_model(quick_family.experts[skill], device="cpu")
    task = {skill: quick_family.test_sets[skill]}
    batched = ExactMatchEvaluator(task, batch_size=64, limit=40).predictions(loaded, skill)
    single = ExactMatchEvaluator(task, batch_size=1, limit=40).predictions(loaded, skill)
    assert batched == single  # left padding changes nothing
    assert loaded.tokenizer.padding_side == "right"  # restored after generation
    score = ExactMatchEvaluator(task, limit=40).evaluate(loaded)[f"exact_match/{skill}"]
    answers = [ex.answer for ex in load_examples(quick_family.test_sets[skill])[:40]]
    assert score == sum(p == a for p, a in zip(batched, answers)) / 40
    assert score > 0.5


def test_path_and_in_memory_model_score_the_same(quick_family: Family) -> None:
    evaluator = ExactMatchEvaluator({"add": quick_family.search_sets["add"]}, limit=30)
    loaded = load_model(quick_family.experts["add"], device="cpu")
    by_path = evaluator.evaluate(quick_family.experts["add"])
    assert evaluator.evaluate(loaded.model, loaded.tokenizer) == by_path
    assert set(by_path) == {"exact_match/add", "exact_match/mean"}


def test_composite_evaluator_and_objective(quick_family: Family) -> None:
    exact = ExactMatchEvaluator({"sort": quick_family.search_sets["sort"]}, limit=20)
    ppl = PerplexityEvaluator(quick_family.heldout_corpus, max_length=64)
    both = CompositeEvaluator([exact, ppl])
    assert isinstance(both, Evaluator)
    scores = both.evaluate(quick_family.experts["sort"])
    assert set(scores) >= {"exact_match/sort", "perplexity", "perplexity/nll"}
    assert objective(both, scores) == scores["exact_match/mean"]
    assert objective(ppl, scores) == -scores["perplexity"]  # lower perplexity ranks higher
