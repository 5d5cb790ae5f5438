"""The demo's merge grid and its table/report, without training a family."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from mergesmith.demo.grid import DemoResult, merge_grid, recipe_filename, write_report
from mergesmith.methods import method_names
from mergesmith.recipe import load_recipe

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Family:
    def __init__(self, root: Path) -> None:
        self.base = root / "base"
        self.experts = {s: root / "experts" / s for s in ("add", "reverse")}


def test_every_grid_recipe_is_a_valid_recipe(tmp_path: Path) -> None:
    grid = merge_grid(_Family(tmp_path), quick=False)
    methods = {load_recipe(text).merge_method for text, _ in grid.values()}
    # Every registered method that merges several models without calibration data.
    elsewhere = {"slerp", "nuslerp", "nearswap", "arcee_fusion", "passthrough", "fisher", "regmean",
                 "mergemonster"}
    assert methods == set(method_names()) - elsewhere
    assert "ramplus_tl" in methods and "karcher" in methods
    ties = load_recipe(grid["ties λ=1.0 d=0.3"][0])
    assert ties.parameters == {"lambda": 1.0} and ties.models[0].parameters == {"weight": 1.0, "density": 0.3}
    assert len(merge_grid(_Family(tmp_path), quick=True)) < len(grid)


def test_table_normalises_by_each_skills_expert(tmp_path: Path) -> None:
    result = DemoResult(skills=["add", "reverse"], kinds={}, rows={
        "expert:add": {"add": 0.9, "reverse": 0.0}, "expert:reverse": {"add": 0.0, "reverse": 0.8},
        "linear": {"add": 0.45, "reverse": 0.4}}, params={"linear": {}})
    assert abs(result.normalised("linear") - 0.5) < 1e-9
    assert "| linear | 0.45 | 0.40 | 0.43 | 0.50 |" in result.table()
    html = write_report(result, tmp_path / "report.html").read_text()
    assert "<table>" in html and html.count("data:image/png;base64,") >= 1


def test_merges_are_sorted_by_normalised_accuracy_and_written_as_json(tmp_path: Path) -> None:
    rows = {"base": {"add": 0.3, "reverse": 0.2}, "expert:add": {"add": 1.0, "reverse": 0.2},
            "expert:reverse": {"add": 0.3, "reverse": 0.8},
            "linear": {"add": 0.5, "reverse": 0.4}, "ties": {"add": 0.9, "reverse": 0.6}}
    kinds = {"base": "base", "expert:add": "expert", "expert:reverse": "expert",
             "linear": "merge", "ties": "merge"}
    result = DemoResult(skills=["add", "reverse"], rows=rows, kinds=kinds,
                        recipes={"linear": tmp_path / "linear.yaml", "ties": tmp_path / "ties.yaml"})
    assert result.ordered() == ["base", "expert:add", "expert:reverse", "ties", "linear"]
    assert result.best_merge() == "ties"
    table = result.table().splitlines()
    assert [line.split(" | ")[0] for line in table[2:]] == [
        "| base", "| expert:add", "| expert:reverse", "| ties", "| linear"]
    data = result.to_json("abc", 12.5)
    assert data["skills"] == ["add", "reverse"] and data["settings_digest"] == "abc"
    assert data["build_seconds"] == 12.5
    ties = next(m for m in data["models"] if m["name"] == "ties")
    # (0.9 / 1.0 + 0.6 / 0.8) / 2 = 0.825; mean (0.9 + 0.6) / 2 = 0.75
    assert ties == {"name": "ties", "kind": "merge", "accuracy": {"add": 0.9, "reverse": 0.6},
                    "mean": 0.75, "normalised": 0.825, "recipe": str(tmp_path / "ties.yaml")}
    assert next(m for m in data["models"] if m["name"] == "base")["recipe"] is None


def test_recipe_file_names_are_plain() -> None:
    assert recipe_filename("ties λ=1.0 d=0.3") == "ties-lambda1.0-d0.3.yaml"
    assert recipe_filename("linear") == "linear.yaml"


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
def test_report_renders_in_a_real_browser(tmp_path: Path) -> None:
    result = DemoResult(
        skills=["add", "reverse"], kinds={"expert:add": "expert", "expert:reverse": "expert",
                                          "ties λ=1.0 d=0.3": "merge", "ties λ=0.5 d=0.3": "merge"},
        rows={"expert:add": {"add": 0.9, "reverse": 0.1}, "expert:reverse": {"add": 0.2, "reverse": 0.8},
              "ties λ=1.0 d=0.3": {"add": 0.7, "reverse": 0.6}, "ties λ=0.5 d=0.3": {"add": 0.5, "reverse": 0.5}},
        params={"ties λ=1.0 d=0.3": {"lambda": 1.0, "density": 0.3},
                "ties λ=0.5 d=0.3": {"lambda": 0.5, "density": 0.3}})
    page = write_report(result, tmp_path / "report.html")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync"]
    done = subprocess.run([CHROMIUM, *flags, f"--user-data-dir={tmp_path / 'profile'}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    assert dom.count("<tr>") == 5 and "ties λ=1.0 d=0.3" in dom  # header + four models
    assert dom.count('src="data:image/png;base64,') == 2  # heatmap and accuracy vs lambda
    # Rendered, the best merge comes before the weaker one.
    assert dom.index("ties λ=1.0 d=0.3") < dom.index("ties λ=0.5 d=0.3")
