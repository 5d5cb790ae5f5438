"""Every bad input gets its exit code, a message naming the problem, no traceback, and
leaves nothing behind (no output, no temporary files, inputs unchanged)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mergesmith.cli.main import main

from .corpus import CASES, Case


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if case.setup is None:
        from .corpus import _pair

        _pair(tmp_path)
    else:
        case.setup(tmp_path)
    (tmp_path / "recipe.yaml").write_text(case.recipe)
    before = _snapshot(tmp_path)
    code = main(["merge", str(tmp_path / "recipe.yaml"), str(tmp_path / case.out), "--quiet", *case.args])
    err = capsys.readouterr().err
    assert code == case.code, err
    for needle in case.needles:
        assert needle in err, f"{needle!r} not in: {err}"
    assert "Traceback" not in err and "internal error" not in err
    assert "fix:" in err or "  - " in err  # every error says how to fix it (recipe problems list theirs)
    assert _snapshot(tmp_path) == before  # nothing written, nothing left, inputs untouched
    leftovers = [p.name for p in tmp_path.rglob(".*")]
    assert leftovers == [], leftovers
