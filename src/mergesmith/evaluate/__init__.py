"""Evaluators: score a model (a checkpoint path, or a live model plus tokenizer).

Every evaluator follows the `Evaluator` protocol: `evaluate(model, tokenizer=None) ->
Scores` (a dict of named floats, each key starting with the evaluator's `name`), with
`primary` naming the score to optimise and `higher_is_better` its direction.

    from mergesmith.evaluate import ExactMatchEvaluator, PerplexityEvaluator
    scores = ExactMatchEvaluator({"add": "add.jsonl"}).evaluate("path/to/model")

torch and transformers are imported on use, so importing this package is cheap.
"""

from mergesmith.evaluate.base import CompositeEvaluator, Evaluator, Scores, objective
from mergesmith.evaluate.exact_match import (
    ExactMatchEvaluator,
    Example,
    greedy_generate,
    load_examples,
    write_examples,
)
from mergesmith.evaluate.lm_eval_adapter import LmEvalEvaluator, write_task_yaml
from mergesmith.evaluate.loading import (
    LoadedModel,
    ModelSource,
    default_device,
    load_model,
    loaded_model,
)
from mergesmith.evaluate.perplexity import PerplexityEvaluator
from mergesmith.evaluate.phrases import (
    Phrase,
    PhraseContext,
    PhraseProbability,
    PhraseProbabilityEvaluator,
    PhraseSet,
    continuation_ids,
    continuation_log_probs,
)

__all__ = [
    "CompositeEvaluator",
    "Evaluator",
    "Example",
    "ExactMatchEvaluator",
    "LmEvalEvaluator",
    "LoadedModel",
    "ModelSource",
    "PerplexityEvaluator",
    "Phrase",
    "PhraseContext",
    "PhraseProbability",
    "PhraseProbabilityEvaluator",
    "PhraseSet",
    "Scores",
    "continuation_ids",
    "continuation_log_probs",
    "default_device",
    "greedy_generate",
    "load_examples",
    "load_model",
    "objective",
    "loaded_model",
    "write_examples",
    "write_task_yaml",
]
