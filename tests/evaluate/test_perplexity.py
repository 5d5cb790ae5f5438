"""Sliding-window perplexity: the window arithmetic, and values on the quick demo base."""

from __future__ import annotations

import math
import random

import pytest
import torch

from mergesmith.demo import Family
from mergesmith.errors import OptionsError
from mergesmith.evaluate import LoadedModel, PerplexityEvaluator
from mergesmith.evaluate.perplexity import window_spans


@pytest.mark.parametrize(
    ("n", "max_length", "stride"), [(10, 4, 2), (10, 4, 3), (7, 8, 4), (9, 3, 1)]
)
def test_windows_score_every_token_after_the_first_once(
    n: int, max_length: int, stride: int
) -> None:
    scored = []
    for begin, end, first in window_spans(n, max_length, stride):
        assert end - begin <= max_length and begin < first <= end
        scored.extend(range(first, end))
    assert scored == list(range(1, n))


def test_full_window_equals_the_models_own_loss(
    quick_base: LoadedModel, quick_family: Family
) -> None:
    text = "\n".join(quick_family.heldout_corpus.read_text().splitlines()[:3])
    ids = [
        quick_base.tokenizer.bos_token_id,
        *quick_base.tokenizer(text, add_special_tokens=False)["input_ids"],
    ]
    with torch.no_grad():
        loss = quick_base.model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss
    scores = PerplexityEvaluator(text=text, max_length=len(ids)).evaluate(quick_base)
    assert scores["perplexity/tokens"] == len(ids) - 1
    assert scores["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-4)


def test_corpus_is_less_perplexing_than_shuffled_words(
    quick_base: LoadedModel, quick_family: Family
) -> None:
    lines = quick_family.heldout_corpus.read_text().splitlines()
    rng = random.Random(0)
    shuffled = []
    for line in lines:
        words = line.split()
        rng.shuffle(words)
        shuffled.append(" ".join(words))
    # The demo base was pre-trained on one line per sequence: score each line on its own.
    own = PerplexityEvaluator(quick_family.heldout_corpus, per_line=True)
    other = PerplexityEvaluator(text="\n".join(shuffled) + "\n", per_line=True)
    own_ppl, other_ppl = (
        own.evaluate(quick_base)["perplexity"],
        other.evaluate(quick_base)["perplexity"],
    )
    assert own_ppl < 0.5 * other_ppl
    assert own_ppl < 10.0


def test_batching_windows_does_not_change_the_result(
    quick_base: LoadedModel, quick_family: Family
) -> None:
    one = PerplexityEvaluator(quick_family.heldout_corpus, max_length=32, stride=16, batch_size=1)
    many = PerplexityEvaluator(quick_family.heldout_corpus, max_length=32, stride=16, batch_size=16)
    assert one.evaluate(quick_base)["perplexity"] == pytest.approx(
        many.evaluate(quick_base)["perplexity"], rel=1e-5
    )


def test_bad_arguments_are_reported() -> None:
    with pytest.raises(OptionsError, match="exactly one"):
        PerplexityEvaluator()
    with pytest.raises(OptionsError, match="does not exist"):
        PerplexityEvaluator("/nonexistent/corpus.txt")


def test_per_line_sums_each_lines_own_score(quick_base: LoadedModel) -> None:
    lines = ["the cat sat on the mat.", "add 12+30=42"]
    parts = [PerplexityEvaluator(text=line).evaluate(quick_base) for line in lines]
    both = PerplexityEvaluator(text="\n".join(lines) + "\n\n", per_line=True).evaluate(quick_base)
    assert both["perplexity/tokens"] == sum(p["perplexity/tokens"] for p in parts)
    nll = sum(p["perplexity/nll"] * p["perplexity/tokens"] for p in parts) / both["perplexity/tokens"]
    assert both["perplexity/nll"] == pytest.approx(nll, rel=1e-5)
