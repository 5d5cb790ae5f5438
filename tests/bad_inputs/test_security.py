"""Hostile model folders and state files: no code from a folder ever runs, no file outside a
model folder is copied out of it, a FIFO never hangs a command, a typo never reaches the hub,
a planted search state is never unpickled."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from factory import make_family

MARKER_CODE = """import pathlib
pathlib.Path({marker!r}).write_text("the model folder's code ran")
from transformers import LlamaConfig


class EvilConfig(LlamaConfig):
    model_type = "evilmodel"
"""


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("security")
    models = make_family(root, "llama", layers=1)
    models["root"] = root
    return models


def _evil_copy(src: Path, dest: Path, marker: Path) -> Path:
    """A copy of a real model whose config.json names its own code through auto_map (an
    unknown model_type, so transformers has no local class to fall back on)."""
    shutil.copytree(src, dest)
    config = json.loads((dest / "config.json").read_text())
    config["model_type"] = "evilmodel"
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig",
                          "AutoModelForCausalLM": "configuration_evil.EvilConfig"}
    (dest / "config.json").write_text(json.dumps(config))
    (dest / "configuration_evil.py").write_text(MARKER_CODE.format(marker=str(marker)))
    return dest


def _run(args: list[str], cwd: Path, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_MODULES_CACHE": str(cwd / "hf_modules")}
    return subprocess.run([sys.executable, "-m", "mergesmith", *args], cwd=cwd, input=stdin, text=True,
                          capture_output=True, timeout=timeout, env=env)


def test_no_code_from_a_model_folder_runs_even_when_the_user_says_yes(family: dict[str, Path], tmp_path: Path) -> None:
    """fisher runs each model in transformers; with trust_remote_code unset, transformers asks
    "Do you wish to run the custom code? [y/N]" and a `y` on stdin runs the folder's code."""
    marker = tmp_path / "MARKER"
    _evil_copy(family["a"], tmp_path / "a", marker)
    (tmp_path / "calib.txt").write_text("w1 w2 w3 w4\nw5 w6 w7\n")
    recipe = {"merge_method": "fisher", "models": [
        {"model": "./a", "parameters": {"calibration": "calib.txt"}},
        {"model": str(family["b"]), "parameters": {"calibration": "calib.txt"}}]}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    # --allow-crimes: the folder says it is another architecture, which is what makes
    # transformers offer to run its code; the check of architectures must not hide that path.
    proc = _run(["merge", "r.yaml", "out", "--quiet", "--stats-dir", "stats", "--allow-crimes"], tmp_path,
                stdin="y\ny\ny\n")
    assert not marker.exists(), proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "./a" in proc.stderr or str(tmp_path / "a") in proc.stderr
    assert "never runs code from a model folder" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_eval_of_a_folder_with_its_own_code_runs_none_of_it(family: dict[str, Path], tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    _evil_copy(family["a"], tmp_path / "a", marker)
    (tmp_path / "t.txt").write_text("w1 w2 w3")
    proc = _run(["eval", "a", "--perplexity", "t.txt"], tmp_path, stdin="y\ny\n")
    assert not marker.exists() and proc.returncode == 1, proc.stderr
    assert "trust_remote_code=False" in proc.stderr


def _linear(a: Path, b: Path) -> str:
    return (f"models:\n  - model: {a}\n    parameters: {{weight: 1}}\n  - model: {b}\n"
            "    parameters: {weight: 1}\nmerge_method: linear\n")


def test_side_file_linking_out_of_the_folder_is_never_copied(family: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "environ"
    secret.write_text("HF_TOKEN=hf_secret_value\n")
    a = tmp_path / "a"
    shutil.copytree(family["a"], a)
    (a / "tokenizer_config.json").unlink()
    (a / "tokenizer_config.json").symlink_to(secret)
    (tmp_path / "r.yaml").write_text(_linear(a, family["b"]))
    proc = _run(["merge", "r.yaml", "out", "--quiet"], tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "tokenizer_config.json" in proc.stderr and "outside the model folder" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not any("hf_secret_value" in p.read_text(errors="replace") for p in tmp_path.rglob("*")
                   if p.is_file() and not p.is_symlink() and p != secret)  # the planted link itself aside


def test_moe_side_files_refuse_links_out_of_the_base(family: dict[str, Path], tmp_path: Path) -> None:
    secret = tmp_path / "environ"
    secret.write_text("HF_TOKEN=hf_secret_value\n")
    base = tmp_path / "base"
    shutil.copytree(family["base"], base)
    (base / "generation_config.json").unlink(missing_ok=True)
    (base / "generation_config.json").symlink_to(secret)
    (tmp_path / "m.yaml").write_text(f"base_model: {base}\ngate_mode: random\nexperts:\n"
                                     f"  - source_model: {family['a']}\n  - source_model: {family['b']}\n")
    proc = _run(["moe", "m.yaml", "out", "--quiet"], tmp_path)
    assert proc.returncode == 1 and "outside the model folder" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_weights_file_that_is_a_fifo_fails_at_once(family: dict[str, Path], tmp_path: Path) -> None:
    a = tmp_path / "a"
    shutil.copytree(family["a"], a)
    (a / "model.safetensors").unlink()
    os.mkfifo(a / "model.safetensors")
    (tmp_path / "r.yaml").write_text(_linear(a, family["b"]))
    proc = _run(["merge", "r.yaml", "out", "--quiet"], tmp_path, timeout=60)
    assert proc.returncode == 1 and "FIFO" in proc.stderr and "model.safetensors" in proc.stderr, proc.stderr
    assert not (tmp_path / "out").exists()


def test_a_typo_in_a_relative_path_never_goes_to_the_hub(family: dict[str, Path], tmp_path: Path) -> None:
    shutil.copytree(family["base"], tmp_path / "models" / "llama-base")
    (tmp_path / "r.yaml").write_text(_linear(Path("models/llama-bsae"), family["b"]))
    proc = _run(["merge", "r.yaml", "out", "--quiet"], tmp_path)
    assert proc.returncode == 1
    assert "no such model folder" in proc.stderr and "did you mean 'models/llama-base'" in proc.stderr
    assert "hub" not in proc.stderr


def test_evolve_never_unpickles_a_planted_state(family: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("cma")
    marker = tmp_path / "MARKER"

    class Planted:
        def __reduce__(self):
            return (Path.write_text, (marker, "unpickled"))

    out = tmp_path / "out"
    out.mkdir()
    (out / ".mergesmith_evolve").write_text("{}")
    (out / "state.pkl").write_bytes(pickle.dumps(Planted()))
    (tmp_path / "t.txt").write_text("w1 w2 w3 " * 5)
    config = {"base_model": str(family["base"]), "models": [str(family["a"])], "output": "out",
              "search": [{"type": "perplexity", "path": "t.txt"}], "max_evals": 2}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    proc = _run(["evolve", "c.yaml", "--resume"], tmp_path)
    assert not marker.exists()
    assert proc.returncode == 2 and "state.pkl" in proc.stderr and "not loaded" in proc.stderr, proc.stderr
    import mergesmith.search

    sources = list(Path(mergesmith.search.__file__).parent.glob("*.py"))
    assert any(p.name == "evolve.py" for p in sources)
    for source in sources:  # no search state is ever read with pickle
        text = source.read_text()
        assert "import pickle" not in text and "pickle.load" not in text, source


BOMB = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else '"lol"'] * 9) + "]\n" for i in range(9))


@pytest.mark.parametrize("command", ["merge", "soup", "moe"])
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path, command: str) -> None:
    """Nine levels of nine aliases: 9**9 values once expanded. Refused before anything walks it."""
    (tmp_path / "bomb.yaml").write_text(BOMB + "merge_method: linear\nmodels: *l8\n")
    args = {"merge": ["merge", "bomb.yaml", "out"], "soup": ["soup", "bomb.yaml"], "moe": ["moe", "bomb.yaml", "out"]}
    proc = _run(args[command], tmp_path, timeout=150)  # unbounded before; seconds even on a loaded machine
    assert proc.returncode == 2, proc.stderr
    assert "aliases" in proc.stderr and "bomb.yaml" in proc.stderr and "fix:" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]
