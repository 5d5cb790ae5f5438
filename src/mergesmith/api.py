"""The Python API: load a recipe, plan it, merge it to disk or in memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from mergesmith.datamerge.prepare import check_recipe as check_calibration
from mergesmith.datamerge.prepare import prepare_recipe
from mergesmith.engine.executor import Executor
from mergesmith.engine.write import MergeResult, write_plan
from mergesmith.errors import OptionsError
from mergesmith.io.checkpoint import Checkpoint, from_state_dict
from mergesmith.io.target import check_output_location
from mergesmith.methods import get_method
from mergesmith.plan.build import build_plan, open_inputs
from mergesmith.plan.ops import Plan
from mergesmith.plan.steps import is_complete, plan_steps, reopen
from mergesmith.recipe.load import load_recipe, load_recipes
from mergesmith.recipe.model import Recipe

__all__ = ["load_recipe", "load_recipes", "check_recipe", "plan", "merge", "merge_state_dicts", "MergeResult"]


def _base_dir(source: Any, base_dir: Path | None) -> Path | None:
    if base_dir is not None:
        return Path(base_dir)
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith((".yml", ".yaml"))):
        return Path(source).resolve().parent
    return None


def plan(recipe: str | Path | dict | Recipe, *, base_dir: Path | None = None, allow_pickle: bool = False,
         checkpoints: dict[str, Checkpoint] | None = None, truncate_embeddings: bool = False,
         allow_crimes: bool = False) -> Plan:
    """Plan a recipe from checkpoint headers: no tensor is read."""
    parsed = load_recipe(recipe)
    check_recipe(parsed, _base_dir(recipe, base_dir))
    if checkpoints is None:
        checkpoints = open_inputs(parsed, _base_dir(recipe, base_dir), allow_pickle=allow_pickle)
    return build_plan(parsed, checkpoints, truncate_vocab=truncate_embeddings, allow_crimes=allow_crimes)


def plan_recipe_steps(recipe: str | Path, *, base_dir: Path | None = None, allow_pickle: bool = False,
                      allow_crimes: bool = False) -> list:
    """Plan every step of a recipe file (one step for a single-document recipe), from headers;
    intermediate steps are planned as written to `intermediate/<name>`."""
    recipes = load_recipes(recipe)
    root = _base_dir(recipe, base_dir)
    for parsed in recipes:
        check_recipe(parsed, root)
    return plan_steps(recipes, root, Path("intermediate") if len(recipes) > 1 else None,
                      allow_pickle=allow_pickle, allow_crimes=allow_crimes)


def check_recipe(recipe: Recipe, root: Path | None) -> None:
    """What the recipe names beyond models: a data-aware method's calibration files."""
    if get_method(recipe.merge_method).statistics is not None:
        check_calibration(recipe, root)


def _prepared(the_plan: Plan, root: Path | None, *, device: str, stats_dir: str | Path | None,
              truncate_embeddings: bool, allow_crimes: bool) -> Plan:
    """The plan of a data-aware method once its statistics are computed (else the plan as is)."""
    if the_plan.method.statistics is None:
        return the_plan
    models = {ref: ckpt.path for ref, ckpt in the_plan.checkpoints.items() if ckpt.path is not None}
    recipe = prepare_recipe(the_plan.recipe, root, models, device=device,
                            cache_dir=Path(stats_dir) if stats_dir is not None else None)
    prepared = build_plan(recipe, the_plan.checkpoints, truncate_vocab=truncate_embeddings, allow_crimes=allow_crimes)
    # The output's recipe, card and manifest (and --lazy) keep the user's recipe, not cache paths.
    return dataclasses.replace(prepared, recipe=the_plan.recipe)


