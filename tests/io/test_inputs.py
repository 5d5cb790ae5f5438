"""Model references and checkpoint formats: hub ids offline, pickle files, sharded inputs."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from factory import load_tensors, write_recipe

from mergesmith.api import merge
from mergesmith.cli.main import main


def test_hub_id_offline_says_so(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    recipe = write_recipe(tmp_path, "models:\n  - model: someone/some-model\n    parameters: {weight: 1}\nmerge_method: linear\n")
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "someone/some-model" in err and "hub" in err and "local path" in err
    assert not (tmp_path / "out").exists()


def test_missing_local_path_is_never_a_download(tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, "models:\n  - model: ./models/a\n    parameters: {weight: 1}\nmerge_method: linear\n")
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no such model folder" in err and "hub" not in err


def _as_pickle(src: Path, dest: Path) -> Path:
    dest.mkdir()
    shutil.copy(src / "config.json", dest / "config.json")
    torch.save(load_tensors(src), dest / "pytorch_model.bin")
    return dest


def test_pickle_needs_allow_pickle(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    pickled = _as_pickle(llama["a"], tmp_path / "pickled")
    text = f"models:\n  - model: {pickled}\n    parameters: {{weight: 1}}\n  - model: {llama['b']}\n    parameters: {{weight: 1}}\nmerge_method: linear\n"
    recipe = write_recipe(tmp_path, text)
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pytorch_model.bin" in err and "--allow-pickle" in err and "safetensors" in err
    assert main(["merge", str(recipe), str(tmp_path / "out"), "--quiet", "--allow-pickle"]) == 0
    reference = write_recipe(tmp_path, text.replace(str(pickled), str(llama["a"])), "reference.yaml")
    merge(reference, tmp_path / "ref")
    out, ref = load_tensors(tmp_path / "out"), load_tensors(tmp_path / "ref")
    assert all(torch.equal(out[n], ref[n]) for n in ref)


def test_sharded_inputs_are_read_through_their_index(llama: dict[str, Path], tmp_path: Path) -> None:
    first = write_recipe(tmp_path, f"models:\n  - model: {llama['a']}\n    parameters: {{weight: 1}}\nmerge_method: linear\n", "copy.yaml")
    merge(first, tmp_path / "sharded", shard_size="30K")
    index = json.loads((tmp_path / "sharded" / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    recipe = write_recipe(tmp_path, f"models:\n  - model: {tmp_path / 'sharded'}\n    parameters: {{weight: 1}}\n"
                                    f"  - model: {llama['b']}\n    parameters: {{weight: 3}}\nmerge_method: linear\n")
    merge(recipe, tmp_path / "out")
    out, a, b = (load_tensors(p) for p in (tmp_path / "out", llama["a"], llama["b"]))
    for name in a:
        torch.testing.assert_close(out[name], (a[name] + 3 * b[name]) / 4)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())
    assert os.access(llama["a"] / "model.safetensors", os.R_OK)
