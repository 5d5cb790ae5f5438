"""The compatibility tests' tiny input models, bit-identical on every machine.

Everything here is written byte by byte from numpy's PCG64 with fixed seeds (no torch or
transformers initialisation, no library serialisers whose output could change between
versions): the safetensors files by :func:`write_safetensors`, config.json and the tokenizer
files as sorted JSON. Only numpy and the standard library are imported, so the golden
generator (in mergekit's venv) and the tests (in the project's) build the same bytes;
:func:`input_hashes` is what the goldens record and the tests check first.

Models (``build_inputs(root)`` writes them under root):
  llama/{base,a,b,c}      3 layers, float32; a, b, c are fine-tunes of base
  llama16/{base,a,b}      the same models rounded to bfloat16
  mistral, qwen2, gpt2    {base,a,b}, 2 layers, float32 (qwen2 ties its head to the embeddings)
  qwen2vl/{base,a,b}      a Qwen2-VL-style vision-language model (3 text layers, 2 vision blocks)
  gemma, phi3             {base,a,b}, 2 layers, float32 (Gemma tied; Phi-3's fused qkv/gate_up)
  llama/x                 a fine-tune of llama/base whose vocabulary differs (tokenizer sources)
  llama/chatml            a fine-tune of llama/base with <|im_start|>, <|im_end|> added (ids 40, 41)
  lora/a                  a PEFT LoRA adapter for llama/base (q_proj, v_proj; rank 4)
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import numpy as np

HIDDEN, INTER, VOCAB, HEADS, KV_HEADS = 32, 16, 40, 4, 2
HEAD_DIM = HIDDEN // HEADS
WORDS = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(VOCAB - 3)]
# llama/x: w32..w36 dropped, six new words, and the shared words in another order.
X_WORDS = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in reversed(range(32))] + [f"t{i}" for i in range(6)]
NOISE = 0.02  # a fine-tune's distance from its base, relative to weights of about 0.1
FINE_TUNES = {"a": 1, "b": 2, "c": 3}


# --- bytes -----------------------------------------------------------------------------------

def to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bit patterns, rounded to nearest even (as torch's .to(bfloat16))."""
    bits = values.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], dtype: str) -> None:
    """A safetensors file with names sorted: dtype "F32" or "BF16" (float32 arrays in)."""
    header: dict[str, object] = {"__metadata__": {"format": "pt"}}
    chunks, offset = [], 0
    for name in sorted(tensors):
        array = tensors[name].astype(np.float32)
        data = (to_bfloat16_bits(array).astype("<u2") if dtype == "BF16" else array.astype("<f4")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(chunks))


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")


