"""`mergesmith demo --quick` end to end on the (already built) quick family."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def test_demo_prints_the_table_and_writes_the_report(quick_family, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    out = subprocess.run(
        [sys.executable, "-m", "mergesmith", "demo", "--quick", "--workdir", str(quick_family.root),
         "--limit", "20", "--report", str(report)],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "Loading weights" not in out.stdout + out.stderr  # transformers' bars are off
    rows = {m.group(1).strip(): [float(x) for x in m.group(2).split(" | ")]
            for m in re.finditer(r"^\| ([^|]+) \| ((?:[0-9.]+ \| )*[0-9.]+) \|$", out.stdout, re.M)}
    assert {"base", "linear", "task_arithmetic λ=1.0", "ties λ=1.0 d=0.5"} <= set(rows)
    skills = list(quick_family.experts)
    for i, skill in enumerate(skills):
        assert rows[f"expert:{skill}"][i] >= 0.25  # each expert is best at its own skill
        assert rows[f"expert:{skill}"][i] == max(rows[f"expert:{s}"][i] for s in skills)
    assert max(rows["base"][: len(skills)]) <= 0.1
    html = report.read_text()
    assert html.count("data:image/png;base64,") == 2  # heatmap and accuracy vs lambda
    assert "ties λ=1.0 d=0.5" in html
