"""The output rule, recovery after a kill, and search workspaces (mergesmith.io.target)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from mergesmith.errors import OptionsError, OutputError
from mergesmith.io.target import (
    TargetLock,
    check_output_location,
    check_target,
    discard_workspace,
    prepare_workspace,
    recover,
)


def test_the_working_directory_and_inputs_are_never_targets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = tmp_path / "models" / "a"
    model.mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "models")
    inputs = [("a", model)]
    for target, words in [(Path(""), "current directory"), (Path("."), "current directory"),
                          (Path(".."), "contains the current directory"), (Path("a"), "is input model"),
                          (Path("a/x"), "inside input model"), (tmp_path, "contains the current directory")]:
        with pytest.raises(OptionsError, match=words):
            check_output_location(target, inputs)
    (tmp_path / "link").symlink_to(model)
    with pytest.raises(OptionsError, match="is input model"):
        check_output_location(tmp_path / "link", inputs)
    check_output_location(Path("merged"), inputs)  # a new folder beside the inputs is fine


def test_overwrite_replaces_only_what_mergesmith_wrote(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OptionsError, match="not empty"):
        check_target(tmp_path, overwrite=False)
    with pytest.raises(OptionsError, match="not written by mergesmith"):
        check_target(tmp_path, overwrite=True)
    (tmp_path / "mergesmith_manifest.json").write_text("{}")  # a manifest must be mergesmith's
    with pytest.raises(OptionsError, match="not written by mergesmith"):
        check_target(tmp_path, overwrite=True)
    (tmp_path / "mergesmith_manifest.json").write_text(json.dumps({"versions": {"mergesmith": "0.1.0"}}))
    check_target(tmp_path, overwrite=True)


def test_recover_puts_back_an_old_output_and_removes_leftovers(tmp_path: Path) -> None:
    target = tmp_path / "out"
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "model.safetensors").write_text("old")
    assert "restored" in recover(target)[0]  # killed between the two renames
    assert (target / "model.safetensors").read_text() == "old" and not (tmp_path / ".out.old").exists()
    (tmp_path / ".out.old").mkdir()  # killed after the second rename: the new output stays
    (target / "mergesmith_journal.tsv").write_text("x\t1\n")  # and after its commit's rename
    assert recover(target) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"] and sorted(os.listdir(target)) == ["model.safetensors"]


def test_a_lock_released_meanwhile_is_taken_on_the_new_file(tmp_path: Path) -> None:
    first = TargetLock(tmp_path / "out")
    first.acquire()
    with pytest.raises(OutputError, match="another mergesmith command"):
        TargetLock(tmp_path / "out").acquire()
    stale = os.open(first.path, os.O_RDWR)  # a second process opened the file before the release
    first.release()
    assert not first.path.exists()
    second = TargetLock(tmp_path / "out")
    second.acquire()
    assert not second._still_linked(stale)  # what the stale opener finds once it has locked
    os.close(stale)
    second.release()
    assert list(tmp_path.iterdir()) == []


def test_search_workspaces_are_new_empty_or_their_own(tmp_path: Path) -> None:
    out = tmp_path / "search"
    assert prepare_workspace(out, [], "evolve") == out and (out / ".mergesmith_evolve").is_file()
    discard_workspace(out, "evolve")
    assert not out.exists()  # a search that failed before writing anything leaves nothing
    out.mkdir()
    (out / "best.yaml").write_text("x")  # an evolve output written before markers existed
    prepare_workspace(out, [], "evolve", known=("best.yaml",))
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OptionsError, match="not written by mergesmith soup"):
        prepare_workspace(out, [], "soup", known=("best.yaml",))
