"""`mergesmith inspect` end to end on hand-made checkpoints with known task-vector relations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from handmade_models import make_handmade, write_model

from mergesmith.cli.main import main


@pytest.fixture(scope="module")
def handmade(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_handmade(tmp_path_factory.mktemp("handmade"))


def inspect(*args: object) -> int:
    return main(["inspect", *map(str, args)])


def test_inspect_reads_agreement_opposition_and_outliers(handmade: dict[str, Path], tmp_path: Path, capsys) -> None:
    assert inspect("--base", handmade["base"], handmade["a"], handmade["b"], "--json", tmp_path / "out") == 0
    out = capsys.readouterr().out
    assert "layers 0-1: 0% sign conflicts between a and b, cosine 1.00: they agree: linear or task_arithmetic" in out
    assert "layers 2-3: 100% sign conflicts between a and b, cosine -1.00: the task vectors pull in opposite" in out
    assert "a: 1 tensor(s) with a relative delta >= 4x its median (largest: model.layers.3.mlp.up_proj.weight" in out
    data = json.loads((tmp_path / "out" / "inspect.json").read_text())
    assert data["format"] == "mergesmith-inspect/1"
    assert [x["layer"] for x in data["layers"]] == ["embed", 0, 1, 2, 3, "head"]
    layer0, layer2 = data["layers"][1]["pairs"][0], data["layers"][3]["pairs"][0]
    assert layer0["cosine"] == pytest.approx(1.0) and layer0["sign_conflicts"] == 0.0
    assert layer2["cosine"] == pytest.approx(-1.0) and layer2["sign_conflicts"] == 1.0
    assert set(data["layers"][0]["models"]["a"]["kept_energy"]) == {"0.2", "0.5"}
    assert len(data["tensors"]) == 1 + 2 * 4 + 2 and data["skipped"] == []


def test_relative_norm_matches_the_tensors(handmade: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    assert inspect("--base", handmade["base"], handmade["a"], "--json", tmp_path / "one.json", "--quiet") == 0
    data = json.loads((tmp_path / "one.json").read_text())
    base, a = (load_file(handmade[k] / "model.safetensors") for k in ("base", "a"))
    name = "model.layers.1.mlp.up_proj.weight"
    expected = float((a[name] - base[name]).norm() / base[name].norm())
    record = next(t for t in data["tensors"] if t["name"] == name)
    assert record["models"]["a"]["relative"] == pytest.approx(expected, rel=1e-5)
    assert "pairs" in record and record["pairs"] == []


def test_labels_and_densities(handmade: dict[str, Path], tmp_path: Path, capsys) -> None:
    code = inspect("--base", handmade["base"], handmade["a"], handmade["b"], "--labels", "math,code",
                   "--density", "0.1,0.3", "--json", tmp_path / "x.json")
    assert code == 0
    assert "between math and code" in capsys.readouterr().out
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["densities"] == [0.1, 0.3]
    assert set(data["overall"]["models"]["math"]["kept_energy"]) == {"0.1", "0.3"}


def test_mismatched_shapes_are_skipped_with_the_reason(handmade: dict[str, Path], tmp_path: Path, capsys) -> None:
    from safetensors.torch import load_file

    tensors = load_file(handmade["a"] / "model.safetensors")
    tensors["model.embed_tokens.weight"] = torch.zeros(20, 8)  # a resized vocabulary
    tensors["extra.weight"] = torch.zeros(2)
    c = write_model(tmp_path / "c", tensors)
    assert inspect("--base", handmade["base"], c, "--json", tmp_path / "c.json") == 0
    skipped = json.loads((tmp_path / "c.json").read_text())["skipped"]
    assert {"tensor": "model.embed_tokens.weight", "model": "c",
            "reason": "shape [20, 8] differs from the base's [16, 8]"} in skipped
    assert {"tensor": "extra.weight", "model": "c", "reason": "not in the base"} in skipped


@pytest.mark.parametrize("args, code, words", [
    (["MISSING"], 1, ["no such model folder", "fix:"]),
    (["A", "--density", "0,2"], 2, ["each density must lie in (0, 1]"]),
    (["A", "--density", "half"], 2, ["not a comma-separated list"]),
    (["A", "B", "--labels", "x"], 2, ["need 2 distinct labels"]),
])
def test_errors_name_the_problem_and_exit_codes(handmade: dict[str, Path], tmp_path: Path, capsys,
                                                args: list[str], code: int, words: list[str]) -> None:
    paths = {"A": str(handmade["a"]), "B": str(handmade["b"]), "MISSING": str(tmp_path / "nope")}
    assert inspect("--base", handmade["base"], *[paths.get(x, x) for x in args]) == code
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_cli_modules_import_neither_torch_nor_matplotlib() -> None:
    code = ("import argparse, sys\n"
            "from mergesmith.cli import cmd_inspect, cmd_report\nimport mergesmith.report\n"
            "for m in (cmd_inspect, cmd_report):\n    m.add_arguments(argparse.ArgumentParser())\n"
            "bad = [m for m in ('torch', 'matplotlib') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
