"""Helpers for the search tests (a module name of its own: `conftest` names collide across folders)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_config(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def evaluators(root: Path) -> dict:
    return {"search": [{"type": "perplexity", "path": str(root / "search.txt")}],
            "final": [{"type": "perplexity", "path": str(root / "final.txt")}]}
