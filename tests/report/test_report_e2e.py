"""`mergesmith report` on real tiny merges and on inspect output."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest
from report_models import LAMBDA, WEIGHTS, make_merged, parse_page

from mergesmith.cli.main import main
from mergesmith.report import inspect_models, write_report

LAYER_PLOTS = {"delta-norms", "cosine", "sign-conflicts", "kept-energy", "contributions", "distances"}


@pytest.fixture(scope="module")
def merged(llama: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("merged")
    return {m: make_merged(root, llama, m) for m in ("task_arithmetic", "ties")}


def test_report_of_a_task_arithmetic_merge(merged: dict[str, Path], capsys) -> None:
    out = merged["task_arithmetic"]
    assert main(["report", str(out)]) == 0
    assert f"wrote {out / 'report.html'}" in capsys.readouterr().out
    page = parse_page((out / "report.html").read_text())
    assert {"summary", "recipe", "manifest", "layers"} | LAYER_PLOTS <= set(page.sections)
    pngs = [src for src in page.images if src.startswith("data:image/png;base64,")]
    assert len(pngs) == len(LAYER_PLOTS)
    assert all(base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for src in pngs)
    data = json.loads(page.data.replace("<\\/", "</"))
    assert [x["layer"] for x in data["layers"]] == ["embed", 0, 1, 2, 3, "head"]
    for layer in data["layers"]:  # task arithmetic: merged - base = lambda (w_a d_a + w_b d_b), exactly
        assert layer["merged"]["coefficients"] == pytest.approx(
            {"a": LAMBDA * WEIGHTS[0], "b": LAMBDA * WEIGHTS[1]}, abs=1e-4)
        assert layer["models"]["a"]["nominal_weight"] == pytest.approx(LAMBDA * WEIGHTS[0])


def test_report_of_a_ties_merge_with_evaluation(merged: dict[str, Path], tmp_path: Path) -> None:
    out = merged["ties"]
    (out / "eval.json").write_text(json.dumps({"tasks": {"arith": 0.61, "code": 0.4, "bad": "n/a"}}))
    try:
        path = write_report(out, tmp_path / "elsewhere" / "r.html")
    finally:
        (out / "eval.json").unlink()
    text = path.read_text()
    page = parse_page(text)
    assert "evaluation" in page.sections and set(page.sections) >= LAYER_PLOTS
    assert "tasks without a numeric score were left out: bad" in text
    data = json.loads(page.data.replace("<\\/", "</"))
    assert data["method"] == "ties"
    coeffs = data["overall"]["merged"]["coefficients"]
    # TIES keeps half of each task vector and averages agreeing entries: the measured shares
    # lie between the trimmed nominal weight and the untrimmed one
    nominal = data["overall"]["models"]["a"]["nominal_weight"]
    assert nominal == pytest.approx(LAMBDA * WEIGHTS[0] / sum(WEIGHTS))
    assert 0 < coeffs["b"] < coeffs["a"] < LAMBDA


def test_report_of_an_inspect_output(llama: dict[str, Path], tmp_path: Path) -> None:
    data = inspect_models(llama["base"], [llama["a"], llama["b"]])
    (tmp_path / "inspect.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path)]) == 0
    page = parse_page((tmp_path / "report.html").read_text())
    assert {"summary", "delta-norms", "cosine", "sign-conflicts", "kept-energy", "layers"} <= set(page.sections)
    assert "contributions" not in page.sections and "recipe" not in page.sections
    assert main(["report", str(tmp_path / "inspect.json"), "--out", str(tmp_path / "b.html")]) == 0
    assert (tmp_path / "b.html").stat().st_size > 10_000


def test_report_errors(merged: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "has neither mergesmith_manifest.json nor inspect.json" in capsys.readouterr().err
    moved = tmp_path / "copy"
    shutil.copytree(merged["task_arithmetic"], moved)
    manifest = json.loads((moved / "mergesmith_manifest.json").read_text())
    manifest["inputs"][1]["path"] = str(tmp_path / "gone")
    (moved / "mergesmith_manifest.json").write_text(json.dumps(manifest))
    assert main(["report", str(moved)]) == 1
    err = capsys.readouterr().err
    assert "mergesmith_manifest.json: input model" in err and "gone" in err and "fix:" in err
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad.json")]) == 1
    assert "not a mergesmith inspect document" in capsys.readouterr().err
