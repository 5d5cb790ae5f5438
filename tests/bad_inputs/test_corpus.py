"""Every bad input gets its exit code, a message naming the problem, no traceback, and
leaves nothing behind (no output, no temporary files, inputs unchanged)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.cli.main import main
from mergesmith.io.checkpoint import Checkpoint

from .checks import check_answer, check_nothing_left, snapshot
from .corpus import CASES, Case


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                   monkeypatch: pytest.MonkeyPatch) -> None:
    if case.setup is None:
        from .corpus import _pair

        _pair(tmp_path)
    else:
        case.setup(tmp_path)
    if case.raw is not None:
        (tmp_path / "recipe.yaml").write_bytes(case.raw)
    else:
        (tmp_path / "recipe.yaml").write_text(case.recipe)
    before = snapshot(tmp_path)
    reads: list[str] = []
    read = Checkpoint.read
    monkeypatch.setattr(Checkpoint, "read", lambda self, name: (reads.append(name), read(self, name))[1])
    code = main(["merge", str(tmp_path / case.recipe_arg), str(tmp_path / case.out), "--quiet", *case.args])
    err = capsys.readouterr().err
    check_answer(err, code, case.code, case.needles, listed_fix=True)
    check_nothing_left(tmp_path, before)
    if case.code == 2:
        assert reads == [], f"tensors read before a recipe or option error: {reads[:3]}"