def write_tokenizer(path: Path, words: list[str], added: list[str]) -> None:
    """A WordLevel tokenizer (tokenizer.json, tokenizer_config.json) that AutoTokenizer loads;
    `added` tokens (not special) get the ids after `words`."""
    entries = [(i, w, True) for i, w in enumerate(words[:3])] + [(len(words) + i, w, False) for i, w in enumerate(added)]
    specials = [{"id": i, "content": w, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": special} for i, w, special in entries]
    write_json(path / "tokenizer.json", {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": specials,
        "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
        "model": {"type": "WordLevel", "vocab": {w: i for i, w in enumerate(words)}, "unk_token": "<unk>"},
    })
    write_json(path / "tokenizer_config.json", {
        "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "<unk>", "bos_token": "<s>",
        "eos_token": "</s>", "model_max_length": 64, "clean_up_tokenization_spaces": False,
    })


# --- shapes and configs ----------------------------------------------------------------------

def _decoder_shapes(layers: int, *, bias: bool, head: bool, prefix: str = "model") -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {f"{prefix}.embed_tokens.weight": (VOCAB, HIDDEN),
                                          f"{prefix}.norm.weight": (HIDDEN,)}
    if head:
        shapes["lm_head.weight"] = (VOCAB, HIDDEN)
    kv = KV_HEADS * HEAD_DIM
    for i in range(layers):
        p = f"{prefix}.layers.{i}."
        shapes |= {p + "input_layernorm.weight": (HIDDEN,), p + "post_attention_layernorm.weight": (HIDDEN,),
                   p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "self_attn.k_proj.weight": (kv, HIDDEN),
                   p + "self_attn.v_proj.weight": (kv, HIDDEN), p + "self_attn.o_proj.weight": (HIDDEN, HIDDEN),
                   p + "mlp.gate_proj.weight": (INTER, HIDDEN), p + "mlp.up_proj.weight": (INTER, HIDDEN),
                   p + "mlp.down_proj.weight": (HIDDEN, INTER)}
        if bias:
            shapes |= {p + "self_attn.q_proj.bias": (HIDDEN,), p + "self_attn.k_proj.bias": (kv,),
                       p + "self_attn.v_proj.bias": (kv,)}
    return shapes


def _phi3_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    """Phi-3's fused projections: qkv_proj (q, k, v stacked) and gate_up_proj."""
    shapes = {n: v for n, v in _decoder_shapes(layers, bias=False, head=True).items()
              if not any(p in n for p in ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj"))}
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes |= {p + "self_attn.qkv_proj.weight": (HIDDEN + 2 * KV_HEADS * HEAD_DIM, HIDDEN),
                   p + "mlp.gate_up_proj.weight": (2 * INTER, HIDDEN)}
    return shapes


def _gpt2_shapes(layers: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"transformer.wte.weight": (VOCAB, HIDDEN), "transformer.wpe.weight": (64, HIDDEN),
                                          "transformer.ln_f.weight": (HIDDEN,), "transformer.ln_f.bias": (HIDDEN,)}
    for i in range(layers):
        p = f"transformer.h.{i}."
        shapes |= {p + "ln_1.weight": (HIDDEN,), p + "ln_1.bias": (HIDDEN,), p + "ln_2.weight": (HIDDEN,),
                   p + "ln_2.bias": (HIDDEN,), p + "attn.c_attn.weight": (HIDDEN, 3 * HIDDEN),
                   p + "attn.c_attn.bias": (3 * HIDDEN,), p + "attn.c_proj.weight": (HIDDEN, HIDDEN),
                   p + "attn.c_proj.bias": (HIDDEN,), p + "mlp.c_fc.weight": (HIDDEN, INTER),
                   p + "mlp.c_fc.bias": (INTER,), p + "mlp.c_proj.weight": (INTER, HIDDEN), p + "mlp.c_proj.bias": (HIDDEN,)}
    return shapes


VISION = {"depth": 2, "embed_dim": 8, "num_heads": 2, "mlp_ratio": 2, "in_chans": 3, "patch_size": 2,
          "temporal_patch_size": 2, "spatial_merge_size": 2, "hidden_size": HIDDEN, "model_type": "qwen2_vl"}


def _vision_shapes() -> dict[str, tuple[int, ...]]:
    e, merged = VISION["embed_dim"], VISION["embed_dim"] * VISION["spatial_merge_size"] ** 2
    shapes: dict[str, tuple[int, ...]] = {"visual.patch_embed.proj.weight": (e, 3, 2, 2, 2),
                                          "visual.merger.ln_q.weight": (e,), "visual.merger.ln_q.bias": (e,),
                                          "visual.merger.mlp.0.weight": (merged, merged), "visual.merger.mlp.0.bias": (merged,),
                                          "visual.merger.mlp.2.weight": (HIDDEN, merged), "visual.merger.mlp.2.bias": (HIDDEN,)}
    for i in range(VISION["depth"]):
        p = f"visual.blocks.{i}."
        shapes |= {p + "norm1.weight": (e,), p + "norm1.bias": (e,), p + "norm2.weight": (e,), p + "norm2.bias": (e,),
                   p + "attn.qkv.weight": (3 * e, e), p + "attn.qkv.bias": (3 * e,), p + "attn.proj.weight": (e, e),
                   p + "attn.proj.bias": (e,), p + "mlp.fc1.weight": (2 * e, e), p + "mlp.fc1.bias": (2 * e,),
                   p + "mlp.fc2.weight": (e, 2 * e), p + "mlp.fc2.bias": (e,)}
    return shapes


def _text_config(model_type: str, layers: int, tied: bool) -> dict:
    return {"model_type": model_type, "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER,
            "num_hidden_layers": layers, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
            "head_dim": HEAD_DIM, "max_position_embeddings": 64, "rms_norm_eps": 1e-6, "hidden_act": "silu",
            "rope_theta": 10000.0, "tie_word_embeddings": tied, "bos_token_id": 1, "eos_token_id": 2,
            "torch_dtype": "float32"}


ARCHS: dict[str, dict] = {
    "llama": {"layers": 3, "config": {**_text_config("llama", 3, False), "architectures": ["LlamaForCausalLM"]},
              "shapes": _decoder_shapes(3, bias=False, head=True)},
    "mistral": {"layers": 2, "config": {**_text_config("mistral", 2, False), "architectures": ["MistralForCausalLM"],
                                        "sliding_window": None},
                "shapes": _decoder_shapes(2, bias=False, head=True)},
    "qwen2": {"layers": 2, "config": {**_text_config("qwen2", 2, True), "architectures": ["Qwen2ForCausalLM"]},
              "shapes": _decoder_shapes(2, bias=True, head=False)},
    "gemma": {"layers": 2, "config": {**_text_config("gemma", 2, True), "architectures": ["GemmaForCausalLM"],
                                      "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh"},
              "shapes": _decoder_shapes(2, bias=False, head=False)},
    "phi3": {"layers": 2, "config": {**_text_config("phi3", 2, False), "architectures": ["Phi3ForCausalLM"],
                                     "pad_token_id": 0, "original_max_position_embeddings": 64},
             "shapes": _phi3_shapes(2)},
    "gpt2": {"layers": 2, "config": {"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "vocab_size": VOCAB,
                                     "n_embd": HIDDEN, "n_layer": 2, "n_head": HEADS, "n_inner": INTER,
                                     "n_positions": 64, "bos_token_id": 1, "eos_token_id": 2,
                                     "tie_word_embeddings": True, "torch_dtype": "float32"},
             "shapes": _gpt2_shapes(2)},
    "qwen2vl": {"layers": 3, "config": {"architectures": ["Qwen2VLForConditionalGeneration"], "model_type": "qwen2_vl",
                                        **{k: v for k, v in _text_config("qwen2_vl", 3, True).items() if k != "model_type"},
                                        "text_config": _text_config("qwen2_vl_text", 3, True), "vision_config": VISION,
                                        "image_token_id": 3, "video_token_id": 4, "vision_start_token_id": 5},
                "shapes": {**_decoder_shapes(3, bias=True, head=False), **_vision_shapes()}},
}


# --- values ----------------------------------------------------------------------------------

def _values(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """Weights of about 0.1; norms about 1 (as trained models have)."""
    rng = np.random.Generator(np.random.PCG64(seed))
    out = {}
    for name in sorted(shapes):
        noise = rng.standard_normal(shapes[name], dtype=np.float64)
        norm = "norm" in name or "ln_" in name
        out[name] = ((1.0 if norm and name.endswith("weight") else 0.0) + 0.1 * noise).astype(np.float32)
    return out


def _fine_tune(base: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
    rng = np.random.Generator(np.random.PCG64(seed))
    return {n: (base[n] + NOISE * rng.standard_normal(base[n].shape, dtype=np.float64)).astype(np.float32)
            for n in sorted(base)}


def _write_model(path: Path, config: dict, tensors: dict[str, np.ndarray], words: list[str], dtype: str,
                 added: list[str] | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    write_json(path / "config.json", {**config, "torch_dtype": "bfloat16" if dtype == "BF16" else "float32"})
    write_safetensors(path / "model.safetensors", tensors, dtype)
    write_tokenizer(path, words, added or [])


def _arch_seed(arch: str) -> int:
    return int.from_bytes(hashlib.sha256(arch.encode()).digest()[:4], "little")


def build_inputs(root: Path) -> dict[str, Path]:
    """Write every input model under root; returns {"llama/base": path, ...}."""
    paths: dict[str, Path] = {}
    for arch, spec in ARCHS.items():
        seed = _arch_seed(arch)
        base = _values(spec["shapes"], seed)
        models = {"base": base, **{n: _fine_tune(base, seed + s) for n, s in FINE_TUNES.items()
                                   if n != "c" or arch == "llama"}}
        for name, tensors in models.items():
            _write_model(root / arch / name, spec["config"], tensors, WORDS, "F32")
            paths[f"{arch}/{name}"] = root / arch / name
            if arch == "llama" and name != "c":
                _write_model(root / "llama16" / name, spec["config"], tensors, WORDS, "BF16")
                paths[f"llama16/{name}"] = root / "llama16" / name
        if arch == "llama":
            paths["llama/x"] = _write_vocab_model(root / arch / "x", spec, base, seed)
            paths["llama/chatml"] = _write_chatml_model(root / arch / "chatml", spec, base, seed)
            paths["lora/a"] = _write_lora(root / "lora" / "a", spec["shapes"], seed)
    return paths


def _write_vocab_model(path: Path, spec: dict, base: dict[str, np.ndarray], seed: int) -> Path:
    """A fine-tune whose rows follow X_WORDS: shared words keep base's row plus noise."""
    tuned = _fine_tune(base, seed + 4)
    rng = np.random.Generator(np.random.PCG64(seed + 5))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        rows = [tuned[name][WORDS.index(w)] if w in WORDS else 0.1 * rng.standard_normal(HIDDEN) for w in X_WORDS]
        tuned[name] = np.stack(rows).astype(np.float32)
    _write_model(path, {**spec["config"], "vocab_size": len(X_WORDS)}, tuned, X_WORDS, "F32")
    return path


CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


def _write_chatml_model(path: Path, spec: dict, base: dict[str, np.ndarray], seed: int) -> Path:
    """A fine-tune with two added (non-special) tokens after WORDS, as mergekit's tests' model_chatml."""
    tuned = _fine_tune(base, seed + 7)
    rng = np.random.Generator(np.random.PCG64(seed + 8))
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        extra = 0.1 * rng.standard_normal((len(CHATML_TOKENS), HIDDEN))
        tuned[name] = np.concatenate([tuned[name], extra]).astype(np.float32)
    _write_model(path, {**spec["config"], "vocab_size": VOCAB + len(CHATML_TOKENS)}, tuned, WORDS, "F32",
                 added=CHATML_TOKENS)
    return path


LORA_RANK, LORA_ALPHA = 4, 8
LORA_TARGETS = ("q_proj", "v_proj")


def _write_lora(path: Path, shapes: dict[str, tuple[int, ...]], seed: int) -> Path:
    """A PEFT adapter: delta W = (alpha / r) B A on every q_proj and v_proj."""
    rng = np.random.Generator(np.random.PCG64(seed + 6))
    tensors = {}
    for name in sorted(shapes):
        if any(f"self_attn.{t}.weight" in name for t in LORA_TARGETS):
            out_f, in_f = shapes[name]
            stem = "base_model.model." + name[: -len(".weight")]
            tensors[stem + ".lora_A.weight"] = (0.1 * rng.standard_normal((LORA_RANK, in_f))).astype(np.float32)
            tensors[stem + ".lora_B.weight"] = (0.1 * rng.standard_normal((out_f, LORA_RANK))).astype(np.float32)
    path.mkdir(parents=True, exist_ok=True)
    write_safetensors(path / "adapter_model.safetensors", tensors, "F32")
    write_json(path / "adapter_config.json", {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": LORA_RANK, "lora_alpha": LORA_ALPHA,
        "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False, "target_modules": list(LORA_TARGETS),
        "base_model_name_or_path": None, "inference_mode": True, "use_rslora": False,
    })
    return path


def input_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}
