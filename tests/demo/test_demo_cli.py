"""`mergesmith demo --quick` end to end on the (already built) quick family."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml


def test_demo_prints_one_table_writes_results_and_names_the_best_recipe(
    quick_family, tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    out = subprocess.run(
        [sys.executable, "-m", "mergesmith", "demo", "--quick", "--workdir", str(quick_family.root),
         "--limit", "20", "--report", str(report)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Loading weights" not in out.stdout + out.stderr  # transformers' bars are off
    assert out.stdout.count("| model |") == 1  # one table, printed once
    rows = {m.group(1).strip(): [float(x) for x in m.group(2).split(" | ")]
            for m in re.finditer(r"^\| ([^|]+) \| ((?:[0-9.]+ \| )*[0-9.]+) \|$", out.stdout, re.M)}
    assert {"base", "linear", "task_arithmetic λ=1.0", "ties λ=1.0 d=0.5"} <= set(rows)
    skills = list(quick_family.experts)
    for i, skill in enumerate(skills):  # each expert is best at its own skill
        assert rows[f"expert:{skill}"][i] == max(rows[f"expert:{s}"][i] for s in skills)
    names = list(rows)
    merges = names[1 + len(skills):]
    normalised = [rows[n][-1] for n in merges]
    assert normalised == sorted(normalised, reverse=True)  # merges sorted, best first

    results = json.loads((quick_family.root / "results.json").read_text())
    assert results["skills"] == skills and results["settings_digest"] == quick_family.digest
    assert results["build_seconds"] > 0
    assert [m["name"] for m in results["models"]] == names
    best = results["models"][1 + len(skills)]
    assert best["kind"] == "merge" and abs(best["normalised"] - rows[best["name"]][-1]) < 0.006
    assert f"best merge: {best['name']}" in out.stdout and best["recipe"] in out.stdout
    recipe = yaml.safe_load(Path(best["recipe"]).read_text())
    assert {m["model"] for m in recipe["models"]} == {str(p) for p in quick_family.experts.values()}

    html = report.read_text()
    assert html.count("data:image/png;base64,") == 2  # heatmap and accuracy vs lambda
    assert "ties λ=1.0 d=0.5" in html
