"""Hand-made checkpoints whose task vectors have known relations, written with safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

LAYERS = 4


def write_model(path: Path, tensors: dict[str, torch.Tensor], layers: int = LAYERS) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers}))
    return path


def base_tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    out = {"model.embed_tokens.weight": torch.randn(16, 8, generator=g)}
    for i in range(LAYERS):
        out[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(12, 8, generator=g)
        out[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(8)
    out["model.norm.weight"] = torch.ones(8)
    out["lm_head.weight"] = torch.randn(16, 8, generator=g)
    return out


def make_handmade(root: Path) -> dict[str, Path]:
    """base, a, b under root: b's task vector equals a's in layers 0-1 (agree), is its negative in
    layers 2-3 (opposed) and is independent of it in the embeddings and the head. a's
    layer-3 up_proj delta is 50x larger than the rest (an outlier)."""
    base = base_tensors()
    g = torch.Generator().manual_seed(1)
    a, b = {}, {}
    for name, tensor in base.items():
        da = 0.01 * torch.randn(tensor.shape, generator=g)
        db = 0.01 * torch.randn(tensor.shape, generator=g)
        if ".layers.0." in name or ".layers.1." in name:
            db = da.clone()
        elif ".layers.2." in name or ".layers.3." in name:
            db = -da
        if name == "model.layers.3.mlp.up_proj.weight":
            da, db = 50 * da, -50 * da
        a[name], b[name] = tensor + da, tensor + db
    return {"base": write_model(root / "base", base), "a": write_model(root / "a", a),
            "b": write_model(root / "b", b)}
