"""The plan's data: how each output tensor is made (TensorOp), and the whole Plan."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.safetensors_format import tensor_nbytes
from mergesmith.methods.base import MethodSpec
from mergesmith.recipe.model import Recipe

FLOAT_COMPUTE_BYTES = 4


@dataclass(frozen=True)
class TensorRef:
    model: str  # the recipe's model reference
    name: str  # tensor name in that model


@dataclass
class TensorOp:
    """How one output tensor is made."""

    name: str
    method: MethodSpec
    inputs: list[TensorRef]  # the method's `tensors`, in recipe order
    base: TensorRef | None
    params: Any  # the method's params model instance
    shape: tuple[int, ...]
    out_dtype: str  # safetensors dtype name
    role: str  # "pre", "layer" or "post"
    layer: int | None = None
    t: float = 0.0
    copy_only: bool = False  # non-float tensors: copied from the first input
    # Rows indexed by token (embeddings, LM head) when vocabularies are aligned: an object
    # with `align(name, {model: tensor}) -> {model: tensor}` (see mergesmith.tokenizer).
    vocab: Any = None

    def refs(self) -> list[TensorRef]:
        return [*self.inputs, *([self.base] if self.base else [])]


@dataclass
class Plan:
    recipe: Recipe
    method: MethodSpec
    checkpoints: dict[str, Checkpoint]
    ops: list[TensorOp]
    config_source: str
    out_config: dict[str, Any]
    num_layers: int
    warnings: list[str] = field(default_factory=list)
    vocab: Any = None  # the vocabulary plan when tokenizer settings apply (mergesmith.tokenizer)

    @property
    def bytes_read(self) -> int:
        return sum(self.checkpoints[r.model].tensors[r.name].nbytes for op in self.ops for r in op.refs())

    @property
    def bytes_written(self) -> int:
        return sum(tensor_nbytes(op.out_dtype, op.shape) for op in self.ops)

    def peak_memory(self, threads: int) -> int:
        """Estimate of the executor's working memory (on top of the ~0.25 GB torch itself
        takes): `threads` ops run at once plus one being written. An elementwise op holds its
        inputs as stored and its output (the float32 work is done in cache-sized chunks); any
        other op holds float32 copies of its inputs, a task-vector stack and the output."""
        per_op = []
        for op in self.ops:
            stored = sum(self.checkpoints[r.model].tensors[r.name].nbytes for r in op.refs())
            if op.method.elementwise:
                per_op.append(stored + 2 * FLOAT_COMPUTE_BYTES * math.prod(op.shape))
            else:
                per_op.append(stored + FLOAT_COMPUTE_BYTES * math.prod(op.shape) * (2 * len(op.refs()) + 2))
        per_op.sort(reverse=True)
        return sum(per_op[: threads + 1])
