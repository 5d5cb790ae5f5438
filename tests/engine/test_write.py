"""The one write path (engine/write.py): tensors and side files land together, or nothing does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mergesmith.engine.write import SideFiles, check_output_location, write_checkpoint
from mergesmith.errors import OptionsError
from mergesmith.io.writer import OutSpec

SPECS = [OutSpec("a.weight", "F32", (2, 3)), OutSpec("b.weight", "BF16", (4,))]


def _side(tmp_path: Path) -> SideFiles:
    source = tmp_path / "source"
    source.mkdir(exist_ok=True)
    (source / "tokenizer.json").write_text("{}")
    (source / "unrelated.txt").write_text("not a side file")
    return SideFiles({"model_type": "llama"}, "# card\n", "recipe.yaml", "merge_method: linear\n", "linear", 3,
                     copy_from=source, manifest_extra={"note": "x"})


def _produce(sink, on_done, skip) -> None:
    for spec, value in zip(SPECS, (torch.arange(6.0).reshape(2, 3), torch.ones(4, dtype=torch.bfloat16))):
        sink(spec.name, value)
        on_done(spec.nbytes)


def test_tensors_side_files_and_manifest(tmp_path: Path) -> None:
    out = tmp_path / "out"
    nbytes = write_checkpoint(out, SPECS, {"src": tmp_path / "source"}, _produce, _side(tmp_path),
                              shard_size="1G", overwrite=False)
    assert nbytes == 6 * 4 + 4 * 2
    tensors = load_file(next(out.glob("*.safetensors")))
    assert tensors["a.weight"].tolist() == [[0, 1, 2], [3, 4, 5]] and tensors["b.weight"].dtype == torch.bfloat16
    assert json.loads((out / "config.json").read_text()) == {"model_type": "llama"}
    assert (out / "tokenizer.json").read_text() == "{}" and not (out / "unrelated.txt").exists()
    assert (out / "README.md").read_text() == "# card\n"
    assert (out / "recipe.yaml").read_text() == "merge_method: linear\n"
    manifest = json.loads((out / "mergesmith_manifest.json").read_text())
    assert (manifest["method"], manifest["seed"], manifest["note"]) == ("linear", 3, "x")
    assert manifest["output"] == {"tensors": 2, "bytes": 32}


def test_a_failure_leaves_nothing(tmp_path: Path) -> None:
    def broken(sink, on_done, skip) -> None:
        sink("a.weight", torch.zeros(2, 3))
        raise RuntimeError("kernel bug")

    with pytest.raises(RuntimeError, match="kernel bug"):
        write_checkpoint(tmp_path / "out", SPECS, {}, broken, _side(tmp_path), shard_size="1G", overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_the_output_is_never_inside_or_around_an_input(tmp_path: Path) -> None:
    model = tmp_path / "models" / "a"
    model.mkdir(parents=True)
    with pytest.raises(OptionsError, match="is inside input model 'a'"):
        check_output_location(model / "merged", [("a", model)])
    with pytest.raises(OptionsError, match="contains input model 'a'"):
        check_output_location(tmp_path / "models", [("a", model)])
    check_output_location(tmp_path / "merged", [("a", model), ("in-memory", None)])
