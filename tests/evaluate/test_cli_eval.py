"""`mergesmith eval` on the demo family: tasks, perplexity, phrases, --save, and its errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


def _eval(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mergesmith", "eval", *map(str, args)],
                          capture_output=True, text=True)


def test_eval_tasks_perplexity_and_phrases_then_save(quick_family, tmp_path: Path) -> None:
    # Copies: --save writes into each model directory it scores.
    model = shutil.copytree(quick_family.experts["reverse"], tmp_path / "reverse")
    base_dir = shutil.copytree(quick_family.base, tmp_path / "base")
    prompt = json.loads(quick_family.test_sets["reverse"].read_text().splitlines()[0])
    phrases = tmp_path / "phrases.yaml"
    phrases.write_text(
        f"good_phrases:\n  - phrase: '{prompt['answer']}'\n    contexts: ['{prompt['prompt']}']\n"
        f"bad_phrases:\n  - phrase: '{prompt['answer'][::-1]}'\n    contexts: ['{prompt['prompt']}']\n"
    )
    out = _eval(model, base_dir, "--task", f"reverse={quick_family.test_sets['reverse']}",
                "--perplexity", quick_family.heldout_corpus, "--per-line", "--phrases", phrases, "--limit", "30",
                "--json", tmp_path / "scores.json", "--save")
    assert out.returncode == 0, out.stderr
    scores = json.loads((tmp_path / "scores.json").read_text())
    expert, base = scores[str(model)], scores[str(base_dir)]
    # The base half-knows the skill; its expert knows it.
    assert expert["exact_match/reverse"] >= 0.8 and base["exact_match/reverse"] <= expert["exact_match/reverse"]
    # The expert puts its trained answer far above the reversed (wrong) one; the score is
    # bad - good, so lower is better.
    assert expert["phrases/good"] > 0.5 > expert["phrases/bad"]
    assert expert["phrases/score"] < base["phrases/score"]
    # The base was pre-trained on this kind of text (perplexity ~5); the expert drifted from it.
    assert 1.0 < base["perplexity/corpus_heldout"] < 10
    assert base["perplexity/corpus_heldout"] < expert["perplexity/corpus_heldout"]
    saved = json.loads((model / "eval.json").read_text())["tasks"]
    assert saved["exact_match/reverse"] == expert["exact_match/reverse"]


def test_eval_errors_name_the_option(quick_family, tmp_path: Path) -> None:
    out = _eval(quick_family.base)
    assert out.returncode == 2 and "nothing to evaluate" in out.stderr
    out = _eval(quick_family.base, "--task", "add")
    assert out.returncode == 2 and "NAME=FILE" in out.stderr
    out = _eval(quick_family.base, "--phrases", tmp_path / "missing.yaml")
    assert out.returncode == 2 and "missing.yaml" in out.stderr
