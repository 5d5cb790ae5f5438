"""The issue's checks on the demo family, through the example configs a user runs.

The examples point at ~/.cache/mergesmith/demo/full; here that prefix becomes the quick
family's folder and the example limits shrink so each test stays well under a minute.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mergesmith.cli.main import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "search"
FULL = "~/.cache/mergesmith/demo/full"


def _example(name: str, family, tmp_path: Path, skills: list[str] | None = None,
             limit: int = 8, **override) -> Path:
    """The example config on the quick family; `skills` keeps only those experts and tasks."""
    data = yaml.safe_load((EXAMPLES / name).read_text().replace(FULL, str(family.root)))
    if skills is not None:
        data["models"] = [m for m in data["models"] if Path(m).name in skills]
        for spec in [*data["search"], *data["final"]]:
            spec["tasks"] = {k: v for k, v in spec["tasks"].items() if k in skills}
    for spec in [*data["search"], *data["final"]]:
        spec["limit"] = limit
    data.update(output=str(tmp_path / "out"), **override)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_greedy_soup_at_least_uniform_held_out(quick_family, tmp_path, capsys):
    cfg = _example("soup.yaml", quick_family, tmp_path, limit=6)
    assert main(["soup", str(cfg)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    log = [json.loads(line) for line in (tmp_path / "out" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log][:5] == ["uniform", "rank", "rank", "rank", "rank"]
    final = report["final"]
    # Held-out (test sets): the greedy soup is at least as good as the uniform one.
    assert final["soup"]["exact_match/mean"] >= final["uniform"]["exact_match/mean"]
    assert report["soup_search"] >= report["uniform_search"]
    assert "held-out soup" in capsys.readouterr().out


def test_evolve_beats_default_search_reports_held_out(quick_family, tmp_path, capsys):
    pytest.importorskip("cma", reason="evolve needs the cma package")
    cfg = _example("evolve.yaml", quick_family, tmp_path, skills=["reverse", "count"],
                   max_evals=13, population=6)
    assert main(["evolve", str(cfg)]) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["evals"] == 13
    # CMA-ES starts from the default recipe and keeps the best it measured.
    assert report["best_search"] >= report["default_search"]
    # Held-out scores of both recipes are reported next to the search scores, whatever they are.
    for which in ("default", "best"):
        assert set(report[f"{which}_final"]["final"]) == {
            "exact_match/reverse", "exact_match/count", "exact_match/mean"}
        assert f"{which} recipe, held-out data" in out and f"{which} recipe, search data" in out
    # best.yaml re-run with `mergesmith merge` scores what the search measured.
    best = tmp_path / "out" / "best.yaml"
    assert main(["merge", str(best), str(tmp_path / "merged")]) == 0
    from mergesmith.evaluate import ExactMatchEvaluator

    spec = yaml.safe_load(cfg.read_text())["search"][0]
    scores = ExactMatchEvaluator(spec["tasks"], limit=spec["limit"]).evaluate(
        str(tmp_path / "merged"))
    assert scores["exact_match/mean"] == pytest.approx(report["best_search"])


def test_dataflow_example_runs_on_demo_family(quick_family, tmp_path):
    pytest.importorskip("cma", reason="evolve needs the cma package")
    cfg = _example("evolve-dataflow.yaml", quick_family, tmp_path, limit=5, max_evals=7,
                   population=6)
    assert main(["evolve", str(cfg)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    best = yaml.safe_load((tmp_path / "out" / "best.yaml").read_text())
    assert best["merge_method"] == "passthrough" and report["evals"] == 7
    # The start point is a copy of base_model (the count expert): it keeps its skill.
    assert report["default_final"]["final"]["exact_match/count"] > 0.5
    assert report["best_search"] >= report["default_search"]
