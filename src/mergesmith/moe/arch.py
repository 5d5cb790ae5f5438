"""Output architectures of a MoE build: which inputs each takes, its tensor names, its config.

Expert tensors are written in the per-expert layout of the published checkpoints
(`block_sparse_moe.experts.3.w1.weight` for Mixtral, `mlp.experts.3.gate_proj.weight` for the
Qwen MoEs): every MoE loader (transformers 4 and 5, vLLM, llama.cpp's converter) reads it, and
each expert tensor streams straight from one input tensor. transformers 5 fuses them on load.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from mergesmith.errors import IncompatibleModelsError, RecipeError, did_you_mean
from mergesmith.moe.config import MoEConfig

MLP_PROJS = ("gate_proj", "up_proj", "down_proj")
_ATTN = {f"self_attn.{p}_proj.weight" for p in "qkvo"} | {"input_layernorm.weight", "post_attention_layernorm.weight"}
_QKV_BIAS = {f"self_attn.{p}_proj.bias" for p in "qkv"}
_QK_NORM = {"self_attn.q_norm.weight", "self_attn.k_norm.weight"}
# Keys of a Llama/Mistral/Qwen config.json that mean the same in the MoE config.
_SHARED_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "hidden_act", "max_position_embeddings", "initializer_range",
    "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
    "bos_token_id", "eos_token_id", "pad_token_id", "attention_dropout", "use_cache",
)


@dataclass(frozen=True)
class OutputArch:
    key: str  # model_type of the output
    title: str
    hf_class: str
    model_types: tuple[str, ...]  # input model types it takes
    shared_experts: int  # how many shared experts it has (exactly)
    layer_tensors: frozenset[str]  # non-MLP tensors a layer may have

    def expert_name(self, layer_prefix: str, expert: int, proj: str) -> str:
        if self.key == "mixtral":
            w = {"gate_proj": "w1", "down_proj": "w2", "up_proj": "w3"}[proj]
            return f"{layer_prefix}.block_sparse_moe.experts.{expert}.{w}.weight"
        return f"{layer_prefix}.mlp.experts.{expert}.{proj}.weight"

    def router_name(self, layer_prefix: str) -> str:
        block = "block_sparse_moe" if self.key == "mixtral" else "mlp"
        return f"{layer_prefix}.{block}.gate.weight"

    def shared_name(self, layer_prefix: str, proj: str) -> str:
        return f"{layer_prefix}.mlp.shared_expert.{proj}.weight"

    def shared_gate_name(self, layer_prefix: str) -> str:
        return f"{layer_prefix}.mlp.shared_expert_gate.weight"


ARCHS = {
    "mixtral": OutputArch("mixtral", "Mixtral", "MixtralForCausalLM", ("llama", "mistral"), 0,
                          frozenset(_ATTN)),
    "qwen2_moe": OutputArch("qwen2_moe", "Qwen2-MoE", "Qwen2MoeForCausalLM", ("llama", "mistral", "qwen2"), 1,
                            frozenset(_ATTN | _QKV_BIAS)),
    "qwen3_moe": OutputArch("qwen3_moe", "Qwen3-MoE", "Qwen3MoeForCausalLM", ("qwen3",), 0,
                            frozenset(_ATTN | _QK_NORM)),
}
# mergekit's names (matched by prefix, as mergekit does) and ours.
_ALIASES = {"mixtral": "mixtral", "qwen": "qwen2_moe", "qwen moe": "qwen2_moe", "qwen2": "qwen2_moe",
            "qwen2_moe": "qwen2_moe", "qwen2-moe": "qwen2_moe", "qwen3": "qwen3_moe", "qwen3 moe": "qwen3_moe",
            "qwen3_moe": "qwen3_moe", "qwen3-moe": "qwen3_moe"}


def select_arch(config: MoEConfig, base_type: str) -> OutputArch:
    """The output architecture: the one named, or the one that fits the base and shared experts."""
    shared = len(config.shared_experts or [])
    if config.architecture:
        name = config.architecture.strip().lower()
        key = _ALIASES.get(name)
        if key is None:
            raise RecipeError(f"architecture: {config.architecture!r} is not a MoE output architecture"
                              f"{did_you_mean(name, _ALIASES)}",
                              hint="use mixtral, qwen2_moe (mergekit: qwen) or qwen3_moe, or leave it out")
        arch = ARCHS[key]
    elif shared:
        arch = ARCHS["qwen2_moe"]
    elif base_type == "qwen3":
        arch = ARCHS["qwen3_moe"]
    elif base_type == "qwen2":
        raise RecipeError("a MoE of Qwen2 experts is written as Qwen2-MoE, which needs exactly one shared expert",
                          hint="add `shared_experts:` with one expert (e.g. the base model and its prompts)")
    else:
        arch = ARCHS["mixtral"]
    _check_fits(arch, config, base_type, shared)
    return arch


def _check_fits(arch: OutputArch, config: MoEConfig, base_type: str, shared: int) -> None:
    if base_type not in arch.model_types:
        raise IncompatibleModelsError(
            f"base_model {config.base_model!r} is a {base_type!r} model; {arch.title} is built from "
            f"{' or '.join(arch.model_types)} models",
            hint="choose another architecture, or a base model (and experts) it supports")
    if shared != arch.shared_experts:
        need = "exactly one shared expert" if arch.shared_experts else "no shared experts"
        raise RecipeError(f"shared_experts: {arch.title} takes {need}, the config gives {shared}",
                          hint="use qwen2_moe for one shared expert; drop shared_experts for the others")


def check_base_tensors(arch: OutputArch, base_ref: str, rests: set[str]) -> None:
    """Every non-MLP tensor of a base layer must exist in the output architecture."""
    extra = sorted(r for r in rests if not r.startswith("mlp.") and r not in arch.layer_tensors)
    mlp = {r for r in rests if r.startswith("mlp.")}
    wanted = {f"mlp.{p}.weight" for p in MLP_PROJS}
    if extra or mlp != wanted:
        odd = extra or sorted(mlp ^ wanted)
        raise IncompatibleModelsError(
            f"base_model {base_ref!r}: layer tensor(s) {', '.join(odd)} have no place in a {arch.title} model "
            f"(its layers hold {', '.join(sorted(arch.layer_tensors))} and gate/up/down MLPs)",
            hint="attention or MLP biases need an architecture with them (qwen2_moe takes q/k/v biases)")


def output_config(arch: OutputArch, base: dict[str, Any], config: MoEConfig, dtype: str, qkv_bias: bool) -> dict[str, Any]:
    """config.json of the MoE: the base's shared settings plus the expert settings."""
    out = {k: copy.deepcopy(base[k]) for k in _SHARED_KEYS if k in base}
    out.update(architectures=[arch.hf_class], model_type=arch.key, dtype=dtype, torch_dtype=dtype,
               num_experts_per_tok=config.experts_per_token, output_router_logits=False)
    experts = len(config.experts)
    if arch.key == "mixtral":
        out.update(num_local_experts=experts, sliding_window=base.get("sliding_window"),
                   router_aux_loss_coef=0.02)
        return out
    # norm_topk_prob: the chosen experts' weights sum to 1, as in Mixtral (mergekit does the same)
    out.update(num_experts=experts, decoder_sparse_step=1, norm_topk_prob=True, mlp_only_layers=[],
               moe_intermediate_size=base["intermediate_size"], use_sliding_window=False,
               sliding_window=None, router_aux_loss_coef=0.001)
    if arch.key == "qwen2_moe":
        out.update(shared_expert_intermediate_size=base["intermediate_size"], qkv_bias=qkv_bias)
    else:
        out["attention_bias"] = bool(base.get("attention_bias", False))
    return out
