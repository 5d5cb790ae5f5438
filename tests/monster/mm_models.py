"""The tiny models of the MergeMonster reference runs (tests/monster/mm_reference/).

Every weight comes from a seeded torch generator (not from transformers' initialisation,
which changes between versions), so `record.py` and the tests build the very same models.
The tokenizer is a word-level one over `w0 w1 ...` that adds `<s>` in front, as Llama's and
Mistral's do, so MergeMonster's tokenization rule (`tokenizer.encode(context + phrase)`)
sees a BOS like on a real model.
"""

from __future__ import annotations

from pathlib import Path

import torch

VOCAB = 96
BASE_SEED = 0
# name -> (seed, vocabulary size): fine-tunes of the base (base + noise); "wide" has 8 extra
# tokens (MergeMonster resizes its headers), "narrow" 6 fewer.
DONORS = {"b-donor": (2, VOCAB), "a-donor": (1, VOCAB), "wide": (3, VOCAB + 8), "narrow": (4, VOCAB - 6)}


def write_tokenizer(path: Path, vocab: int = VOCAB) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<s>", "</s>"] + [f"w{i}" for i in range(vocab - 3)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")
    fast.save_pretrained(path)


def _config(vocab: int, layers: int, tied: bool = False):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)


def _weights(model, seed: int, base: dict[str, torch.Tensor] | None, noise: float) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.state_dict().items()):
            fresh = torch.randn(param.shape, generator=gen)
            if base is None:  # norms near 1, matrices large enough for peaked next-token odds
                param.copy_(1.0 + 0.1 * fresh if param.dim() == 1 else 0.35 * fresh)
            else:
                start = base[name]
                rows = min(start.shape[0], param.shape[0])
                value = 1.0 + 0.1 * fresh if param.dim() == 1 else 0.35 * fresh
                value[:rows] = start[:rows] + noise * fresh[:rows]
                param.copy_(value)


def make_model(path: Path, seed: int, vocab: int = VOCAB, layers: int = 2,
               base: dict[str, torch.Tensor] | None = None, noise: float = 0.12,
               tied: bool = False) -> dict[str, torch.Tensor]:
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM(_config(vocab, layers, tied))
    _weights(model, seed, base, noise)
    model.save_pretrained(path)
    write_tokenizer(path, vocab)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def make_models(root: Path, layers: int = 2, tied: bool = False) -> dict[str, Path]:
    """root/base and root/models/<donor> for every donor; returns name -> path. `tied`: the
    LM head is the embedding matrix (the reference runs use untied models)."""
    base = make_model(root / "base", BASE_SEED, layers=layers, tied=tied)
    out = {"base": root / "base"}
    for name, (seed, vocab) in DONORS.items():
        make_model(root / "models" / name, seed, vocab, layers, base=base, tied=tied)
        out[name] = root / "models" / name
    return out
