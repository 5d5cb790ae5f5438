"""Tiny real checkpoints for tests: transformers models of several families, saved as safetensors.

`make_family(root, arch)` writes a base and two fine-tunes (base + small perturbations, as
fine-tuning does) with tokenizer files, so merges have a meaningful base and task vectors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers

VOCAB = 96


def _config(arch: str, layers: int):
    import transformers as tf

    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    if arch == "llama":
        return tf.LlamaConfig(**common, tie_word_embeddings=False)
    if arch == "mistral":
        return tf.MistralConfig(**common, tie_word_embeddings=False)
    if arch == "qwen2":
        return tf.Qwen2Config(**common, tie_word_embeddings=True)
    if arch == "gemma":
        return tf.GemmaConfig(**common, head_dim=8)
    if arch == "phi3":
        return tf.Phi3Config(**common, tie_word_embeddings=False, pad_token_id=0)
    if arch == "gpt2":
        return tf.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=layers, n_head=4, n_positions=64)
    raise ValueError(arch)


def write_tokenizer(path: Path) -> None:
    """A real WordLevel tokenizer over VOCAB tokens, saved so AutoTokenizer loads it."""
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(VOCAB - 3)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(path)


def make_model(path: Path, arch: str = "llama", *, layers: int = 4, seed: int = 0,
               base: dict[str, torch.Tensor] | None = None, noise: float = 0.02,
               dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Write a tiny model; with `base`, its weights are base + noise (a 'fine-tune')."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return _save(AutoModelForCausalLM.from_config(_config(arch, layers)), path, base, noise, dtype)


def _save(model, path: Path, base: dict[str, torch.Tensor] | None, noise: float,
          dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Save a freshly initialised model (base + noise when `base` is given) with a tokenizer."""
    if base is not None:
        with torch.no_grad():
            for name, param in model.state_dict().items():
                if name in base:
                    param.copy_(base[name] + noise * torch.randn_like(base[name]))
    model = model.to(dtype)
    model.save_pretrained(path)
    write_tokenizer(path)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_family(root: Path, arch: str = "llama", *, layers: int = 4, dtype: torch.dtype = torch.float32) -> dict[str, Path]:
    """base, a, b under root/arch/: a and b are fine-tunes of base."""
    out = {}
    base_dir = root / arch / "base"
    base = make_model(base_dir, arch, layers=layers, seed=0, dtype=dtype)
    out["base"] = base_dir
    for i, name in enumerate(("a", "b"), start=1):
        make_model(root / arch / name, arch, layers=layers, seed=i, base=base, dtype=dtype)
        out[name] = root / arch / name
    return out


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a (possibly sharded) safetensors checkpoint."""
    from safetensors.torch import load_file

    index = path / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(path / f))
    return out


def write_recipe(directory: Path, text: str, name: str = "recipe.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def _vlm_config():
    """A tiny Qwen3-VL (Qwen3VLForConditionalGeneration): a vision tower of 3 blocks, a projector
    (merger + 3 deepstack mergers) and a 4-layer text decoder; mergekit 0.1.5 knows it as three
    modules: vision_tower, multi_modal_projector, text_decoder."""
    import transformers as tf

    text = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=8, max_position_embeddings=64,
                rope_scaling={"rope_type": "default", "mrope_section": [1, 1, 2]})
    vision = dict(depth=3, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=4,
                  spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                  deepstack_visual_indexes=[0, 1, 2])
    return tf.Qwen3VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=False)


def make_vlm(path: Path, *, seed: int = 0, base: dict[str, torch.Tensor] | None = None, noise: float = 0.02,
             dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Write a tiny vision-language model; with `base`, its weights are base + noise (a 'fine-tune')."""
    from transformers import Qwen3VLForConditionalGeneration

    torch.manual_seed(seed)
    return _save(Qwen3VLForConditionalGeneration(_vlm_config()), path, base, noise, dtype)


def make_vlm_family(root: Path, *, dtype: torch.dtype = torch.float32) -> dict[str, Path]:
    """base, a, b under root/qwen3_vl/: a and b are fine-tunes of base (as make_family)."""
    base_dir = root / "qwen3_vl" / "base"
    base = make_vlm(base_dir, seed=0, dtype=dtype)
    out = {"base": base_dir}
    for i, name in enumerate(("a", "b"), start=1):
        make_vlm(root / "qwen3_vl" / name, seed=i, base=base, dtype=dtype)
        out[name] = root / "qwen3_vl" / name
    return out
