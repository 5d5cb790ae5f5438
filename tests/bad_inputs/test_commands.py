"""Every command that reads a config or writes a model answers bad input like `merge` does:
its exit code, a message naming the culprit with a fix, at most 3 problem lines for one
mistake, no traceback, no tensor read before a config or option error, nothing left behind
and the inputs unchanged (hash and mtime)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.cli.main import main
from mergesmith.io.checkpoint import Checkpoint

from .checks import check_answer, check_nothing_left, snapshot
from .commands import COMMANDS, Cmd


def test_every_command_that_writes_or_reads_a_config_has_cases() -> None:
    names = {c.argv(Path("."))[0] for c in COMMANDS}
    assert {"merge", "moe", "extract-lora", "soup", "evolve", "eval", "monster", "map", "inspect", "report",
            "validate", "plan"} <= names
    assert len({c.name for c in COMMANDS}) == len(COMMANDS)


@pytest.mark.parametrize("case", COMMANDS, ids=[c.name for c in COMMANDS])
def test_bad_command_input(case: Cmd, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "work"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a model reference must never reach the network
    case.setup(root)
    before = snapshot(tmp_path)
    reads: list[str] = []
    read = Checkpoint.read
    monkeypatch.setattr(Checkpoint, "read", lambda self, name: (reads.append(name), read(self, name))[1])
    code = main(case.argv(root))
    err = capsys.readouterr().err
    check_answer(err, code, case.code, case.needles, listed_fix=True)
    check_nothing_left(tmp_path, before)
    if case.code == 2:  # a failure on valid input (exit 1) may come from a tensor read
        assert reads == [], f"tensors read before a config or option error: {reads[:3]}"
