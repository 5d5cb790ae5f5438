"""An evaluator from its spec: the `search:`/`final:` entries of search configs and the
options of `mergesmith eval` name evaluators the same way.

Evaluator classes are imported when built, so reading a config stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mergesmith.errors import OptionsError


class EvaluatorSpec(BaseModel):
    """One evaluator; `weight` scales its signed primary score in the objective (searches)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["perplexity", "exact_match", "phrases", "lm_eval"]
    path: str | None = Field(None, description="perplexity: a text file; phrases: a YAML of "
                             "bad_phrases/good_phrases (MergeMonster's format)")
    text: str | None = None
    per_line: bool = Field(False, description="perplexity: score each line as a document of its own")
    tasks: dict[str, str] | list[str] | None = Field(
        None, description="exact_match: {name: file.jsonl}; lm_eval: [task names]")
    include_path: str | None = Field(None, description="lm_eval: a folder of task YAMLs")
    weight: float = Field(1.0, allow_inf_nan=False)
    limit: int | None = Field(None, ge=1, description="at most this many examples per task")
    name: str | None = Field(None, description="the scores' name prefix (default: the type, e.g. "
                             "perplexity); two evaluators of one type need different names")
    metric: str | None = Field(None, description="score key to optimise instead of the primary, "
                               "e.g. perplexity/nll (a smooth tie-breaker for exact match)")


def build_evaluator(spec: EvaluatorSpec, device: str, reference: Any = None) -> Any:
    """The evaluator a spec names. Phrase weights with `auto_weights` are calibrated on
    `reference` (the search's base), so every worker and every run weighs them alike."""
    named = {"name": spec.name} if spec.name else {}
    if spec.type == "perplexity":
        from mergesmith.evaluate.perplexity import PerplexityEvaluator

        if not spec.path and not spec.text:
            raise OptionsError("a perplexity evaluator needs `path: file.txt` (or `text:`)",
                               hint="e.g. {type: perplexity, path: held_out.txt}")
        return PerplexityEvaluator(spec.path, text=spec.text if not spec.path else None,
                                   per_line=spec.per_line, device=device, **named)
    if spec.type == "phrases":
        from mergesmith.evaluate.phrases import PhraseProbabilityEvaluator

        if not spec.path or not Path(spec.path).is_file():
            raise OptionsError(f"a phrases evaluator needs `path:` to a YAML file, got {spec.path!r}",
                               hint="bad_phrases/good_phrases in MergeMonster's format")
        evaluator = PhraseProbabilityEvaluator(spec.path, device=device, **named)
        if not evaluator.calibrated and reference is not None:
            evaluator.calibrate(reference)
        return evaluator
    if spec.type == "lm_eval":
        from mergesmith.evaluate.lm_eval_adapter import LmEvalEvaluator

        if not isinstance(spec.tasks, list) or not spec.tasks:
            raise OptionsError("an lm_eval evaluator needs `tasks: [task names]`",
                               hint="e.g. tasks: [hellaswag], or your own with include_path: DIR")
        return LmEvalEvaluator(spec.tasks, include_path=spec.include_path, limit=spec.limit,
                               device=device, **named)
    from mergesmith.evaluate.exact_match import ExactMatchEvaluator

    if not isinstance(spec.tasks, dict) or not spec.tasks:
        raise OptionsError("an exact_match evaluator needs `tasks: {name: file.jsonl}`",
                       hint="e.g. {type: exact_match, tasks: {add: add.jsonl}}")
    return ExactMatchEvaluator(spec.tasks, limit=spec.limit, device=device, **named)
