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


# -- kills at exact points ---------------------------------------------------------------
# The driver runs the real CLI in a subprocess with one OS call wrapped: at that call the
# process SIGKILLs itself (or waits), so a test can stop a command at the precise moment
# that matters, with no hook in mergesmith's own code.
DRIVER = '''
import fcntl, os, signal, sys, time
point, args = sys.argv[1], sys.argv[2:]

def die(*_a, **_k):
    os.kill(os.getpid(), signal.SIGKILL)

real_rename, real_flock, real_fsync = os.rename, fcntl.flock, os.fsync
if point == "reserve":
    os.posix_fallocate = die
elif point == "rename":  # the rename that moves the finished work into place
    def rename(src, dst, *a, **k):
        if str(src).endswith(".partial") or ".tmp-" in os.path.basename(str(src)):
            die()
        return real_rename(src, dst, *a, **k)
    os.rename = rename
elif point.startswith("hold:"):  # finish writing, then wait for a file before committing
    go = point[5:]
    def fsync(fd):
        while not os.path.exists(go):
            time.sleep(0.01)
        return real_fsync(fd)
    os.fsync = fsync
elif point.startswith("oserror:"):  # an OS error on every call of one function (a failing disk)
    import errno
    name, code = point[8:].split("|")
    real = getattr(os, name)
    def failing(*a, **k):
        if name != "open" or a[1] & os.O_CREAT:  # open: only when creating (the output side)
            raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))
        return real(*a, **k)
    setattr(os, name, failing)
elif point.startswith("late-lock:"):  # reach the lock, then take it only after the holder is done
    reached, target = point[10:].split("|")
    state = {"first": True}
    def flock(fd, op):
        if state.pop("first", False):
            open(reached, "w").close()
            lock = os.path.join(os.path.dirname(target), "." + os.path.basename(target) + ".lock")
            while not (os.path.exists(target) and not os.path.exists(lock)):
                time.sleep(0.01)
        return real_flock(fd, op)
    fcntl.flock = flock
from mergesmith.cli.main import main
sys.exit(main(args))
'''


