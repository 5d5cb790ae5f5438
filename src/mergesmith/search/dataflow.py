"""The data-flow search space of Akiba et al. 2024 ("Evolutionary Optimization of Model
Merging Recipes", section 3.2), emitted as a passthrough slice recipe.

Candidate sequence: the layers of the M models laid out one model after the other and the
whole run repeated r times, T = M * L * r positions. The vector x holds

- I (T values): the inclusion array; position t is in the path when I[t] > 0, so the path
  keeps the sequence's order, may repeat a layer (from a later repetition) and varies in
  length;
- W (M * M values, with `scale`): the scaling matrix; the hidden state entering a layer of
  model j right after a layer of model i is multiplied by W[i][j] (the first step has no
  predecessor but the embeddings, which come from its own model: W[j][j]).

A recipe scales tensors, not activations, so W is applied through an identity of pre-norm
residual blocks: with N(a h) = N(h) (RMSNorm/LayerNorm, up to eps),
block(a h) = a * block'(h), where block' has its residual-branch output projections
(o_proj, down_proj; GPT-2's c_proj) divided by a. Following the path, the stream entering
the final norm is c_K times that of the unscaled-input model with c_k = W_1 * ... * W_k, and
the final norm removes c_K. So input scaling W_k at step k is exactly (up to the norm's
eps) output-projection scale 1 / c_k on step k, which is what the recipe carries. The
search scores that recipe itself, so `mergesmith merge` reproduces the scored model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError

# The last projection of each residual branch, by family (Llama/Mistral/Qwen2/Phi-3, GPT-2).
OUTPUT_PROJECTIONS = ("o_proj", "down_proj", "c_proj")
# Inclusion values of the start point: |I| small enough that CMA-ES's first steps flip some.
INCLUDE, EXCLUDE = 0.3, -0.3
SCALE_BOUNDS = (0.25, 2.0)


def layer_count(model: str) -> int:
    from mergesmith.arch import config_layer_count

    found = config_layer_count(json.loads((Path(model) / "config.json").read_text()))
    if found is None:
        raise OptionsError(f"{model}: config.json gives no layer count (num_hidden_layers)",
                           hint="restore the model's config.json, or use space: parameters")
    return found[1]


def output_projections(model: str) -> list[str]:
    """The branch-output filters the scale rules use; refuses post-norm (sandwich) blocks."""
    from safetensors import safe_open

    names: set[str] = set()
    for f in sorted(Path(model).glob("*.safetensors")):
        with safe_open(str(f), "pt") as handle:
            names.update(handle.keys())
    if any("post_feedforward_layernorm" in n for n in names):
        raise OptionsError(f"{model}: a norm after each branch (Gemma 2/3) breaks the input-scaling "
                           "identity dataflow_scale relies on", hint="set dataflow_scale: false")
    found = [p for p in OUTPUT_PROJECTIONS if any(f".{p}." in n for n in names)]
    if not found:
        raise OptionsError(f"{model}: no output projection ({', '.join(OUTPUT_PROJECTIONS)}) found "
                           "for dataflow_scale", hint="set dataflow_scale: false")
    return found


@dataclass
class DataFlowSpace:
    """x = [I (T inclusion values), W (M * M input scales, row = previous model)]."""

    models: list[str]
    num_layers: int
    repeats: int = 2
    scale: bool = True
    dtype: str = "float32"
    projections: tuple[str, ...] = ("o_proj", "down_proj")

    @property
    def positions(self) -> int:
        return len(self.models) * self.num_layers * self.repeats

    @property
    def size(self) -> int:
        return self.positions + (len(self.models) ** 2 if self.scale else 0)

    def position(self, t: int) -> tuple[int, int]:
        """(model index, layer) of sequence position t."""
        within = t % (len(self.models) * self.num_layers)
        return within // self.num_layers, within % self.num_layers

    def default_vector(self) -> list[float]:
        # The first model's own layers once, in order, unscaled: the start is a copy of it.
        incl = [INCLUDE if t < self.num_layers else EXCLUDE for t in range(self.positions)]
        return incl + ([1.0] * len(self.models) ** 2 if self.scale else [])

    def path(self, x: list[float]) -> list[tuple[int, int, float]]:
        """The included steps: (model index, layer, input scale W)."""
        incl = [float(v) for v in x[: self.positions]]
        chosen = [t for t, v in enumerate(incl) if v > 0]
        if not chosen:  # an empty path is no model: keep the most included position
            chosen = [max(range(self.positions), key=lambda t: incl[t])]
        n = len(self.models)
        lo, hi = SCALE_BOUNDS
        steps, prev = [], None
        for t in chosen:
            m, layer = self.position(t)
            w = 1.0
            if self.scale:
                i = m if prev is None else prev
                w = min(hi, max(lo, float(x[self.positions + i * n + m])))
            steps.append((m, layer, w))
            prev = m
        return steps

    def recipe(self, x: list[float]) -> dict[str, Any]:
        slices: list[dict[str, Any]] = []
        cumulative = 1.0
        for m, layer, w in self.path(list(x)):
            cumulative *= w
            out_scale = float(f"{1.0 / cumulative:.7g}")  # relative precision: c_k can be tiny
            source: dict[str, Any] = {"model": self.models[m], "layer_range": [layer, layer + 1]}
            if out_scale != 1.0:
                source["parameters"] = {"scale": [{"filter": p, "value": out_scale}
                                                  for p in self.projections]}
            last = slices[-1]["sources"][0] if slices else None
            if (last and "parameters" not in source and "parameters" not in last
                    and last["model"] == source["model"] and last["layer_range"][1] == layer):
                last["layer_range"][1] = layer + 1  # a run of consecutive layers: one slice
                continue
            slices.append({"sources": [source]})
        return {"merge_method": "passthrough", "dtype": self.dtype, "slices": slices}


def make_dataflow_space(models: list[str], repeats: int, scale: bool, dtype: str) -> DataFlowSpace:
    depths = {m: layer_count(m) for m in models}
    if len(set(depths.values())) != 1:
        raise OptionsError(f"dataflow needs models of one depth, got {depths}",
                           hint="list models of one depth, or use space: parameters")
    projections = tuple(output_projections(models[0])) if scale else ()
    return DataFlowSpace(models, depths[models[0]], repeats, scale, dtype, projections)
