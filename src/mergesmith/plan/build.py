"""Recipe + checkpoint headers -> Plan: every output tensor fully resolved before any is read.

For each output tensor the plan holds its input tensors (model and name), the base, the
method's parameters resolved for that tensor (filters, gradients, precedence), its shape and
dtypes. Everything checkable from headers is checked here: missing tensors, shape mismatches,
layer ranges, model counts, parameter values, filters that match nothing.

Layout follows mergekit: a `models:` recipe is one slice over all layers (with the base
added as an input when it is not listed); embeddings take the first slice's sources and
settings at t = 0; layers of a slice of L layers get t = j / (L - 1) (t = 1 when L = 1);
the final norm and head take the last slice's sources at t = 0. A vision-language model's
`modules:` (and a `models:` recipe on one) is planned module by module, each along its own
layer stack, with the same rules (see modules.py).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from mergesmith.arch import LAYER_COUNT_KEYS, head_and_embedding, is_embedding, is_head
from mergesmith.errors import IncompatibleModelsError, RecipeError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.models import open_model
from mergesmith.io.safetensors_format import SAFETENSORS_NAMES, TORCH_NAMES
from mergesmith.methods import get_method
from mergesmith.methods.base import MethodSpec
from mergesmith.plan.checks import (
    check_architectures,
    check_same_folders,
    check_vocab_config,
    check_widths,
)
from mergesmith.plan.modules import TEXT, plan_groups, set_module_layers
from mergesmith.plan.ops import Plan, TensorOp, TensorRef
from mergesmith.plan.slices import SliceSpec, SourceSpec
from mergesmith.plan.tensor_params import build_params
from mergesmith.recipe.model import FilterRule, Recipe
from mergesmith.tokenizer import plan_vocabulary


def build_plan(recipe: Recipe, checkpoints: dict[str, Checkpoint], *, truncate_vocab: bool = False,
               allow_crimes: bool = False) -> Plan:
    """Plan a single-step recipe over opened checkpoints (headers only)."""
    method = get_method(recipe.merge_method)
    groups, warnings = plan_groups(recipe, checkpoints)
    slices = [slc for group in groups for slc in group.slices]
    config_source = recipe.base_model or slices[0].sources[0].model
    check_same_folders(slices, checkpoints)
    crimes = check_architectures(checkpoints, config_source, allow_crimes)
    check_widths(slices, checkpoints, config_source)
    vocab = plan_vocabulary(recipe, checkpoints, config_source, truncate=truncate_vocab)
    ops: list[TensorOp] = []
    text: _OpBuilder | None = None
    layers: dict[Any, int] = {}
    for group in groups:
        builder = _OpBuilder(recipe, method, group.views, vocab)
        ops.extend(builder.non_layer_ops("pre", group.slices[0]))
        for slc in group.slices:
            ops.extend(builder.slice_ops(slc))
        ops.extend(builder.non_layer_ops("post", group.slices[-1]))
        warnings += builder.warnings
        if group.module is None or group.module.name == TEXT:
            text = builder
        else:
            layers[group.module] = builder.out_layer
    _check_filters(recipe, ops)
    out_config = _output_config(checkpoints, config_source, text.layer_origins if text else None, ops)
    for module, count in layers.items():
        set_module_layers(out_config, module, count)
    if vocab is not None:
        vocab.update_config(out_config)
    check_vocab_config(out_config, ops, config_source)
    num_layers = text.out_layer if text else 0
    return Plan(recipe, method, checkpoints, ops, config_source, out_config, num_layers,
                crimes + warnings + list(getattr(vocab, "warnings", [])), vocab)


class _OpBuilder:
    def __init__(self, recipe: Recipe, method: MethodSpec, checkpoints: dict[str, Checkpoint], vocab: Any):
        self.recipe, self.method, self.checkpoints = recipe, method, checkpoints
        self.vocab = vocab
        self.out_layer = 0
        self.layer_origins: list[tuple[str, int]] = []
        self.warnings: list[str] = []
        first = next(iter(checkpoints.values()))
        self.out_layout = checkpoints[recipe.base_model].layout if recipe.base_model else first.layout

    def non_layer_ops(self, role: str, slc: SliceSpec) -> list[TensorOp]:
        lead = self.checkpoints[slc.sources[0].model]
        names = [n for n in lead.tensors if lead.layout.role(n).role == role]
        if role == "post":
            self._warn_dropped_heads(slc, names)
        ops = []
        for name in names:
            refs = [self._ref(src.model, name, role) for src in slc.sources]
            if any(r is None for r in refs):
                continue  # a head only some models have: tied embeddings elsewhere (see _ref)
            ops.append(self._op(name, slc, refs, role, None, 0.0))  # type: ignore[arg-type]
        return ops

    def _warn_dropped_heads(self, slc: SliceSpec, names: list[str]) -> None:
        for src in slc.sources[1:]:
            heads = [n for n in self.checkpoints[src.model].tensors if is_head(n) and n not in names]
            if heads:
                self.warnings.append(
                    f"model {src.model!r} has its own {heads[0]} but {slc.sources[0].model!r} ties it to the "
                    "embeddings, so the output does too and that head is not merged; put an untied model first "
                    "to merge heads")

    def _ref(self, model: str, name: str, role: str) -> TensorRef | None:
        ckpt = self.checkpoints[model]
        if name in ckpt.tensors:
            return TensorRef(model, name)
        if role == "post" and is_head(name):
            head, embed = head_and_embedding(ckpt.tensors)
            if head is None and embed is not None:
                return TensorRef(model, embed)  # tied embeddings: the embedding is the head
        raise IncompatibleModelsError(
            f"model {model!r} ({ckpt.where}) has no tensor {name!r}, which the other models have",
            hint="merge models of the same architecture, or use slices to take this part from one model")

    def slice_ops(self, slc: SliceSpec) -> list[TensorOp]:
        ops = []
        length = slc.length
        lead = slc.sources[0]
        lead_ckpt = self.checkpoints[lead.model]
        for j in range(length):
            t = j / (length - 1) if length > 1 else 1.0
            rests = _layer_rests(lead_ckpt, lead.start + j)
            for rest in rests:
                refs = [self._layer_ref(src, j, rest) for src in slc.sources]
                out_name = self.out_layout.layer_name(self.out_layer, rest)
                ops.append(self._op(out_name, slc, refs, "layer", self.out_layer, t))
            self.layer_origins.append((lead.model, lead.start + j))
            self.out_layer += 1
        return ops

    def _layer_ref(self, src: SourceSpec, j: int, rest: str) -> TensorRef:
        ckpt = self.checkpoints[src.model]
        name = ckpt.layout.layer_name(src.start + j, rest)
        if name not in ckpt.tensors:
            raise IncompatibleModelsError(
                f"model {src.model!r} ({ckpt.where}) has no tensor {name!r}; its layer "
                f"{src.start + j} differs from the other models' layers",
                hint="merge models of the same architecture and size")
        return TensorRef(src.model, name)

    def _op(self, name: str, slc: SliceSpec, refs: list[TensorRef], role: str, layer: int | None, t: float) -> TensorOp:
        metas = [self.checkpoints[r.model].tensors[r.name] for r in refs]
        vocab = self.vocab if self.vocab is not None and self.vocab.applies_to(name, refs) else None
        shape = vocab.shape(name, refs) if vocab is not None else self._common_shape(name, refs, metas)
        base_model = slc.base if self.method.uses_base else None
        base = next((r for r in refs if r.model == base_model), None)
        inputs = [r for r in refs if r is not base]
        sources = {s.model: s for s in slc.sources}
        params = build_params(self.method, self.recipe, slc, [sources[r.model] for r in inputs], name,
                              [r.name for r in inputs], t)
        copy_only = not all(m.is_float for m in metas)
        return TensorOp(name, self.method, inputs, base, params, shape, self._out_dtype(metas), role, layer, t,
                        copy_only, vocab)

    def _common_shape(self, name: str, refs: list[TensorRef], metas: list[Any]) -> tuple[int, ...]:
        shapes = {m.shape for m in metas}
        if len(shapes) == 1:
            return metas[0].shape
        listing = ", ".join(f"{r.model}: {list(m.shape)}" for r, m in zip(refs, metas))
        trailing = {m.shape[1:] for m in metas}
        if (is_embedding(name) or is_head(name)) and len(trailing) == 1:
            raise IncompatibleModelsError(
                f"tensor {name!r}: the models have different vocabulary sizes ({listing})",
                hint="set `tokenizer_source: base` (or union, or a model) in the recipe to align "
                     "vocabularies, or pass --truncate-embeddings to keep the common prefix")
        raise IncompatibleModelsError(f"tensor {name!r}: shapes differ between models ({listing})",
                                      hint="merge models of the same architecture and size")

    def _out_dtype(self, metas: list[Any]) -> str:
        if not all(m.is_float for m in metas):
            return metas[0].dtype
        wanted = self.recipe.out_dtype or self.recipe.dtype
        if wanted:
            return SAFETENSORS_NAMES[wanted]
        dtypes = {m.dtype for m in metas}
        return dtypes.pop() if len(dtypes) == 1 else "F32"


def _layer_rests(ckpt: Checkpoint, layer: int) -> list[str]:
    prefix = f"{ckpt.layout.container}.{layer}."
    return [n[len(prefix):] for n in ckpt.tensors if n.startswith(prefix)]


def _check_filters(recipe: Recipe, ops: list[TensorOp]) -> None:
    """A filter that matches no tensor is almost always a typo; mergekit ignores it silently."""
    filters: set[str] = set()

    def collect(setting: Any) -> None:
        items = setting if isinstance(setting, list) else [setting]
        filters.update(i.filter for i in items if isinstance(i, FilterRule) and i.filter not in (None, "*"))

    scopes = [recipe.parameters] + [m.parameters for m in recipe.models or []]
    for slc in recipe.slices or []:
        scopes += [slc.parameters] + [s.parameters for s in slc.sources]
    for scope in scopes:
        for setting in (scope or {}).values():
            collect(setting)
    names = {op.name for op in ops} | {r.name for op in ops for r in op.refs()}
    dead = sorted(f for f in filters if not any(f in n for n in names))
    if dead:
        sample = sorted(names)[:3]
        raise RecipeError(
            f"filter(s) {', '.join(repr(f) for f in dead)} match no tensor of these models "
            f"(a filter is a substring of a tensor name, e.g. {', '.join(sample)})",
            hint="fix the filter's spelling; `mergesmith plan --explain` lists the tensor names")


def _output_config(checkpoints: dict[str, Checkpoint], source: str, origins: list[tuple[str, int]] | None,
                   ops: list[TensorOp]) -> dict[str, Any]:
    """The config source's config.json with the output's layer count and dtype (`origins`:
    where each output layer of the main stack comes from; None when no such stack is merged)."""
    config = copy.deepcopy(checkpoints[source].config)
    target = config.get("text_config") if not any(k in config for k in LAYER_COUNT_KEYS) else config
    target = target if isinstance(target, dict) else config
    for key in LAYER_COUNT_KEYS:
        if key in target and origins is not None:
            target[key] = len(origins)
    types = target.get("layer_types")
    if isinstance(types, list) and origins is not None:
        target["layer_types"] = [_layer_type(checkpoints[m], layer) for m, layer in origins]
    float_dtypes = {op.out_dtype for op in ops if not op.copy_only}
    if len(float_dtypes) == 1:
        name = TORCH_NAMES[float_dtypes.pop()]
        for key in ("torch_dtype", "dtype"):
            if key in config or key == "torch_dtype":
                config[key] = name
    return config


def _layer_type(ckpt: Checkpoint, layer: int) -> Any:
    cfg = ckpt.config.get("text_config") if "layer_types" not in ckpt.config else ckpt.config
    types = (cfg or {}).get("layer_types")
    return types[layer] if isinstance(types, list) and layer < len(types) else "full_attention"


def open_inputs(recipe: Recipe, base_dir: Path | None, *, allow_pickle: bool = False) -> dict[str, Checkpoint]:
    """Resolve and index every model a recipe names (headers only)."""
    return {ref: open_model(ref, base_dir, allow_pickle=allow_pickle) for ref in recipe.referenced_models()}
