"""Tiny Llama models with real tokenizers whose vocabularies overlap only partly.

Tokenizers are built with the `tokenizers` library (WordLevel with added tokens, or a trained
byte-level BPE) and saved with transformers so AutoTokenizer loads them; the models are
transformers Llama models with as many embedding rows as asked (more than the tokenizer's
tokens for padded models, as Qwen pads).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

HIDDEN = 16
SPECIALS = ["<unk>", "<s>", "</s>"]


def wordlevel(words: list[str], added: list[str] = (), special: list[str] = ()) -> Tokenizer:
    """A WordLevel tokenizer: SPECIALS then `words` (ids in that order), then added tokens."""
    vocab = {w: i for i, w in enumerate([*SPECIALS, *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True) for t in SPECIALS])
    tok.add_tokens([AddedToken(t) for t in added])
    tok.add_special_tokens([AddedToken(t, special=True) for t in special])
    return tok


def bpe(corpus: list[str], size: int, added: list[str] = ()) -> Tokenizer:
    """A byte-level BPE trained on `corpus` (different corpora: partly different merges)."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=size, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    tok.add_tokens([AddedToken(t) for t in added])
    return tok


def save_tokenizer(tok: Tokenizer, path: Path, chat_template: str | None = None) -> None:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    if chat_template is not None:
        fast.chat_template = chat_template
    fast.save_pretrained(path)


def make_llama(path: Path, tok: Tokenizer | None, *, rows: int | None = None, seed: int = 0,
               like: dict[str, torch.Tensor] | None = None, layers: int = 2, tied: bool = False,
               chat_template: str | None = None) -> dict[str, torch.Tensor]:
    """Write a tiny Llama with `rows` embedding rows (default: the tokenizer's size). With
    `like`, every tensor of the same shape is like's + noise (a fine-tune of it)."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    rows = rows or tok.get_vocab_size(with_added_tokens=True)
    config = LlamaConfig(vocab_size=rows, hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64,
                         tie_word_embeddings=tied, bos_token_id=1, eos_token_id=2)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for name, param in model.state_dict().items():
            if like is not None and name in like and like[name].shape == param.shape:
                param.copy_(like[name] + 0.05 * torch.randn_like(param))
            else:
                param.copy_(torch.randn_like(param) * 0.5)  # distinct rows, easy to tell apart
    model.save_pretrained(path)
    if tok is not None:
        save_tokenizer(tok, path, chat_template)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def vocab_of(path: Path) -> dict[str, int]:
    return Tokenizer.from_file(str(path / "tokenizer.json")).get_vocab(with_added_tokens=True)


def config_of(path: Path) -> dict:
    return json.loads((path / "config.json").read_text())
