"""The demo's merge grid and its table/report, without training a family."""

from __future__ import annotations

from pathlib import Path

from mergesmith.demo.grid import DemoResult, merge_grid, write_report
from mergesmith.methods import method_names
from mergesmith.recipe import load_recipe


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
