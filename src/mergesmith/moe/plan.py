"""Plan a MoE build from headers: every output tensor, where it comes from, and checks.

Everything that can be checked before reading a tensor is checked here: the output
architecture takes the base's layers, every expert has the base's architecture and MLP
shapes, and the output's names, dtypes and shapes are fixed (so the writer can lay out its
shards up front).
"""

from __future__ import annotations

from dataclasses import dataclass

from mergesmith.errors import CheckpointError, IncompatibleModelsError, RecipeError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.safetensors_format import SAFETENSORS_NAMES
from mergesmith.io.writer import OutSpec
from mergesmith.moe.arch import MLP_PROJS, OutputArch, check_base_tensors
from mergesmith.moe.config import Expert, MoEConfig


@dataclass(frozen=True)
class OutTensor:
    """One output tensor: copied from `model`'s `name`, or a row block of router vectors."""

    spec: OutSpec
    model: str | None = None
    name: str | None = None
    expert: Expert | None = None  # its noise_scale and residual_scale apply
    residual: bool = False  # a down projection (writes into the residual stream)
    gate: tuple[int, str] | None = None  # (layer, "router" | "shared") for gate tensors


def out_dtype(config: MoEConfig, base: Checkpoint) -> str:
    """Safetensors dtype name of the output's float tensors: the config's, else the base's."""
    if config.dtype:
        return SAFETENSORS_NAMES[config.dtype]
    floats = [m.dtype for m in base.tensors.values() if m.is_float]
    return max(set(floats), key=floats.count) if floats else "F32"


def _layer_rests(base: Checkpoint, layer: int) -> list[str]:
    prefix = f"{base.layout.container}.{layer}."
    return [n[len(prefix):] for n in base.tensors if n.startswith(prefix)]


def check_experts(config: MoEConfig, inputs: dict[str, Checkpoint], *, allow_identical: bool = False) -> None:
    """Every expert must be the base's architecture and size (MLPs of the same shapes)."""
    base = inputs[config.base_model]
    _check_base_mlps(base, config.base_model)
    groups = [("experts", config.experts), ("shared_experts", config.shared_experts or [])]
    for key, experts in groups:
        for index, expert in enumerate(experts):
            _check_expert(base, inputs[expert.source_model], f"{key}.{index} ({expert.source_model!r})")
    sources = {e.source_model for e in config.experts}
    if len(config.experts) > 1 and len(sources) == 1 and not allow_identical:
        raise RecipeError(
            f"experts: all {len(config.experts)} experts are the same model {sources.pop()!r}; the MoE would "
            "compute the same as that model at several times the cost",
            hint="use different fine-tunes as experts, or pass --allow-identical-experts if you will "
                 "train the MoE further")


def _check_base_mlps(base: Checkpoint, ref: str) -> None:
    if base.layout.container is None or base.num_layers == 0:
        raise CheckpointError(f"base_model {ref!r}: no numbered layers found in its tensors",
                              hint="a MoE base is a Llama, Mistral or Qwen model")
    for layer in range(base.num_layers):
        for proj in MLP_PROJS:
            name = base.layout.layer_name(layer, f"mlp.{proj}.weight")
            if name not in base.tensors:
                raise CheckpointError(f"base_model {ref!r}: has no tensor {name!r}; a MoE is built from "
                                      f"MLPs with {', '.join(MLP_PROJS)}",
                                      hint="use a Llama, Mistral or Qwen model as the base")


def _check_expert(base: Checkpoint, ckpt: Checkpoint, label: str) -> None:
    base_type, its_type = base.config.get("model_type"), ckpt.config.get("model_type")
    if base_type != its_type:
        raise IncompatibleModelsError(
            f"{label}: is a {its_type!r} model but the base is {base_type!r}",
            hint="experts must have the base model's architecture and size (fine-tunes of the base)")
    if ckpt.num_layers != base.num_layers:
        raise IncompatibleModelsError(
            f"{label}: has {ckpt.num_layers} layers but the base has {base.num_layers}",
            hint="experts must have the base model's architecture and size (fine-tunes of the base)")
    for layer in range(base.num_layers):
        for proj in MLP_PROJS:
            name = base.layout.layer_name(layer, f"mlp.{proj}.weight")
            theirs = ckpt.tensors.get(name)
            if theirs is None or theirs.shape != base.tensors[name].shape:
                got = "is missing" if theirs is None else f"has shape {list(theirs.shape)}"
                raise IncompatibleModelsError(
                    f"{label}: tensor {name!r} {got}; the base's is {list(base.tensors[name].shape)}",
                    hint="experts must have the base model's architecture and size (fine-tunes of the base)")


def plan_outputs(config: MoEConfig, arch: OutputArch, inputs: dict[str, Checkpoint], dtype: str) -> list[OutTensor]:
    """Every output tensor in file order: embeddings, then layer by layer, then the head."""
    base = inputs[config.base_model]
    if base.layout.container is None or base.num_layers == 0:
        raise CheckpointError(f"base_model {config.base_model!r}: no numbered layers found in its tensors",
                              hint="give a decoder model (Llama, Mistral, Qwen2) as base_model")
    outs = [_copy(base, config.base_model, n, dtype) for n in base.tensors if base.layout.role(n).role == "pre"]
    for layer in range(base.num_layers):
        outs += _layer_outputs(config, arch, base, layer, dtype)
    outs += [_copy(base, config.base_model, n, dtype) for n in base.tensors if base.layout.role(n).role == "post"]
    return outs


def _layer_outputs(config: MoEConfig, arch: OutputArch, base: Checkpoint, layer: int, dtype: str) -> list[OutTensor]:
    rests = _layer_rests(base, layer)
    check_base_tensors(arch, config.base_model, set(rests))
    prefix = f"{base.layout.container}.{layer}"
    outs = [_copy(base, config.base_model, f"{prefix}.{r}", dtype) for r in rests if not r.startswith("mlp.")]
    hidden = base.tensors[f"{prefix}.mlp.gate_proj.weight"].shape[1]
    for index, expert in enumerate(config.experts):
        outs += _expert_mlp(base, expert, prefix, dtype, lambda p, i=index: arch.expert_name(prefix, i, p))
    for expert in config.shared_experts or []:
        outs += _expert_mlp(base, expert, prefix, dtype, lambda p: arch.shared_name(prefix, p))
    outs.append(OutTensor(OutSpec(arch.router_name(prefix), dtype, (len(config.experts), hidden)),
                          gate=(layer, "router")))
    if config.shared_experts:
        outs.append(OutTensor(OutSpec(arch.shared_gate_name(prefix), dtype, (1, hidden)), gate=(layer, "shared")))
    return outs


def _expert_mlp(base: Checkpoint, expert: Expert, prefix: str, dtype: str, out_name) -> list[OutTensor]:
    outs = []
    for proj in MLP_PROJS:
        name = f"{prefix}.mlp.{proj}.weight"
        spec = OutSpec(out_name(proj), dtype, base.tensors[name].shape)
        outs.append(OutTensor(spec, expert.source_model, name, expert, residual=proj == "down_proj"))
    return outs


def _copy(base: Checkpoint, ref: str, name: str, dtype: str) -> OutTensor:
    meta = base.tensors[name]
    return OutTensor(OutSpec(name, dtype if meta.is_float else meta.dtype, meta.shape), ref, name)
