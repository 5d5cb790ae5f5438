"""Which modules an adapter can decompose, named as PEFT will see them.

PEFT attaches LoRA to modules of the transformers model, so the module types come from that
model, built on the meta device from config.json (no memory, no weights): nn.Linear and
GPT-2's Conv1D take `lora_A`/`lora_B`, nn.Embedding takes `lora_embedding_A`/`_B`; anything
else (norms, routers, odd parameters) can only be saved whole (`modules_to_save`). When
transformers cannot build the model, 2-D weights are taken as linear layers (a warning
says so).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from mergesmith.arch import is_embedding, is_head
from mergesmith.io.checkpoint import Checkpoint

log = logging.getLogger("mergesmith")
LINEAR_KINDS = ("linear", "conv1d", "head")


@dataclass
class Module:
    name: str  # e.g. "model.layers.0.self_attn.q_proj"
    kind: str  # linear | conv1d | embedding | head | other
    tensors: list[str] = field(default_factory=list)  # its tensor names in the checkpoint

    @property
    def weight(self) -> str | None:
        return next((t for t in self.tensors if t.endswith(".weight") or t == "weight"), None)

    @property
    def bias(self) -> str | None:
        return next((t for t in self.tensors if t.endswith(".bias")), None)


def module_kinds(ckpt: Checkpoint) -> dict[str, str] | None:
    """Module name -> kind from a meta-device transformers model; None when it cannot be built."""
    try:
        import transformers
        from torch import nn

        from mergesmith.lazy_torch import torch

        cfg = transformers.AutoConfig.for_model(**ckpt.config)
        with torch.device("meta"):
            model = transformers.AutoModelForCausalLM.from_config(cfg, trust_remote_code=False)
    except Exception as exc:  # unknown architectures raise many types
        log.warning(f"transformers cannot build {ckpt.ref!r} ({type(exc).__name__}: {exc}); taking every "
                    "2-D weight as a linear layer")
        return None
    emb_in, emb_out = model.get_input_embeddings(), model.get_output_embeddings()
    kinds = {}
    for name, module in model.named_modules():
        if module is emb_out and emb_out is not None:
            kinds[name] = "head"
        elif module is emb_in or isinstance(module, nn.Embedding):
            kinds[name] = "embedding"
        elif isinstance(module, nn.Linear):
            kinds[name] = "linear"
        elif type(module).__name__ == "Conv1D":
            kinds[name] = "conv1d"
        else:
            kinds[name] = "other"
    return kinds


def _guess_kind(tensor: str, ndim: int) -> str:
    if ndim != 2 or not tensor.endswith(".weight"):
        return "other"
    if is_head(tensor):
        return "head"
    return "embedding" if is_embedding(tensor) else "linear"


def group_modules(ckpt: Checkpoint, kinds: dict[str, str] | None, include: list[str], exclude: list[str]
                  ) -> tuple[list[Module], list[str]]:
    """(modules of the checkpoint's tensors in file order, tensors left out by include/exclude)."""
    modules: dict[str, Module] = {}
    left_out = []
    for tensor, meta in ckpt.tensors.items():
        if (include and not any(re.search(r, tensor) for r in include)) or any(re.search(r, tensor) for r in exclude):
            left_out.append(tensor)
            continue
        name = tensor.rpartition(".")[0]
        if kinds is None:
            kind = _guess_kind(tensor, len(meta.shape))
        else:
            kind = kinds.get(name, "other")
            if kind != "other" and not tensor.endswith((".weight", ".bias")):
                kind = "other"
        modules.setdefault(name, Module(name, kind)).tensors.append(tensor)
    return list(modules.values()), left_out


def target_modules(adapted: list[str], kinds: dict[str, str] | None, all_names: list[str]) -> list[str]:
    """PEFT target_modules: a leaf name (q_proj) where every module of that leaf is adapted, else full names."""
    names = list(kinds) if kinds is not None else all_names
    by_leaf: dict[str, set[str]] = {}
    for name in names:
        by_leaf.setdefault(name.rpartition(".")[2], set()).add(name)
    chosen = set(adapted)
    out: list[str] = []
    for leaf, members in sorted(by_leaf.items()):
        mine = sorted(members & chosen)
        if not mine:
            continue
        out += [leaf] if members <= chosen else mine
    return out
