"""Issue 9's walk-through on the demo family: merge the experts with TIES, score the merge and
its inputs per skill (`mergesmith eval --save`), then `mergesmith report` shows both the
per-skill results and the layer plots."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from report_models import parse_page

LAYER_PLOTS = {"delta-norms", "cosine", "sign-conflicts", "kept-energy", "contributions", "distances"}


def _cli(*args: object) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "mergesmith", *map(str, args)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out


def test_ties_merge_of_the_demo_experts_reports_skills_and_layers(quick_family, tmp_path: Path) -> None:
    # Copies: `eval --save` writes eval.json into each model directory it scores.
    family = {name: shutil.copytree(src, tmp_path / name) for name, src in
              [("base", quick_family.base), *quick_family.experts.items()]}
    skills = list(quick_family.experts)
    recipe = tmp_path / "ties.yaml"
    recipe.write_text(
        "merge_method: ties\n"
        f"base_model: {family['base']}\n"
        "parameters: {lambda: 1.0}\n"
        "models:\n" + "".join(f"  - model: {family[s]}\n    parameters: {{weight: 1.0, density: 0.5}}\n"
                              for s in skills)
    )
    out = tmp_path / "merged"
    _cli("merge", recipe, out)
    tasks = [a for s in skills for a in ("--task", f"{s}={quick_family.test_sets[s]}")]
    _cli("eval", out, *[family[s] for s in skills], *tasks, "--limit", "25", "--save")
    _cli("report", out)

    text = (out / "report.html").read_text()
    page = parse_page(text)
    assert "evaluation" in page.sections and set(page.sections) >= LAYER_PLOTS
    # The evaluation table: one row per scored model (merged + every expert), a column per skill.
    section = text[text.index('id="evaluation"'):]
    section = section[: section.index("</table>")]
    for skill in skills:
        assert f"exact_match/{skill}" in section
    rows = re.findall(r"<tr>(.*?)</tr>", section, re.S)
    assert len(rows) == 1 + 1 + len(skills)  # header, merged, experts (the base was not scored)
    data = json.loads(page.data.replace("<\\/", "</"))
    assert data["method"] == "ties"
    assert set(data["overall"]["merged"]["coefficients"]) == set(skills)
    # The experts' own scores are on the page: each is best on its own skill.
    scores = {s: json.loads((family[s] / "eval.json").read_text())["tasks"] for s in skills}
    for skill in skills:
        own = scores[skill][f"exact_match/{skill}"]
        assert own == max(scores[s][f"exact_match/{skill}"] for s in skills)
