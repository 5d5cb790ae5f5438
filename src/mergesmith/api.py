"""The Python API: load a recipe, plan it, merge it to disk or in memory."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.execute import Executor
from mergesmith.io.checkpoint import Checkpoint, from_state_dict
from mergesmith.io.writer import OutSpec, ShardedWriter, parse_size
from mergesmith.methods import get_method
from mergesmith.methods.base import PrepareContext
from mergesmith.plan import Plan, build_plan, open_inputs
from mergesmith.progress import Progress
from mergesmith.recipe import Recipe, load_recipe, load_recipes

log = logging.getLogger("mergesmith")

__all__ = ["load_recipe", "load_recipes", "check_recipe", "plan", "merge", "merge_state_dicts", "MergeResult"]


@dataclass
class MergeResult:
    out_dir: Path
    plan: Plan
    tensors: int
    bytes_written: int


def _base_dir(source: Any, base_dir: Path | None) -> Path | None:
    if base_dir is not None:
        return Path(base_dir)
    if isinstance(source, Path) or (isinstance(source, str) and source.endswith((".yml", ".yaml"))):
        return Path(source).resolve().parent
    return None


def plan(recipe: str | Path | dict | Recipe, *, base_dir: Path | None = None, allow_pickle: bool = False,
         checkpoints: dict[str, Checkpoint] | None = None, truncate_embeddings: bool = False) -> Plan:
    """Plan a recipe from checkpoint headers: no tensor is read."""
    parsed = load_recipe(recipe)
    check_recipe(parsed, _base_dir(recipe, base_dir))
    if checkpoints is None:
        checkpoints = open_inputs(parsed, _base_dir(recipe, base_dir), allow_pickle=allow_pickle)
    return build_plan(parsed, checkpoints, truncate_vocab=truncate_embeddings)


def check_recipe(recipe: Recipe, root: Path | None) -> None:
    """The method's own checks of what the recipe names beyond models (calibration files)."""
    check = get_method(recipe.merge_method).check
    if check is not None:
        check(recipe, root)


def _prepared(the_plan: Plan, root: Path | None, *, device: str, stats_dir: str | Path | None,
              truncate_embeddings: bool) -> Plan:
    """The plan once the method's prepare step ran (fisher/regmean: statistics computed)."""
    prepare = the_plan.method.prepare
    if prepare is None:
        return the_plan
    models = {ref: ckpt.path for ref, ckpt in the_plan.checkpoints.items() if ckpt.path is not None}
    context = PrepareContext(root, models, device, Path(stats_dir) if stats_dir is not None else None)
    prepared = build_plan(prepare(the_plan.recipe, context), the_plan.checkpoints,
                          truncate_vocab=truncate_embeddings)
    # The output's recipe, card and manifest (and --lazy) keep the user's recipe, not cache paths.
    return dataclasses.replace(prepared, recipe=the_plan.recipe)


def _check_output_location(out_dir: Path, the_plan: Plan) -> None:
    out = out_dir.resolve()
    for ref, ckpt in the_plan.checkpoints.items():
        if ckpt.path is None:
            continue
        src = ckpt.path.resolve()
        if out == src or src in out.parents:
            raise OptionsError(f"output {out_dir} is inside input model {ref!r} ({src})",
                               hint="write the merged model to a directory outside every input model")
        if out in src.parents:
            raise OptionsError(f"output {out_dir} contains input model {ref!r} ({src}); replacing it "
                               "would delete that input", hint="choose another output directory")


