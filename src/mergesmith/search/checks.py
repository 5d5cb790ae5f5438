"""Checks of a soup or evolve config that need the file system: run before any model loads."""

from __future__ import annotations

from pathlib import Path

from mergesmith.engine.executor import check_device
from mergesmith.errors import MergeError, RecipeError
from mergesmith.evaluate.spec import build_evaluator
from mergesmith.io.resolve import close_matches
from mergesmith.io.target import check_output_location
from mergesmith.search.config import EvolveConfig, SoupConfig


def check_config(config: SoupConfig | EvolveConfig) -> None:
    """What the schema cannot say, checked before any model is loaded: the models exist,
    every evaluator's files read, the output is allowed, the device is there."""
    path = config._source
    problems = []
    refs = [("base_model", config.base_model)] if config.base_model else []
    refs += [(f"models.{i}", m) for i, m in enumerate(config.models)]
    for key, ref in refs:
        if not (Path(ref) / "config.json").is_file():
            problems.append(f"{key}: {ref}: no such model folder (or it has no config.json)"
                            + close_matches(ref, [Path(ref)]))
    seen: dict[str, int] = {}
    for i, ref in enumerate(config.models):
        if ref in seen:
            problems.append(f"models.{i}: {ref} is the same model as models.{seen[ref]}")
        seen.setdefault(ref, i)
    for group in ("search", "final"):
        for i, spec in enumerate(getattr(config, group)):
            try:
                build_evaluator(spec, "cpu")  # reads its files; needs no model
            except MergeError as exc:
                problems.append(f"{group}.{i} ({spec.type}): {exc.message}")
    if problems:
        raise RecipeError(f"{path}: the config has {len(problems)} problem(s):", problems=problems,
                          hint="fix these before the search loads any model")
    check_headers([ref for _, ref in refs], type(config).__name__.removesuffix("Config").lower())
    check_output_location(Path(config.output), [(ref, Path(ref)) for _, ref in refs], what="output:")
    try:
        check_device(config.device)
    except MergeError as exc:
        raise RecipeError(f"{path}: device: {config.device!r}: {exc.message.partition(': ')[2] or exc.message}",
                          hint=exc.hint) from None


def check_headers(refs: list[str], command: str) -> None:
    """Open every model from its headers (damaged files fail here, not after minutes of
    loading) and refuse models of different architectures."""
    from mergesmith.io.models import open_model
    from mergesmith.plan.checks import check_architectures

    opened = {}
    try:
        for ref in refs:
            opened[ref] = open_model(ref, None)
        check_architectures(opened, refs[0], allow_crimes=False,
                            fix=f"{command} merges models of one architecture: list only those")
    finally:
        for ckpt in opened.values():
            ckpt.close()
