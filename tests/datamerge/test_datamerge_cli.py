"""`mergesmith merge` runs fisher and regmean on the demo's quick family with the calibration
files the demo writes: statistics computed first and cached, then the normal engine."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from factory import load_tensors

from mergesmith.api import merge
from mergesmith.cli.main import main as cli
from mergesmith.methods.data_aware import load_stat

SKILLS = ("add", "count")
NAMES = ("model.layers.0.mlp.down_proj.weight", "model.layers.1.self_attn.k_proj.weight")


def _digest(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha256(b"".join(p.name.encode() + p.read_bytes() for p in files)).hexdigest()


def _recipe(family, tmp_path: Path, method: str, calibration: dict[str, str] | None = None) -> Path:
    calibration = calibration or {s: str(family.calibration[s]) for s in SKILLS}
    recipe = {"merge_method": method, "dtype": "float32", "models": [
        {"model": str(family.experts[s]), "parameters": {"calibration": calibration[s]}} for s in SKILLS]}
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _mergesmith(*args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "mergesmith", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def merged(quick_family, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Both methods merged by the CLI into a fresh statistics cache; digests of the inputs before."""
    tmp = tmp_path_factory.mktemp("datamerge-cli")
    inputs = [*(quick_family.experts[s] for s in SKILLS), *(quick_family.calibration[s] for s in SKILLS)]
    before = {p: _digest(p) for p in inputs}
    outs = {}
    for method in ("fisher", "regmean"):
        outs[method] = tmp / method
        done = _mergesmith("merge", _recipe(quick_family, tmp, method), outs[method], "--stats-dir", tmp / "stats",
                           "--quiet")
        assert done.returncode == 0, done.stderr
    return {"tmp": tmp, "stats": tmp / "stats", "outs": outs, "inputs": before}


def _stat_files(stats: Path, kind: str) -> list[Path]:
    return sorted(stats.glob(f"{kind}-*.safetensors"))


def _model_stats(stats: Path, kind: str, family) -> list[str]:
    """Each skill's stats file, told apart by the model path in its metadata."""
    from safetensors import safe_open

    by_model = {}
    for f in _stat_files(stats, kind):
        with safe_open(str(f), framework="pt") as handle:
            by_model[handle.metadata()["model"]] = str(f)
    return [by_model[str(family.experts[s].resolve())] for s in SKILLS]


def test_fisher_merge_is_the_fisher_weighted_average(merged: dict, quick_family) -> None:
    from transformers import AutoModelForCausalLM

    out = load_tensors(merged["outs"]["fisher"])
    experts = [load_tensors(quick_family.experts[s]) for s in SKILLS]
    files = _model_stats(merged["stats"], "fisher", quick_family)
    for name in NAMES:
        xs = [e[name] for e in experts]
        fishers = [load_stat(f, name, x) for f, x in zip(files, xs)]
        assert not torch.allclose(fishers[0], fishers[1])  # the skills move different parameters
        expected = sum((f + 1e-8) * x for f, x in zip(fishers, xs)) / sum(f + 1e-8 for f in fishers)
        torch.testing.assert_close(out[name], expected, rtol=1e-5, atol=1e-6)
        assert (out[name] - (xs[0] + xs[1]) / 2).abs().max() > 1e-3  # not the linear merge
    model = AutoModelForCausalLM.from_pretrained(merged["outs"]["fisher"])
    assert torch.isfinite(model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits).all()


def test_regmean_merge_solves_the_gram_weighted_least_squares(merged: dict, quick_family) -> None:
    from transformers import AutoModelForCausalLM

    out = load_tensors(merged["outs"]["regmean"])
    experts = [load_tensors(quick_family.experts[s]) for s in SKILLS]
    files = _model_stats(merged["stats"], "gram", quick_family)
    for name in NAMES:  # k_proj reads the Gram matrix of q_proj (same input): an alias
        xs = [e[name].double() for e in experts]
        grams = [load_stat(f, name, x) for f, x in zip(files, xs)]
        shrunk = [0.9 * g + 0.1 * torch.diag(torch.diagonal(g)) for g in grams]
        expected = torch.linalg.solve(sum(shrunk), sum(g @ x.T for g, x in zip(shrunk, xs))).T
        torch.testing.assert_close(out[name].double(), expected, rtol=1e-4, atol=1e-5)
        assert (out[name] - (experts[0][name] + experts[1][name]) / 2).abs().max() > 1e-3
    norm = "model.norm.weight"  # no Gram matrix: the linear fallback
    torch.testing.assert_close(out[norm], (experts[0][norm] + experts[1][norm]) / 2)
    model = AutoModelForCausalLM.from_pretrained(merged["outs"]["regmean"])
    assert torch.isfinite(model(input_ids=torch.tensor([[1, 5, 6, 7]])).logits).all()


def test_statistics_are_reused_and_inputs_never_written(merged: dict, quick_family) -> None:
    files = _stat_files(merged["stats"], "fisher") + _stat_files(merged["stats"], "gram")
    assert len(files) == 4  # one per model and kind, nothing written into the model folders
    stamps = {f: f.stat().st_mtime_ns for f in files}
    again = merged["tmp"] / "again"
    merge(_recipe(quick_family, merged["tmp"], "fisher"), again, stats_dir=merged["stats"])
    assert {f: f.stat().st_mtime_ns for f in merged["stats"].glob("*")} == stamps
    torch.testing.assert_close(load_tensors(again), load_tensors(merged["outs"]["fisher"]), rtol=0, atol=0)
    assert {p: _digest(p) for p in merged["inputs"]} == merged["inputs"]
    written = yaml.safe_load((merged["outs"]["fisher"] / "mergesmith_recipe.yaml").read_text())
    assert all("stats" not in m["parameters"] for m in written["models"])  # the user's recipe, no cache paths


@pytest.mark.parametrize("command", ["plan", "validate"])
def test_plan_and_validate_name_a_missing_calibration_file(quick_family, tmp_path: Path, command: str,
                                                           capsys: pytest.CaptureFixture) -> None:
    recipe = _recipe(quick_family, tmp_path, "regmean",
                     {"add": str(quick_family.calibration["add"]), "count": "data/missing.txt"})
    assert cli([command, str(recipe)]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "data" / "missing.txt") in err and str(quick_family.experts["count"]) in err


@pytest.mark.parametrize("method", ["fisher", "regmean"])
def test_demo_examples_plan_on_the_family(quick_family, tmp_path: Path, method: str,
                                          capsys: pytest.CaptureFixture) -> None:
    """examples/datamerge/*-demo.yaml name the demo's cached full family; here its quick twin."""
    example = Path(__file__).parents[2] / "examples" / "datamerge" / f"{method}-demo.yaml"
    text = example.read_text().replace("~/.cache/mergesmith/demo/full", str(quick_family.base.parent))
    recipe = tmp_path / example.name
    recipe.write_text(text)
    assert cli(["validate", "--models", str(recipe)]) == 0
    assert cli(["plan", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert f"method: {method}" in out and all(str(quick_family.experts[s]) in out for s in quick_family.skills)
