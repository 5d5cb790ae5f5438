"""Crash safety: SIGKILL mid-merge leaves no target; --resume finishes it byte for byte;
a full disk fails cleanly."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

LAYERS = 48


@pytest.fixture(scope="module")
def big_pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two models of 48 layers x 4 tensors of 256x512 float32 (~100 MB each): slow enough to kill."""
    root = tmp_path_factory.mktemp("crash")
    for seed, name in enumerate(("a", "b")):
        gen = torch.Generator().manual_seed(seed)
        state = {"model.embed_tokens.weight": torch.randn(64, 256, generator=gen), "model.norm.weight": torch.ones(256)}
        for i in range(LAYERS):
            for part in ("q_proj", "k_proj", "v_proj", "o_proj"):
                state[f"model.layers.{i}.self_attn.{part}.weight"] = torch.randn(256, 512, generator=gen)
        (root / name).mkdir()
        save_file(state, root / name / "model.safetensors")
        (root / name / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": LAYERS}))
    (root / "recipe.yaml").write_text(
        f"models:\n  - model: {root / 'a'}\n    parameters: {{weight: 0.3}}\n"
        f"  - model: {root / 'b'}\n    parameters: {{weight: 0.7}}\nmerge_method: linear\n")
    return root


def _merge(root: Path, out: Path, *extra: str, **kwargs) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mergesmith", "merge", str(root / "recipe.yaml"), str(out),
           "--quiet", "--threads", "1", "--shard-size", "20M", *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.safetensors"))} | {
        "index": (out / "model.safetensors.index.json").read_bytes(), "config": (out / "config.json").read_bytes()}


def _kill_after(proc: subprocess.Popen, journal: Path, lines: int) -> int:
    """SIGKILL the merge once its journal holds `lines` finished tensors; returns lines seen."""
    seen = 0
    while proc.poll() is None:
        try:
            seen = journal.read_text().count("\n")
        except FileNotFoundError:
            seen = 0
        if seen >= lines:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    return seen


@pytest.fixture(scope="module")
def reference(big_pair: Path) -> dict[str, bytes]:
    proc = _merge(big_pair, big_pair / "reference")
    assert proc.wait() == 0, proc.stderr.read()
    return _shards(big_pair / "reference")


@pytest.mark.parametrize("run", range(3))
def test_sigkill_then_resume_is_byte_identical(big_pair: Path, reference: dict[str, bytes], tmp_path: Path, run: int) -> None:
    out = tmp_path / "out"
    journal = tmp_path / ".out.partial" / "mergesmith_journal.tsv"
    total = LAYERS * 4 + 2
    seen = _kill_after(_merge(big_pair, out), journal, random.Random(run).randint(5, total - 20))
    assert 0 < seen < total
    assert not out.exists()  # never a half-written target
    finished = _merge(big_pair, out, "--resume")
    assert finished.wait() == 0, finished.stderr.read()
    assert "resuming:" in finished.stderr.read()
    assert _shards(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_resume_recomputes_a_damaged_tensor(big_pair: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    out, partial = tmp_path / "out", tmp_path / ".out.partial"
    _kill_after(_merge(big_pair, out), partial / "mergesmith_journal.tsv", 40)
    shard = sorted(partial.glob("model-*.safetensors"))[0]
    with open(shard, "r+b") as f:  # damage bytes of a journalled tensor
        f.seek(shard.stat().st_size // 3)
        f.write(b"\xff" * 64)
    assert _merge(big_pair, out, "--resume").wait() == 0
    assert _shards(out) == reference


def test_resume_refuses_another_recipe(big_pair: Path, tmp_path: Path) -> None:
    out, partial = tmp_path / "out", tmp_path / ".out.partial"
    _kill_after(_merge(big_pair, out), partial / "mergesmith_journal.tsv", 10)
    other = big_pair / "other.yaml"
    other.write_text((big_pair / "recipe.yaml").read_text().replace("0.3", "0.4"))
    cmd = [sys.executable, "-m", "mergesmith", "merge", str(other), str(out), "--quiet", "--resume", "--shard-size", "20M"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2 and "cannot be resumed" in proc.stderr
    assert partial.exists()  # the interrupted work is kept for a correct --resume
    proc = subprocess.run(cmd[:-3] + ["--shard-size", "20M"], capture_output=True, text=True)
    assert proc.returncode == 0 and "discarded an interrupted merge" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_fails_cleanly(big_pair: Path, tmp_path: Path) -> None:
    def limit() -> None:  # a 10 MB file-size limit stands in for a small disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (10 * 2**20, 10 * 2**20))

    proc = _merge(big_pair, tmp_path / "out", preexec_fn=limit)
    assert proc.wait() == 1
    err = proc.stderr.read()
    assert "no space left" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
    assert os.path.getsize(big_pair / "a" / "model.safetensors") > 10 * 2**20  # inputs untouched
