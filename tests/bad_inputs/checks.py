"""What every bad input must get, whatever the command: the checks shared by the corpus tests."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

ERRORS_DOC = (Path(__file__).parents[2] / "docs" / "errors.md").read_text(encoding="utf-8")


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under root (links not followed) with its hash and mtime: inputs unchanged."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[str(p.relative_to(root))] = (f"-> {p.readlink()}", 0)
        elif p.is_file():
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = ("dir", 0)
    return out


def problem_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("  - ")]


def check_answer(err: str, code: int, expected: int, needles: tuple[str, ...], *, listed_fix: bool = False) -> None:
    """Exit code, the culprit named, no traceback, a fix, at most 3 problem lines for one mistake.

    With `listed_fix`, problem lines that each say what to change count as the fix (recipe
    validation lists its problems instead of one fix line)."""
    assert code == expected, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in: {err}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert "fix:" in err or (listed_fix and problem_lines(err)), f"no fix line in: {err}"
    assert len(problem_lines(err)) <= 3, err
    anchor = re.search(r"\(docs/errors\.md#([a-z-]+)\)", err)
    assert anchor and f"\n## {anchor.group(1)}\n" in ERRORS_DOC, f"undocumented anchor in: {err}"


def check_nothing_left(root: Path, before: dict[str, tuple[str, int]]) -> None:
    """Nothing written, nothing left, inputs untouched (hash and mtime)."""
    assert snapshot(root) == before
    leftovers = [str(p.relative_to(root)) for p in root.rglob(".*") if str(p.relative_to(root)) not in before]
    assert leftovers == [], leftovers
