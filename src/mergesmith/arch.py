"""Tensor roles from names, for any decoder-only family, without a per-architecture table.

A layer tensor has a numbered segment: `model.layers.3.mlp.up_proj.weight` (Llama, Mistral,
Qwen2, Gemma, Phi-3), `transformer.h.3.attn.c_attn.weight` (GPT-2). The layer stack is the
container (the name part before the number) with the most distinct indices. Every other
tensor is an embedding (before the layers: token/position embeddings) or a post-layer
tensor (final norm, LM head).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Role = Literal["pre", "layer", "post"]

_NUMBERED = re.compile(r"^(?P<container>(?:[^.]+\.)*?[^.]+)\.(?P<index>\d+)\.(?P<rest>.+)$")
_EMBED_HINTS = ("embed", "wte", "wpe", "tok_embeddings", "word_embeddings", "position_embeddings")
_HEAD_HINTS = ("lm_head", "embed_out")
LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


@dataclass(frozen=True)
class TensorRole:
    role: Role
    layer: int | None = None  # for role == "layer"
    rest: str = ""  # name within the layer, e.g. "mlp.up_proj.weight"


@dataclass(frozen=True)
class Layout:
    """Where a model's layers live in its tensor names."""

    container: str | None  # e.g. "model.layers"; None for a model without numbered layers
    num_layers: int

    def role(self, name: str) -> TensorRole:
        if self.container is not None:
            match = _NUMBERED.match(name)
            if match and match["container"] == self.container:
                return TensorRole("layer", int(match["index"]), match["rest"])
        return TensorRole("pre" if is_embedding(name) else "post")

    def layer_name(self, index: int, rest: str) -> str:
        return f"{self.container}.{index}.{rest}"


def is_embedding(name: str) -> bool:
    lowered = name.lower()
    return any(h in lowered for h in _EMBED_HINTS) and not is_head(name)


def is_head(name: str) -> bool:
    lowered = name.lower()
    return any(h in lowered for h in _HEAD_HINTS)


def detect_layout(names: Iterable[str]) -> Layout:
    """Find the layer stack: the numbered container with the most distinct indices."""
    indices: dict[str, set[int]] = defaultdict(set)
    for name in names:
        match = _NUMBERED.match(name)
        if match:
            indices[match["container"]].add(int(match["index"]))
    if not indices:
        return Layout(container=None, num_layers=0)
    container = max(indices, key=lambda c: (len(indices[c]), -len(c)))
    return Layout(container=container, num_layers=max(indices[container]) + 1)


def config_layer_count(config: dict) -> tuple[str, int] | None:
    """(key, value) of the layer count in a config.json, looking into text_config too."""
    for key in LAYER_COUNT_KEYS:
        if isinstance(config.get(key), int):
            return key, config[key]
    text = config.get("text_config")
    if isinstance(text, dict):
        return config_layer_count(text)
    return None


def head_and_embedding(names: Iterable[str]) -> tuple[str | None, str | None]:
    """The LM head and token embedding tensor names of a model, where present."""
    head = embed = None
    for name in names:
        if not name.endswith("weight"):
            continue
        if is_head(name) and head is None:
            head = name
        elif is_embedding(name) and "position" not in name and "wpe" not in name and embed is None:
            embed = name
    return head, embed
