"""Modules of multi-module models (vision-language models), as mergekit 0.1.5 names them.

mergekit describes a vision-language model as modules, each a layer stack of its own:
`text_decoder`, `vision_tower` (Llama 4: `vision_model`) and `multi_modal_projector`. A recipe's
`modules:` merges each with its own models or slices and parameters; a `models:` recipe merges
every module with the same models, each along its own layers (a gradient runs over the vision
blocks as it does over the text layers). Tensors belong to the module whose name prefix is the
longest match; a module's layer stack is found from its own tensor names (as for whole models),
so no table of per-layer tensor names is needed, only these prefixes (both the older
`language_model.` and transformers 5's `model.language_model.` spellings).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.io.checkpoint import Checkpoint

TEXT = "text_decoder"


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    prefixes: tuple[str, ...]
    layers_key: str | None  # dotted config.json path of its layer count (the text decoder's: found)


_LLAVA_LIKE = (
    ModuleSpec(TEXT, ("language_model.", "model.language_model.", "lm_head."), None),
    ModuleSpec("vision_tower", ("vision_tower.", "model.vision_tower."), "vision_config.num_hidden_layers"),
    ModuleSpec("multi_modal_projector", ("multi_modal_projector.", "model.multi_modal_projector."), None),
)
_QWEN2_VL = (
    ModuleSpec(TEXT, ("model.", "model.language_model.", "lm_head."), None),
    ModuleSpec("vision_tower", ("visual.", "model.visual."), "vision_config.depth"),
    ModuleSpec("multi_modal_projector", ("visual.merger.", "model.visual.merger."), None),
)
_QWEN3_VL = (
    ModuleSpec(TEXT, ("model.language_model.", "lm_head."), None),
    ModuleSpec("vision_tower", ("model.visual.",), "vision_config.depth"),
    ModuleSpec("multi_modal_projector", ("model.visual.merger.", "model.visual.deepstack_merger_list."), None),
)
_LLAMA4 = (
    _LLAVA_LIKE[0],
    ModuleSpec("vision_model", ("vision_model.", "model.vision_model."), "vision_config.num_hidden_layers"),
    _LLAVA_LIKE[2],
)
# config.json `architectures[0]` -> its modules, for the architectures mergekit 0.1.5 gives modules.
ARCH_MODULES: dict[str, tuple[ModuleSpec, ...]] = {
    "Mistral3ForConditionalGeneration": _LLAVA_LIKE,
    "Gemma3ForConditionalGeneration": _LLAVA_LIKE,
    "Qwen2VLForConditionalGeneration": _QWEN2_VL,
    "Qwen2_5_VLForConditionalGeneration": _QWEN2_VL,
    "Qwen3VLForConditionalGeneration": _QWEN3_VL,
    "Qwen3VLMoeForConditionalGeneration": _QWEN3_VL,
    "Llama4ForConditionalGeneration": _LLAMA4,
}


def architecture_name(ckpt: Checkpoint) -> str | None:
    names = ckpt.config.get("architectures")
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


def modules_of(ckpt: Checkpoint) -> tuple[ModuleSpec, ...] | None:
    """The modules of a model's architecture, or None for a single-module (decoder-only) model."""
    return ARCH_MODULES.get(architecture_name(ckpt) or "")


def module_of(name: str, modules: tuple[ModuleSpec, ...]) -> str | None:
    """The module a tensor belongs to: the one with the longest matching prefix."""
    best, length = None, -1
    for spec in modules:
        for prefix in spec.prefixes:
            if name.startswith(prefix) and len(prefix) > length:
                best, length = spec.name, len(prefix)
    return best


def check_module_names(names: list[str], ckpt: Checkpoint) -> tuple[ModuleSpec, ...]:
    """The model's modules, refusing a `modules:` recipe on a model without them or a misspelled name."""
    modules = modules_of(ckpt)
    arch = architecture_name(ckpt) or "a model without `architectures` in its config.json"
    if modules is None:
        known = ", ".join(sorted(ARCH_MODULES))
        raise RecipeError(f"'modules:' needs a multi-module model, but {ckpt.ref!r} is {arch}, which mergesmith (like "
                          f"mergekit) merges as one module", hint=f"use 'models:' or 'slices:' for it; 'modules:' works "
                                                                  f"for {known}")
    known_names = [m.name for m in modules]
    for name in names:
        if name not in known_names:
            raise RecipeError(f"modules: {arch} has no module {name!r}{did_you_mean(name, known_names)}",
                              hint=f"its modules are {', '.join(known_names)}")
    return modules


def module_view(ckpt: Checkpoint, module: str, modules: tuple[ModuleSpec, ...]) -> Checkpoint:
    """The module's tensors of a model, as a checkpoint of headers (its own layer stack)."""
    tensors = {n: meta for n, meta in ckpt.tensors.items() if module_of(n, modules) == module}
    return Checkpoint(ref=ckpt.ref, path=ckpt.path, config={}, tensors=tensors)


def set_module_layers(config: dict[str, Any], spec: ModuleSpec, count: int) -> None:
    """Write a module's output layer count into config.json (the text decoder's is done with
    the other per-layer settings; a module without a key, like the projector, has none)."""
    if spec.layers_key is None:
        return
    *parents, key = spec.layers_key.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and key in node:
        node[key] = count


@dataclass
class Group:
    """The inputs merged along one layer stack: a whole model's, or one module's."""

    module: ModuleSpec | None
    slices: list[Any]  # SliceSpec
    views: dict[str, Checkpoint]  # the models as seen by this group (one module's tensors)


def plan_groups(recipe: Any, checkpoints: dict[str, Checkpoint]) -> tuple[list[Group], list[str]]:
    """The recipe's groups and warnings: one group for a single-module model; one per module
    for `modules:`, and for `models:` on a multi-module model (mergekit merges each module of it
    with the same models); `slices:` stay one group (a mergesmith extension: mergekit refuses
    `slices:` on multi-module models; here they slice the main layer stack)."""
    from mergesmith.plan.slices import group_slices

    source = recipe.base_model or recipe.referenced_models()[0]
    if not recipe.modules and not (recipe.models and modules_of(checkpoints[source])):
        return [Group(None, group_slices(recipe.models, recipe.slices, recipe.base_model, None, checkpoints),
                      checkpoints)], []
    defs = recipe.modules or {spec.name: None for spec in modules_of(checkpoints[source]) or ()}
    modules = check_module_names(list(defs), checkpoints[source])
    specs = {m.name: m for m in modules}
    groups = []
    for name, mdef in defs.items():
        views = {ref: module_view(ckpt, name, modules) for ref, ckpt in checkpoints.items()}
        models, slices, params = (recipe.models, None, None) if mdef is None else (mdef.models, mdef.slices,
                                                                                   mdef.parameters)
        groups.append(Group(specs[name], group_slices(models, slices, recipe.base_model, params, views,
                                                      where=f"modules.{name}."), views))
    return groups, _left_out(defs, modules, checkpoints[source])


def _left_out(defs: dict[str, Any], modules: tuple[ModuleSpec, ...], ckpt: Checkpoint) -> list[str]:
    """Warnings for the tensors no listed module takes: mergekit writes only the listed modules."""
    counts: dict[str | None, int] = {}
    for name in ckpt.tensors:
        module = module_of(name, modules)
        if module not in defs:
            counts[module] = counts.get(module, 0) + 1
    return [f"module {name or '(none)'} of {ckpt.ref!r} is not in the recipe's modules: its {n} tensors are not "
            "written, as in mergekit (list it under `modules:` to merge it)" for name, n in counts.items()]
