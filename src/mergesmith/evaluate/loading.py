"""Load a local causal-LM checkpoint and its tokenizer for evaluation.

Local files only and `trust_remote_code=False`: evaluating a merge must never download or
run code from a checkpoint directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mergesmith.errors import CheckpointError, OptionsError
from mergesmith.io.models import open_model

if TYPE_CHECKING:
    import torch

# A checkpoint directory, or a live model (an nn.Module with `generate`, `config`...).
ModelSource = str | os.PathLike | Any

_DTYPES = ("float32", "float16", "bfloat16")


@dataclass
class LoadedModel:
    """A causal LM and its tokenizer, ready to run on `device`."""

    model: Any
    tokenizer: Any

    @property
    def device(self) -> torch.device:
        return model_device(self.model)


def model_device(model: Any) -> torch.device:
    """The device of a model's first parameter (inputs must go there)."""
    return next(model.parameters()).device


def loaded_model(
    model: ModelSource,
    tokenizer: Any | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """A path is loaded (on `device`); a live model is used where it is, never moved.

    Moving a live model would surprise a caller (a search holds it and edits its layers), so
    `device` and `dtype` apply only to models loaded here.
    """
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (str, os.PathLike)):
        loaded = load_model(Path(model), device=device, dtype=dtype)
        if tokenizer is not None:
            loaded.tokenizer = tokenizer
        return loaded
    if tokenizer is None:
        raise OptionsError(
            "an in-memory model was given without its tokenizer",
            hint="pass tokenizer=..., or give the checkpoint path instead",
        )
    return LoadedModel(model=model, tokenizer=tokenizer)


def default_device() -> str:
    """`cuda` when a GPU is visible, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    path: str | Path,
    *,
    device: str | None = None,
    dtype: str | None = None,
) -> LoadedModel:
    """Load `path` (a Hugging Face checkpoint directory, or `BASE+ADAPTER`) on `device` in `dtype`.

    `BASE+ADAPTER` (a PEFT LoRA adapter directory after the last '+') is the base with the
    adapter applied, read as a recipe reads it (mergesmith.io.lora_source). `device` defaults to cuda when available; `dtype` defaults to the checkpoint's own
    (float32 on cpu when the checkpoint is half precision, since CPU half matmuls are slow
    or missing).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if "+" in str(path) and not (path / "config.json").is_file():
        return _load_with_adapter(str(path), device=device, dtype=dtype)
    if not (path / "config.json").is_file():
        raise CheckpointError(
            f"{path} is not a checkpoint directory (no config.json)",
            hint="give the directory written by save_pretrained or by `mergesmith merge`",
        )
    device = device or default_device()
    torch_dtype = _resolve_dtype(dtype, device)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            path, local_files_only=True, trust_remote_code=False
        )
        model = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, trust_remote_code=False, dtype=torch_dtype
        )
    except Exception as exc:  # transformers raises many types for unknown or broken models
        raise CheckpointError(f"cannot load the checkpoint {path}: {type(exc).__name__}: {str(exc).strip()[:300]}",
                              hint="transformers must load it without running code from the folder "
                                   "(trust_remote_code=False); check its config.json and weights") from None
    model.to(device)
    model.eval()
    return LoadedModel(model=model, tokenizer=tokenizer)


def _load_with_adapter(ref: str, *, device: str | None, dtype: str | None) -> LoadedModel:
    """BASE+ADAPTER: the base checkpoint, its weights replaced by base + adapter, tensor by tensor."""
    ckpt = open_model(ref, None)
    try:
        assert ckpt.path is not None
        loaded = load_model(ckpt.path, device=device, dtype=dtype)
        state = {name: ckpt.read(name) for name in ckpt.tensors}
    finally:
        ckpt.close()
    missing, unexpected = loaded.model.load_state_dict(state, strict=False)
    if unexpected or [n for n in missing if not n.endswith("lm_head.weight")]:  # a tied head has no tensor
        raise CheckpointError(f"{ref}: the adapted tensors do not fit the base's model class "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    return loaded


def _resolve_dtype(dtype: str | None, device: str) -> object:
    import torch

    if dtype is None:
        # "auto" keeps the checkpoint's dtype; on CPU half precision is slow, so upcast.
        return "auto" if not device.startswith("cpu") else torch.float32
    if dtype not in _DTYPES:
        raise OptionsError(f"unknown dtype {dtype!r}", hint=f"use one of {', '.join(_DTYPES)}")
    return getattr(torch, dtype)
