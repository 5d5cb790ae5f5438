"""Evaluation results beside a model, for the report: `eval.json` in a model directory.

Format (one file per model, written by evaluators and search; other keys are ignored):

    {"tasks": {"<task name>": <score, a number>, ...}}

A file that does not follow it is noted in the report, never fatal: the report is about the
weights, the scores are an extra.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

EVAL_FILE = "eval.json"


def load_eval(path: Path) -> tuple[dict[str, float], str | None]:
    """(task -> score, a note on what was wrong, or None)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return {}, f"{path}: not readable JSON ({exc})"
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, dict):
        return {}, f'{path}: expected {{"tasks": {{name: score}}}}'
    scores, bad = {}, []
    for name, value in tasks.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            scores[str(name)] = float(value)
        else:
            bad.append(str(name))
    note = f"{path}: tasks without a numeric score were left out: {', '.join(bad)}" if bad else None
    return scores, note


def save_eval(model: Path, scores: dict[str, float]) -> Path:
    """Merge `scores` into MODEL/eval.json (`{"tasks": {...}}`), written atomically; a file
    that does not follow the format is replaced."""
    path = Path(model) / EVAL_FILE
    data: Any = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = {}
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), dict):
        data = {"tasks": {}}
    data["tasks"].update(scores)
    tmp = path.with_name(f".{EVAL_FILE}.partial")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def collect_evals(dirs: dict[str, Any]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Scores of each labelled model directory that has an eval.json; notes on bad files."""
    scores: dict[str, dict[str, float]] = {}
    notes: list[str] = []
    for label, directory in dirs.items():
        if not directory or not (Path(directory) / EVAL_FILE).is_file():
            continue
        found, note = load_eval(Path(directory) / EVAL_FILE)
        if found:
            scores[label] = found
        if note:
            notes.append(note)
    return scores, notes
