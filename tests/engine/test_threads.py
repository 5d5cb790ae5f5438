"""The output does not depend on --threads, bit for bit, on either compute path.

Tensors here are large enough (70,400 entries) for torch to split a sum over its intra-op
threads, which rounds differently from one thread; the inputs are unrelated random models, so
slerp does not fall back to linear interpolation and its dot product matters.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mergesmith.api import merge

SHAPES = {"model.embed_tokens.weight": (1100, 64), "model.norm.weight": (64,), "lm_head.weight": (1100, 64),
          "model.layers.0.self_attn.q_proj.weight": (64, 64), "model.layers.0.input_layernorm.weight": (64,)}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("threads")
    paths = {}
    for seed, name in enumerate(("base", "a", "b")):
        gen = torch.Generator().manual_seed(seed)
        paths[name] = root / name
        paths[name].mkdir()
        tensors = {k: (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16) for k, shape in SHAPES.items()}
        save_file(tensors, paths[name] / "model.safetensors")
        (paths[name] / "config.json").write_text(json.dumps({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "num_hidden_layers": 1, "vocab_size": 1100, "tie_word_embeddings": False}))
    return paths


RECIPES = {
    "linear": "models:\n  - {{model: {a}, parameters: {{weight: 0.6}}}}\n  - {{model: {b}, parameters: {{weight: 0.3}}}}\n"
              "merge_method: linear\n",
    "slerp": "models:\n  - model: {a}\nmerge_method: slerp\nbase_model: {base}\nparameters: {{t: 0.4}}\n",
    "dare_ties": "models:\n  - {{model: {a}, parameters: {{weight: 0.6, density: 0.5}}}}\n"
                 "  - {{model: {b}, parameters: {{weight: 0.5, density: 0.5}}}}\n"
                 "merge_method: dare_ties\nbase_model: {base}\n",
}


@pytest.mark.parametrize("method", sorted(RECIPES))
def test_the_bytes_do_not_depend_on_threads(models: dict[str, Path], tmp_path: Path, method: str) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPES[method].format(**{k: str(v) for k, v in models.items()}))
    outputs = []
    for threads in (1, 2, 3):
        merge(recipe, tmp_path / f"out{threads}", threads=threads)
        outputs.append((tmp_path / f"out{threads}" / "model.safetensors").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
