"""Multi-step recipes (mergekit-multi's format): several YAML documents in one file.

Each document may have a `name`; a later document uses an earlier one's output by giving its
name as a model. The output of the command is the final step: the one document without a
name or, when every document has a name (mergekit-multi's files and mergekit's old mega.yml
example), the last document of the file. Steps run in dependency order; every other step
writes to `--intermediate-dir/<name>` (where mergekit-multi puts it), and with `--lazy` a step
whose output is already complete for the same recipe is skipped. A named step that no later
step uses is still run into `--intermediate-dir`, as mergekit-multi does, with a warning.

The whole chain is planned before the first step runs: a named step's plan stands in for its
(not yet written) output as a virtual checkpoint of the planned tensor names, shapes and dtypes
and config, so a mistake in the last step fails in a second, not after the first merge.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from mergesmith.errors import OptionsError, RecipeError
from mergesmith.io.checkpoint import Checkpoint, open_checkpoint
from mergesmith.io.models import open_model
from mergesmith.io.safetensors_format import TensorMeta, tensor_nbytes
from mergesmith.plan.build import build_plan
from mergesmith.plan.ops import Plan
from mergesmith.recipe.model import Recipe

log = logging.getLogger("mergesmith")


@dataclass
class Step:
    recipe: Recipe
    plan: Plan
    out_dir: Path | None  # None for the final step (written to the command's output)


def recipe_hash(recipe: Recipe) -> str:
    return hashlib.sha256(recipe.to_yaml().encode()).hexdigest()


def final_step(recipes: list[Recipe]) -> Recipe:
    """The step whose output is the command's output: the unnamed one, else the last document."""
    finals = [r for r in recipes if r.name is None]
    if len(finals) > 1:
        raise RecipeError(f"a multi-step recipe has at most one step without a `name:` (the final merge); "
                          f"this one has {len(finals)}", hint="name every intermediate step")
    return finals[0] if finals else recipes[-1]


def order_steps(recipes: list[Recipe]) -> list[Recipe]:
    """Dependency order, the final step last; errors for duplicate names, cycles, more than one
    unnamed step, and a final step that another step uses."""
    named = {}
    for recipe in recipes:
        if recipe.name is not None:
            if recipe.name in named:
                raise RecipeError(f'two steps are named "{recipe.name}"', hint="give every step a distinct name")
            named[recipe.name] = recipe
    final = final_step(recipes)
    users = [r.name or "<final>" for r in recipes if final.name and final.name in r.referenced_models()]
    if users:
        raise RecipeError(f'step "{final.name}" is the last document, so its output is the final merge, but '
                          f"step(s) {', '.join(users)} use it",
                          hint="put the final merge last in the file (or leave its `name:` out)")
    ordered: list[Recipe] = []
    state: dict[int, str] = {}

    def visit(recipe: Recipe, trail: tuple[str, ...]) -> None:
        key = id(recipe)
        label = recipe.name or "<final>"
        if state.get(key) == "done":
            return
        if state.get(key) == "visiting":
            raise RecipeError(f"steps refer to each other in a cycle: {' -> '.join((*trail, label))}")
        state[key] = "visiting"
        for ref in recipe.referenced_models():
            if ref in named:
                visit(named[ref], (*trail, label))
        state[key] = "done"
        ordered.append(recipe)

    for recipe in [r for r in recipes if r is not final] + [final]:
        visit(recipe, ())
    return ordered


def unused_steps(recipes: list[Recipe]) -> list[str]:
    """Named steps that neither are the final step nor feed another step."""
    final = final_step(recipes)
    return [r.name for r in recipes if r.name and r is not final
            and not any(r.name in other.referenced_models() for other in recipes)]


def virtual_checkpoint(name: str, plan: Plan, path: Path | None) -> Checkpoint:
    """The planned output of a step, as a checkpoint of headers only."""
    tensors = {op.name: TensorMeta(op.name, Path(), op.out_dtype, op.shape, 0, tensor_nbytes(op.out_dtype, op.shape))
               for op in plan.ops}
    return Checkpoint(ref=name, path=path, config=plan.out_config, tensors=tensors)


def plan_steps(recipes: list[Recipe], base_dir: Path | None, intermediate_dir: Path | None,
               *, allow_pickle: bool = False, truncate_embeddings: bool = False,
               allow_crimes: bool = False) -> list[Step]:
    """Plan every step, in order, before anything runs."""
    if len(recipes) > 1 and intermediate_dir is None:
        raise OptionsError(f"this recipe has {len(recipes)} steps; intermediate results need a place",
                           hint="pass --intermediate-dir DIR")
    virtual: dict[str, Checkpoint] = {}
    opened: dict[str, Checkpoint] = {}
    steps = []
    final = final_step(recipes)
    for name in unused_steps(recipes) if len(recipes) > 1 else []:
        log.warning(f'step "{name}" is used by no later step: it is merged into '
                    f"{intermediate_dir / name if intermediate_dir else name}, as mergekit-multi does")
    for recipe in order_steps(recipes) if len(recipes) > 1 else recipes:
        checkpoints = {}
        for ref in recipe.referenced_models():
            if ref in virtual:
                checkpoints[ref] = virtual[ref]
            else:
                if ref not in opened:
                    opened[ref] = open_model(ref, base_dir, allow_pickle=allow_pickle)
                checkpoints[ref] = opened[ref]
        plan = build_plan(recipe, checkpoints, truncate_vocab=truncate_embeddings, allow_crimes=allow_crimes)
        out_dir = intermediate_dir / recipe.name if recipe.name and recipe is not final and intermediate_dir else None
        if recipe.name:
            virtual[recipe.name] = virtual_checkpoint(recipe.name, plan, out_dir)
        steps.append(Step(recipe, plan, out_dir))
    return steps


def is_complete(out_dir: Path, recipe: Recipe) -> bool:
    """A finished output of this very recipe (for --lazy)."""
    manifest = out_dir / "mergesmith_manifest.json"
    try:
        return json.loads(manifest.read_text()).get("recipe_sha256") == recipe_hash(recipe)
    except (OSError, ValueError):
        return False


def reopen(step: Step, finished: dict[str, Path], base_dir: Path | None, allow_pickle: bool) -> dict[str, Checkpoint]:
    """The step's inputs from disk, now that earlier steps have written theirs."""
    out = {}
    for ref in step.recipe.referenced_models():
        if ref in finished:
            out[ref] = open_checkpoint(ref, finished[ref], allow_pickle=allow_pickle)
        else:
            out[ref] = open_model(ref, base_dir, allow_pickle=allow_pickle)
    return out