def _driven(tmp: Path, point: str, *args: str) -> subprocess.Popen:
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen([sys.executable, str(driver), point, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp)


def _merge_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["merge", str(root / "recipe.yaml"), str(out), "--quiet", "--threads", "1", "--shard-size", "20M", *extra]


@pytest.mark.parametrize("point", ["reserve", "rename"])
def test_killed_while_reserving_or_at_the_final_rename_resumes(big_pair: Path, reference: dict[str, bytes],
                                                               tmp_path: Path, point: str) -> None:
    out = tmp_path / "out"
    work = tmp_path / "w"
    work.mkdir()
    killed = _driven(work, point, *_merge_args(big_pair, out))
    assert killed.wait() == -signal.SIGKILL
    assert not out.exists() and (tmp_path / ".out.partial").is_dir()
    finished = _merge(big_pair, out, "--resume")
    assert finished.wait() == 0, finished.stderr.read()
    assert "None" not in finished.stderr.read()
    assert _shards(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "w"]


def _old_output(big_pair: Path, out: Path) -> dict[str, bytes]:
    """An earlier output of mergesmith at `out` (another recipe: other bytes)."""
    other = big_pair / "old.yaml"
    other.write_text((big_pair / "recipe.yaml").read_text().replace("0.3", "0.5"))
    proc = subprocess.run([sys.executable, "-m", "mergesmith", "merge", str(other), str(out), "--quiet",
                           "--shard-size", "20M"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return _shards(out)


def test_killed_between_the_two_renames_of_overwrite_restores_and_cleans(
        big_pair: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    out = tmp_path / "out"
    old = _old_output(big_pair, out)
    (tmp_path / "w").mkdir()
    killed = _driven(tmp_path / "w", "rename", *_merge_args(big_pair, out, "--overwrite"))
    assert killed.wait() == -signal.SIGKILL
    # The next command on this target, even one that then refuses, first puts the old output back.
    refused = _merge(big_pair, out)
    assert refused.wait() == 2 and "not empty" in refused.stderr.read()
    assert _shards(out) == old
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.old")]
    finished = _merge(big_pair, out, "--overwrite", "--resume")
    assert finished.wait() == 0, finished.stderr.read()
    assert _shards(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "w"]


def test_a_second_merge_never_replaces_the_first_ones_finished_output(big_pair: Path, tmp_path: Path) -> None:
    """B checks the target and reaches the lock while A holds it; A then finishes. B must see
    A's output (the check runs under the lock) and must not lock A's released, unlinked lock file."""
    out, go, reached = tmp_path / "out", tmp_path / "go", tmp_path / "reached"
    (tmp_path / "w").mkdir()
    first = _driven(tmp_path / "w", f"hold:{go}", *_merge_args(big_pair, out))
    while not (tmp_path / ".out.partial").is_dir():
        assert first.poll() is None, first.stderr.read()
        time.sleep(0.01)
    second = _driven(tmp_path / "w", f"late-lock:{reached}|{out}", *_merge_args(big_pair, out))
    while not reached.exists():
        assert second.poll() is None, second.stderr.read()
        time.sleep(0.01)
    go.write_text("go")
    assert first.wait() == 0, first.stderr.read()
    stamp = (out / "mergesmith_manifest.json").stat().st_mtime_ns
    assert second.wait() == 2, second.stderr.read()
    assert "not empty" in second.stderr.read()
    assert (out / "mergesmith_manifest.json").stat().st_mtime_ns == stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["go", "out", "reached", "w"]


def test_extract_lora_killed_at_its_rename_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    from factory import make_family

    family = make_family(tmp_path / "models", "llama", layers=1)
    args = ["extract-lora", str(tmp_path / "adapter"), "--model", str(family["a"]), "--base",
            str(family["base"]), "--rank", "2", "--quiet"]
    (tmp_path / "w").mkdir()
    assert _driven(tmp_path / "w", "rename", *args).wait() == -signal.SIGKILL
    assert not (tmp_path / "adapter").exists()
    proc = subprocess.run([sys.executable, "-m", "mergesmith", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "models", "w"]


def test_monster_killed_at_its_rename_leaves_nothing_after_the_next_run(tmp_path: Path) -> None:
    """MergeMonster's output is written whole into `.out.partial`, then renamed: a kill at the
    rename leaves no half-written output, and the next run removes the leftover and finishes."""
    import yaml
    from factory import make_family

    family = make_family(tmp_path / "models", "llama", layers=1)
    config = tmp_path / "m.yaml"
    config.write_text(yaml.safe_dump({
        "device": "cpu", "directories": {"model_path1": str(family["base"]), "output_directory": str(tmp_path / "out")},
        "models_to_merge": [str(family["a"])], "merge_ratios": [0.5],
        "good_phrases": [{"phrase": "w5", "contexts": ["w1 w2"]}]}))
    args = ["monster", str(config), "--no-progress"]
    (tmp_path / "w").mkdir()
    assert _driven(tmp_path / "w", "rename", *args).wait() == -signal.SIGKILL
    assert not (tmp_path / "out").exists() and (tmp_path / ".out.partial").is_dir()
    proc = subprocess.run([sys.executable, "-m", "mergesmith", *args], capture_output=True, text=True,
                          cwd=tmp_path / "w")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.yaml", "models", "out", "w"]
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / ".mergesmith_monster").is_file()


def test_ctrl_c_keeps_the_finished_tensors_and_says_how_to_resume(big_pair: Path, reference: dict[str, bytes],
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _merge(big_pair, out)
    journal = tmp_path / ".out.partial" / "mergesmith_journal.tsv"
    while proc.poll() is None and not (journal.is_file() and journal.read_text().count("\n") >= 10):
        time.sleep(0.005)
    proc.send_signal(signal.SIGINT)
    assert proc.wait() == 130
    err = proc.stderr.read()
    assert "interrupted; " in err and "kept in" in err and "--resume" in err, err
    assert not out.exists() and journal.is_file()
    finished = _merge(big_pair, out, "--resume")
    assert finished.wait() == 0, finished.stderr.read()
    assert _shards(out) == reference
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(("call", "code", "words"), [
    ("open|EROFS", 1, "read-only"),  # a read-only output file system
    ("open|ENOSPC", 1, "no free inodes"),  # no inode left to create a file
    ("preadv|EIO", 1, "cannot read tensor"),  # a failing input disk while merging
])
def test_disk_errors_are_named_and_leave_nothing(big_pair: Path, tmp_path: Path, call: str, code: int,
                                                 words: str) -> None:
    (tmp_path / "w").mkdir()
    proc = _driven(tmp_path / "w", f"oserror:{call}", *_merge_args(big_pair, tmp_path / "out"))
    assert proc.wait() == code
    err = proc.stderr.read()
    assert words in err and "Traceback" not in err and "internal error" not in err, err
    assert "fix:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w"]