def merge(recipe: str | Path | dict | Recipe, out_dir: str | Path, *, base_dir: Path | None = None,
          shard_size: str | int = "5G", overwrite: bool = False, device: str = "cpu", threads: int = 2,
          seed: int = 0, allow_pickle: bool = False, progress: bool | None = False,
          truncate_embeddings: bool = False, intermediate_dir: str | Path | None = None,
          lazy: bool = False, resume: bool = False, stats_dir: str | Path | None = None) -> MergeResult:
    """Merge to `out_dir` (written atomically: complete, or not at all).

    A multi-step recipe (several YAML documents) runs every step in order; named steps are
    written to `intermediate_dir/<name>` and, with `lazy`, skipped when already complete.
    With `resume`, an interrupted merge into `out_dir` continues from its verified tensors.
    Data-aware methods (fisher, regmean) first compute their calibration statistics, cached in
    `stats_dir` (default: see mergesmith.datamerge.prepare.default_stats_dir).
    """
    from mergesmith.multistep import is_complete, plan_steps, reopen

    out_dir = Path(out_dir)
    recipes = [recipe] if isinstance(recipe, Recipe) else load_recipes(recipe)
    root = _base_dir(recipe, base_dir)
    for parsed in recipes:  # a missing calibration file fails before any step runs
        check_recipe(parsed, root)
    inter = Path(intermediate_dir) if intermediate_dir is not None else None
    steps = plan_steps(recipes, root, inter, allow_pickle=allow_pickle, truncate_embeddings=truncate_embeddings)
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
                                  truncate_vocab=truncate_embeddings)
        the_plan = _prepared(the_plan, root, device=device, stats_dir=stats_dir,
                             truncate_embeddings=truncate_embeddings)
        # an intermediate that is not complete (an earlier run's, or a changed step) is replaced
        result = _merge_plan(the_plan, target, overwrite=step.out_dir is not None or overwrite, **options)
        if step.recipe.name:
            finished[step.recipe.name] = target
    assert result is not None
    return result


def _fingerprint(the_plan: Plan, seed: int, device: str) -> str:
    """What makes two runs produce the same bytes: recipe, seed, device and the input files."""
    from mergesmith.multistep import recipe_hash

    parts = [recipe_hash(the_plan.recipe), str(seed), device]
    for ref, ckpt in sorted(the_plan.checkpoints.items()):
        files = sorted({meta.file for meta in ckpt.tensors.values()})
        parts.append(ref + "".join(f"|{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()))
    return "\n".join(parts)


def _merge_plan(the_plan: Plan, out_dir: Path, *, shard_size: str | int, overwrite: bool, device: str,
                threads: int, seed: int, progress: bool | None, resume: bool = False) -> MergeResult:
    _check_output_location(out_dir, the_plan)
    for warning in the_plan.warnings:
        log.warning(warning)
    size = parse_size(shard_size)
    executor = Executor(the_plan, device=device, seed=seed, threads=threads)
    specs = [OutSpec(op.name, op.out_dtype, op.shape) for op in the_plan.ops]
    writer = ShardedWriter(out_dir, specs, shard_size=size, overwrite=overwrite, resume=resume,
                           fingerprint=_fingerprint(the_plan, seed, device)).open()
    for note in writer.notes:
        log.warning(note)
    todo = [s for s in specs if s.name not in writer.completed]
    bar = Progress(len(todo), sum(s.nbytes for s in todo), enabled=progress)
    try:
        executor.run(writer.write, bar.advance, skip=writer.completed)
        _write_side_files(writer, the_plan, seed)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
        for ckpt in the_plan.checkpoints.values():
            ckpt.close()
    return MergeResult(out_dir, the_plan, len(specs), sum(s.nbytes for s in specs))


def _write_side_files(writer: ShardedWriter, the_plan: Plan, seed: int) -> None:
    from mergesmith.io.card import SIDE_FILES, manifest, model_card

    recipe = the_plan.recipe
    writer.add_file("config.json", json.dumps(the_plan.out_config, indent=2))
    source = the_plan.checkpoints[the_plan.config_source].path
    from mergesmith.tokenizer import output_tokenizer_files

    # Not empty when the tokenizer or chat template changes: then it is every side file, so no
    # stale file of the config source's tokenizer (added_tokens.json, tokenizer.model) is kept.
    replaced = output_tokenizer_files(the_plan)
    if source is not None and not replaced:
        for name in SIDE_FILES:
            if (source / name).is_file():
                writer.add_file(name, (source / name).read_bytes())
    for name, content in replaced.items():
        writer.add_file(name, content)
    recipe_yaml = recipe.to_yaml()
    models = recipe.referenced_models()
    writer.add_file("README.md", model_card(recipe_yaml, recipe.merge_method, models, recipe.base_model))
    writer.add_file("mergesmith_recipe.yaml", recipe_yaml)
    inputs = {ref: ckpt.path for ref, ckpt in the_plan.checkpoints.items()}
    from mergesmith.multistep import recipe_hash

    writer.add_file("mergesmith_manifest.json",
                    manifest(inputs, recipe.merge_method, seed, len(the_plan.ops), the_plan.bytes_written,
                             extra={"recipe_sha256": recipe_hash(recipe)}))


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