def merge(recipe: str | Path | dict | Recipe, out_dir: str | Path, *, base_dir: Path | None = None,
          shard_size: str | int = "5G", overwrite: bool = False, device: str = "cpu", threads: int = 2,
          seed: int = 0, allow_pickle: bool = False, progress: bool | None = False,
          truncate_embeddings: bool = False, intermediate_dir: str | Path | None = None,
          lazy: bool = False, resume: bool = False, stats_dir: str | Path | None = None,
          allow_crimes: bool = False) -> MergeResult:
    """Merge to `out_dir` (written atomically: complete, or not at all).

    A multi-step recipe (several YAML documents) runs every step in order; named steps are
    written to `intermediate_dir/<name>` and, with `lazy`, skipped when already complete.
    With `resume`, an interrupted merge into `out_dir` continues from its verified tensors.
    Data-aware methods (fisher, regmean) first compute their calibration statistics, cached in
    `stats_dir` (default: see mergesmith.datamerge.prepare.default_stats_dir).
    """
    out_dir = Path(out_dir)
    recipes = [recipe] if isinstance(recipe, Recipe) else load_recipes(recipe)
    root = _base_dir(recipe, base_dir)
    for parsed in recipes:  # a missing calibration file fails before any step runs
        check_recipe(parsed, root)
    inter = Path(intermediate_dir) if intermediate_dir is not None else None
    steps = plan_steps(recipes, root, inter, allow_pickle=allow_pickle, truncate_embeddings=truncate_embeddings,
                       allow_crimes=allow_crimes)
    _check_locations(steps, out_dir, inter)
    options = dict(shard_size=shard_size, device=device, threads=threads, seed=seed, progress=progress,
                   resume=resume)
    finished: dict[str, Path] = {}
    result = None
    for step in steps:
        target = step.out_dir or out_dir
        if step.out_dir is not None and lazy and is_complete(step.out_dir, step.recipe):
            finished[step.recipe.name] = step.out_dir
            continue
        the_plan = step.plan
        if len(steps) > 1:
            the_plan = build_plan(step.recipe, reopen(step, finished, root, allow_pickle),
                                  truncate_vocab=truncate_embeddings, allow_crimes=allow_crimes)
        the_plan = _prepared(the_plan, root, device=device, stats_dir=stats_dir,
                             truncate_embeddings=truncate_embeddings, allow_crimes=allow_crimes)
        # an intermediate that is not complete (an earlier run's, or a changed step) is replaced
        result = write_plan(the_plan, target, overwrite=step.out_dir is not None or overwrite, **options)
        if step.recipe.name:
            finished[step.recipe.name] = target
    assert result is not None
    return result


def _check_locations(steps: list, out_dir: Path, inter: Path | None) -> None:
    """Before any step runs: neither the output nor --intermediate-dir touches an input of any
    step (a later step's output written into an earlier step's input would change it)."""
    named = {step.recipe.name for step in steps if step.recipe.name}
    inputs = {ref: ckpt.path for step in steps for ref, ckpt in step.plan.checkpoints.items() if ref not in named}
    check_output_location(out_dir, inputs.items())
    if inter is None:
        return
    check_output_location(inter, inputs.items(), what="--intermediate-dir")
    a, b = inter.resolve(), out_dir.resolve()
    if a == b or a in b.parents or b in a.parents:
        raise OptionsError(f"--intermediate-dir {inter} and the output {out_dir} overlap; writing the output "
                           "replaces its whole folder", hint="give them separate folders")


def merge_state_dicts(recipe: str | dict | Recipe, state_dicts: dict[str, dict[str, Any]],
                      configs: dict[str, dict[str, Any]], *, device: str = "cpu", seed: int = 0,
                      threads: int = 1) -> dict[str, Any]:
    """Merge in memory: `state_dicts` and `configs` are keyed by the recipe's model names."""
    parsed = load_recipe(recipe)
    checkpoints = {}
    for ref in parsed.referenced_models():
        if ref not in state_dicts:
            raise OptionsError(f"merge_state_dicts: no state dict given for model {ref!r}",
                               hint=f"pass state_dicts with keys {parsed.referenced_models()}")
        checkpoints[ref] = from_state_dict(ref, state_dicts[ref], configs.get(ref, {}))
    the_plan = build_plan(parsed, checkpoints)
    out: dict[str, Any] = {}
    Executor(the_plan, device=device, seed=seed, threads=threads).run(out.__setitem__)
    return out
