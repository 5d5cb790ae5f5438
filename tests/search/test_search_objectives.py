"""Search objectives beyond exact match: MergeMonster phrases (auto weights calibrated on the
search's base, so serial and parallel runs weigh alike) and lm-eval tasks, from the config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mergesmith.cli.main import main
from mergesmith.errors import OptionsError
from mergesmith.evaluate import LmEvalEvaluator, load_examples
from mergesmith.evaluate.spec import EvaluatorSpec, build_evaluator


def _phrases(family, path: Path) -> Path:
    """Good: the right answers of 6 reverse prompts; bad: those answers un-reversed."""
    good, bad = [], []
    for ex in load_examples(family.search_sets["reverse"])[:6]:
        good.append({"phrase": ex.answer, "contexts": [ex.prompt]})
        bad.append({"phrase": ex.answer[::-1], "contexts": [ex.prompt]})
    path.write_text(yaml.safe_dump({"auto_weights": True, "good_phrases": good, "bad_phrases": bad}))
    return path


def test_soup_on_phrase_probabilities_picks_the_expert_that_says_them(quick_family, tmp_path):
    phrases = _phrases(quick_family, tmp_path / "phrases.yaml")
    config = {
        "models": [str(quick_family.experts[s]) for s in ("count", "reverse", "add")],
        "mode": "greedy",
        "search": [{"type": "phrases", "path": str(phrases)}],
        "final": [{"type": "exact_match", "limit": 10,
                   "tasks": {"reverse": str(quick_family.test_sets["reverse"])}}],
        "output": str(tmp_path / "out"),
    }
    (tmp_path / "soup.yaml").write_text(yaml.safe_dump(config))
    assert main(["soup", str(tmp_path / "soup.yaml")]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    # Every expert was ranked by the phrase score and the best-ranked one is kept first.
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    ranked = sorted((e for e in log if e["step"] == "rank"), key=lambda e: -e["score"])
    assert len(ranked) == 3 and report["ingredients"][0] == ranked[0]["model"]
    assert report["final"]["soup"]["exact_match/reverse"] >= 0.5  # the family half-knows it
    assert report["soup_search"] >= report["uniform_search"]


def test_phrase_weights_are_calibrated_on_the_reference(quick_family, tmp_path):
    spec = EvaluatorSpec(type="phrases", path=str(_phrases(quick_family, tmp_path / "p.yaml")))
    one = build_evaluator(spec, "cpu", str(quick_family.base))
    two = build_evaluator(spec, "cpu", str(quick_family.base))
    assert one.calibrated and one.phrases == two.phrases
    # Calibrated on the base, the base scores exactly (bad count) - (good count) = 0.
    assert one.evaluate(str(quick_family.base))["phrases/score"] == pytest.approx(0.0, abs=1e-9)


def test_lm_eval_and_bad_specs(tmp_path):
    evaluator = build_evaluator(EvaluatorSpec(type="lm_eval", tasks=["demo_add"],
                                              include_path=str(tmp_path), limit=5), "cpu")
    assert isinstance(evaluator, LmEvalEvaluator) and evaluator.limit == 5
    with pytest.raises(OptionsError, match="tasks: \\[task names\\]"):
        build_evaluator(EvaluatorSpec(type="lm_eval", tasks={"a": "b"}), "cpu")
    with pytest.raises(OptionsError, match="phrases evaluator needs `path:`"):
        build_evaluator(EvaluatorSpec(type="phrases", path=str(tmp_path / "none.yaml")), "cpu")
    with pytest.raises(OptionsError, match="exact_match evaluator needs"):
        build_evaluator(EvaluatorSpec(type="exact_match", tasks=["x"]), "cpu")
