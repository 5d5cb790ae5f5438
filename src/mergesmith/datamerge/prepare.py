"""The prepare step: compute (or reuse) each model's statistics, then merge.

Statistics go to `cache_dir`, by default `.mergesmith-stats/` beside the output (inputs are
never written), as `<kind>-<key>.safetensors` where the key hashes the model's files (names,
sizes, modification times), the calibration data and the settings. The recipe is then given
a per-model `stats` parameter and merged by the normal planner and executor.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from mergesmith.errors import RecipeError
from mergesmith.recipe import Recipe, load_recipe

log = logging.getLogger("mergesmith")
KINDS = {"fisher": "fisher", "regmean": "gram"}


def stats_key(model_dir: Path, calibration: Path, settings: dict[str, Any]) -> str:
    """A hash of the model's files, the calibration data and the settings."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for f in sorted(p for p in model_dir.iterdir() if p.is_file()):
        stat = f.stat()
        digest.update(f"{f.name}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
    digest.update(calibration.read_bytes())
    return digest.hexdigest()[:24]


def compute_stats(kind: str, model_dir: Path, calibration: Path, cache_dir: Path, *, device: str = "cpu",
                  max_examples: int = 256, max_tokens: int = 512) -> Path:
    """The stats file for one model, computed unless the cache already holds it."""
    from safetensors.torch import save_file

    from mergesmith.datamerge import calibration as calib

    settings = {"kind": kind, "max_examples": max_examples, "max_tokens": max_tokens, "version": 2}
    path = cache_dir / f"{kind}-{stats_key(model_dir, calibration, settings)}.safetensors"
    if path.is_file():
        log.info("reusing %s statistics of %s: %s", kind, model_dir, path)
        return path
    examples = calib.read_examples(calibration, max_examples)
    collect = calib.fisher_stats if kind == "fisher" else calib.gram_stats
    stats, aliases = collect(model_dir, examples, device=device, max_tokens=max_tokens)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file(stats, str(tmp), metadata={"model": str(model_dir), "calibration": str(calibration),
                                         "aliases": json.dumps(aliases)})
    tmp.replace(path)  # atomic: a crash never leaves a half-written stats file to reuse
    return path


def _calibration(entry: Any) -> str | None:
    value = (entry.parameters or {}).get("calibration")
    if value is not None and not isinstance(value, str):
        raise RecipeError(f"model {entry.model!r}: `calibration` must be one file path",
                          hint="give each model a text or JSONL file")
    return value


def prepare_recipe(recipe: Recipe, root: Path, cache_dir: Path, *, device: str = "cpu", **settings: Any) -> dict:
    """The recipe as a dict with each model's `stats` file filled in (computed as needed)."""
    kind = KINDS.get(recipe.merge_method)
    if kind is None:
        raise RecipeError(f"merge_method {recipe.merge_method!r} needs no statistics",
                          hint=f"use one of {', '.join(KINDS)}")
    if not recipe.models:
        raise RecipeError(f"{recipe.merge_method}: use a `models:` recipe (slices are not supported yet)")
    data = recipe.model_dump(mode="json", exclude_none=True, by_alias=True)
    for entry, raw in zip(recipe.models, data["models"]):
        calibration = _calibration(entry)
        if calibration is None:
            raise RecipeError(f"model {entry.model!r}: {recipe.merge_method} needs `calibration` data",
                              hint="add `parameters: {calibration: path/to/data.txt}` to the model")
        model_dir, data_file = (root / entry.model).resolve(), (root / calibration).resolve()
        path = compute_stats(kind, model_dir, data_file, cache_dir, device=device, **settings)
        raw.setdefault("parameters", {})["stats"] = str(path)
    return data


def merge_with_stats(recipe: str | Path | dict, out_dir: str | Path, *, base_dir: Path | None = None,
                     cache_dir: str | Path | None = None, device: str = "cpu", overwrite: bool = False,
                     **settings: Any) -> Any:
    """Compute the statistics a `fisher`/`regmean` recipe needs, then merge it to `out_dir`."""
    from mergesmith.api import merge

    out = Path(out_dir)
    root = Path(base_dir) if base_dir else (Path(recipe).resolve().parent if not isinstance(recipe, dict)
                                             else Path.cwd())
    cache = Path(cache_dir) if cache_dir else out.resolve().parent / ".mergesmith-stats"
    prepared = prepare_recipe(load_recipe(recipe), root, cache, device=device, **settings)
    return merge(prepared, out, base_dir=root, device=device, overwrite=overwrite)
