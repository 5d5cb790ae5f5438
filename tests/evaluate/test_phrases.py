"""Phrase probabilities (MergeMonster's score) on the quick demo base."""

from __future__ import annotations

import math

import pytest
import torch

from mergesmith.errors import OptionsError
from mergesmith.evaluate import (
    LoadedModel,
    PhraseProbabilityEvaluator,
    PhraseSet,
    continuation_ids,
    continuation_log_probs,
)

CONTEXT = "the old man walked past the "


def _brute_force_log_prob(loaded: LoadedModel, context: str, phrase: str) -> float:
    """log p(phrase | context), one unpadded sequence, summed token by token."""
    ids, first = continuation_ids(loaded.tokenizer, context, phrase)
    with torch.no_grad():
        logits = loaded.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    return sum(float(logits[pos - 1, ids[pos]]) for pos in range(first, len(ids)))


def test_config_in_mergemonster_format() -> None:
    phrases = PhraseSet.from_config(
        {
            "auto_weights": True,
            "bad_phrases": [
                {"phrase": "a", "weight": 10, "contexts": ["x ", {"context": "y ", "weight": 2}]}
            ],
            "good_phrases": [{"phrase": "b", "contexts": ["z "]}],
        }
    )
    assert phrases.auto_weights
    assert [(c.context, c.weight) for c in phrases.bad[0].contexts] == [("x ", 10.0), ("y ", 2.0)]
    assert phrases.good[0].contexts[0].weight == 1.0
    assert [sign for sign, _, _ in phrases.entries()] == [1, 1, -1]
    with pytest.raises(OptionsError, match="unknown key"):
        PhraseSet.from_config({"bad_phrases": [{"phrase": "a", "contexts": ["x"], "wieght": 1}]})
    with pytest.raises(OptionsError, match="neither"):
        PhraseSet.from_config({})


def test_phrase_is_scored_as_tokenized_in_context(quick_base: LoadedModel) -> None:
    tokenizer = quick_base.tokenizer
    # Alone, "bridge" has no leading space; after the context's trailing space the BPE
    # merges the space into the word, and the context's own last token ("Ġ") disappears.
    alone = tokenizer("bridge", add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(CONTEXT, add_special_tokens=False)["input_ids"]
    full = tokenizer(CONTEXT + "bridge", add_special_tokens=False)["input_ids"]
    assert full[-len(alone) :] != alone
    assert full[: len(context_ids)] != context_ids  # the naive "context is a prefix" fails
    ids, first = continuation_ids(tokenizer, CONTEXT, "bridge")
    assert ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(ids[first:]) == " bridge"
    assert tokenizer.decode(ids[:first], skip_special_tokens=True) == CONTEXT.rstrip()


def test_trained_phrase_beats_unseen_phrase(quick_base: LoadedModel) -> None:
    seen, unseen = continuation_log_probs(
        quick_base, [(CONTEXT, "bridge"), (CONTEXT, "zebra")], batch_size=8
    )
    # The corpus has "the bridge" after "walked past"; "zebra" never occurs.
    assert seen[0] > unseen[0] + 5.0
    assert math.exp(seen[0]) > 0.02


def test_batched_log_probs_match_one_sequence_at_a_time(quick_base: LoadedModel) -> None:
    pairs = [(CONTEXT, "bridge"), ("the cat ", "sat on the mat"), ("copy AB", "C=ABC"), ("a", "b")]
    batched = continuation_log_probs(quick_base, pairs, batch_size=64)
    for (context, phrase), (log_prob, n_tokens) in zip(pairs, batched):
        assert log_prob == pytest.approx(
            _brute_force_log_prob(quick_base, context, phrase), abs=1e-4
        )
        assert n_tokens >= 1


def test_score_is_signed_weighted_sum(quick_base: LoadedModel) -> None:
    config = {
        "bad_phrases": [{"phrase": "bridge", "weight": 3, "contexts": [CONTEXT]}],
        "good_phrases": [{"phrase": "the mat", "contexts": ["the cat sat on "]}],
    }
    evaluator = PhraseProbabilityEvaluator(config)
    probs = evaluator.probabilities(quick_base)
    scores = evaluator.evaluate(quick_base)
    assert scores["phrases/score"] == pytest.approx(3 * probs[0].probability - probs[1].probability)
    assert scores["phrases/bad"] == pytest.approx(probs[0].probability)
    assert evaluator.primary == "phrases/score" and not evaluator.higher_is_better


def test_auto_weights_make_every_pair_count_one_on_the_reference(quick_base: LoadedModel) -> None:
    config = {
        "auto_weights": True,
        "bad_phrases": [{"phrase": "bridge", "contexts": [CONTEXT, "a red fox jumped over the "]}],
        "good_phrases": [{"phrase": "mat", "contexts": ["the cat sat on the "]}],
    }
    evaluator = PhraseProbabilityEvaluator(config)
    # The first model evaluated is the reference, as MergeMonster's model 1.
    assert evaluator.evaluate(quick_base)["phrases/score"] == pytest.approx(2 - 1, rel=1e-4)
    assert evaluator.calibrated


def test_in_memory_model_needs_its_tokenizer(quick_base: LoadedModel) -> None:
    evaluator = PhraseProbabilityEvaluator({"bad_phrases": [{"phrase": "x", "contexts": ["y"]}]})
    with pytest.raises(OptionsError, match="tokenizer"):
        evaluator.evaluate(quick_base.model)
    assert evaluator.evaluate(quick_base.model, quick_base.tokenizer)["phrases/score"] > 0
