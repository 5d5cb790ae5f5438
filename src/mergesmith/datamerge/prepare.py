"""The prepare step of `fisher` and `regmean`: check the calibration data, compute (or reuse)
each model's statistics, and hand the merge a recipe with a per-model `stats` file.

A method declares the statistic it reads (`MethodSpec.statistics`); `mergesmith merge`
(`mergesmith.api.merge`) calls :func:`check_recipe` before anything runs and
:func:`prepare_recipe` just before the step is executed; `mergesmith plan`/`validate` call
:func:`check_recipe` only.

Statistics are written to a user cache, never into a model's directory: inputs are never
written (model folders may be read-only, a hub cache or shared by other jobs). The cache is
`--stats-dir`, else $MERGESMITH_STATS_DIR, else $XDG_CACHE_HOME/mergesmith/stats (by default
~/.cache/mergesmith/stats); files are `<kind>-<key>.safetensors` where the key hashes the
model's files (names, sizes, modification times), the calibration data and the settings, so
any merge of the same model with the same data reuses them, whatever its output directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from mergesmith.datamerge import calibration as calib
from mergesmith.errors import OptionsError, RecipeError
from mergesmith.methods import get_method
from mergesmith.methods.data_aware import FALLBACKS_WITH_BASE
from mergesmith.progress import Progress
from mergesmith.recipe.load import load_recipe
from mergesmith.recipe.model import Recipe

log = logging.getLogger("mergesmith")


def default_stats_dir() -> Path:
    """$MERGESMITH_STATS_DIR, else $XDG_CACHE_HOME/mergesmith/stats (~/.cache/mergesmith/stats)."""
    if os.environ.get("MERGESMITH_STATS_DIR"):
        return Path(os.environ["MERGESMITH_STATS_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mergesmith" / "stats"


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

    settings = {"kind": kind, "max_examples": max_examples, "max_tokens": max_tokens, "version": 2}
    path = cache_dir / f"{kind}-{stats_key(model_dir, calibration, settings)}.safetensors"
    if path.is_file():
        log.info("reusing %s statistics of %s: %s", kind, model_dir, path)
        return path
    examples = calib.read_examples(calibration, max_examples)
    collect = calib.fisher_stats if kind == "fisher" else calib.gram_stats
    log.info("computing %s statistics of %s on %s", kind, model_dir, calibration)
    bar = Progress(len(examples), unit="examples", label=f"{kind} statistics of {model_dir.name}")
    try:
        stats, aliases = collect(model_dir, examples, device=device, max_tokens=max_tokens, advance=bar.advance)
    finally:
        bar.close()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
        save_file(stats, str(tmp), metadata={"model": str(model_dir), "calibration": str(calibration),
                                             "aliases": json.dumps(aliases)})
    except OSError as exc:
        raise OptionsError(f"cannot write {kind} statistics to {cache_dir}: {exc.strerror}",
                           hint="pass --stats-dir DIR (or set MERGESMITH_STATS_DIR) to a writable folder") from None
    tmp.replace(path)  # atomic: a crash never leaves a half-written stats file to reuse
    return path


def _resolve(root: Path | None, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (root or Path.cwd()) / path


def _settings(recipe: Recipe) -> dict[str, int]:
    shared = recipe.parameters or {}
    settings = {"max_examples": 256, "max_tokens": 512}
    for key in settings:
        value = shared.get(key, settings[key])
        if isinstance(value, bool) or not isinstance(value, int) or value < (1 if key == "max_examples" else 2):
            raise RecipeError(f"{recipe.merge_method}: `parameters.{key}` = {value!r} must be one integer "
                              f">= {1 if key == 'max_examples' else 2}", hint="no gradients or filters here")
        settings[key] = value
    return settings


def check_recipe(recipe: Recipe, root: Path | None) -> None:
    """Every model has a readable calibration file (or a stats file); errors name both."""
    method = recipe.merge_method
    if not recipe.models:
        raise RecipeError(f"{method}: use a `models:` recipe (slices are not supported yet)",
                          hint="list each model once under `models:` with its `calibration` file")
    fallback = (recipe.parameters or {}).get("fallback")
    if fallback in FALLBACKS_WITH_BASE and recipe.base_model is None:
        raise RecipeError(f"{method}: fallback {fallback} needs `base_model`",
                          hint="set base_model, or use `fallback: linear`")
    _settings(recipe)
    separate_base = get_method(method).uses_base
    problems = []
    for entry in recipe.models:
        if separate_base and entry.model == recipe.base_model:
            continue  # a base held apart from the inputs (regmean's) needs no statistics
        params = entry.parameters or {}
        calibration, stats = params.get("calibration"), params.get("stats")
        for key, value in (("calibration", calibration), ("stats", stats)):
            if value is not None and not isinstance(value, str):
                problems.append(f"model {entry.model!r}: `{key}` must be one file path, not {value!r}")
        if calibration is None and stats is None:
            problems.append(f"model {entry.model!r}: {method} needs `calibration` data "
                            "(`parameters: {calibration: path/to/data.txt}`)")
        elif isinstance(calibration, str):
            try:
                calib.read_examples(_resolve(root, calibration), 1)
            except (RecipeError, OSError, ValueError, KeyError) as exc:
                problems.append(f"model {entry.model!r}: {_reason(exc, _resolve(root, calibration))}")
        elif isinstance(stats, str) and not _resolve(root, stats).is_file():
            problems.append(f"model {entry.model!r}: stats file {_resolve(root, stats)} does not exist")
    if problems:
        raise RecipeError(f"{method}: bad calibration data", problems=problems,
                          hint="give each model a text file (one example a line) or JSONL with a `text` "
                               "field; relative paths are relative to the recipe's folder")


def _reason(exc: Exception, path: Path) -> str:
    if isinstance(exc, RecipeError):
        return exc.message
    if isinstance(exc, KeyError):
        return f"calibration file {path}: a JSONL line has no `text` field"
    return f"calibration file {path}: {exc}"


def prepare_recipe(recipe: Recipe, root: Path | None, models: dict[str, Path], *, device: str = "cpu",
                   cache_dir: Path | None = None) -> Recipe:
    """The recipe with each model's `stats` file filled in (computed unless cached).

    `root` is the recipe's folder (calibration paths are relative to it), `models` each model
    reference's local directory, `cache_dir` the statistics cache (default: default_stats_dir()).
    """
    kind = get_method(recipe.merge_method).statistics
    if kind is None:
        raise RecipeError(f"merge_method {recipe.merge_method!r} needs no statistics",
                          hint="only data-aware methods (fisher, regmean) have a prepare step")
    check_recipe(recipe, root)
    cache_dir = cache_dir or default_stats_dir()
    settings = _settings(recipe)
    separate_base = get_method(recipe.merge_method).uses_base
    data = recipe.model_dump(mode="json", exclude_none=True, by_alias=True)
    for entry, raw in zip(recipe.models or [], data["models"]):
        calibration = (entry.parameters or {}).get("calibration")
        if calibration is None or (separate_base and entry.model == recipe.base_model):
            continue  # a given stats file is used as it is; a separate base needs none
        path = compute_stats(kind, Path(models[entry.model]), _resolve(root, calibration), cache_dir,
                             device=device, **settings)
        raw.setdefault("parameters", {})["stats"] = str(path)
    return load_recipe(data)
