"""The lm-evaluation-harness adapter on the demo family, fully offline (a local task YAML)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.errors import OptionsError
from mergesmith.evaluate import ExactMatchEvaluator, LmEvalEvaluator, load_model, write_task_yaml

lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'mergesmith[lm-eval]')")


def test_lm_eval_task_scores_an_in_memory_model_like_our_exact_match(quick_family, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    write_task_yaml("demo_count", quick_family.test_sets["count"], tasks, max_gen_toks=4)
    loaded = load_model(quick_family.experts["count"], device="cpu")
    ours = ExactMatchEvaluator({"count": quick_family.test_sets["count"]}, limit=40).evaluate(loaded)
    theirs = LmEvalEvaluator(["demo_count"], include_path=tasks, limit=40).evaluate(
        loaded.model, loaded.tokenizer
    )
    assert theirs["lm_eval/demo_count/exact_match"] == pytest.approx(ours["exact_match/count"])
    assert theirs["lm_eval/mean"] > 0.8  # the count expert knows its skill
    base = LmEvalEvaluator(["demo_count"], include_path=tasks, limit=40).evaluate(quick_family.base)
    assert base["lm_eval/mean"] < theirs["lm_eval/mean"]  # the base half-knows it
    # Same include path: lm-eval's task index is reused, not rebuilt (seconds).
    with pytest.raises(OptionsError, match="no_such_task"):
        LmEvalEvaluator(["no_such_task"], include_path=tasks).evaluate(quick_family.base)
