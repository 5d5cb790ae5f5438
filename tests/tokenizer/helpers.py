"""Running merges in the tokenizer tests and reading their outputs."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from factory import load_tensors
from vocab_models import vocab_of

from mergesmith.api import merge

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"


def merge_api(tmp_path: Path, recipe: str, **options) -> Path:
    """Merge the recipe text with the API (the CLI path is covered in test_errors.py)."""
    (tmp_path / "recipe.yaml").write_text(recipe)
    out = tmp_path / "out"
    merge(tmp_path / "recipe.yaml", out, **options)
    return out


class Output:
    """A merged model: its tensors, vocabulary and config."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tensors = load_tensors(path)
        self.vocab = vocab_of(path)
        self.config = json.loads((path / "config.json").read_text())

    def row(self, name: str, token: str) -> torch.Tensor:
        return self.tensors[name][self.vocab[token]]


def row(weights: dict[str, torch.Tensor], vocab: dict[str, int], name: str, token: str) -> torch.Tensor:
    return weights[name][vocab[token]]


def loads_encodes_and_generates(path: Path, text: str) -> list[int]:
    """The output loads in transformers; `text` encodes to rows that exist; generation runs."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    ids = tokenizer(text).input_ids
    rows = model.get_input_embeddings().weight.shape[0]
    assert ids and all(0 <= i < rows for i in ids) and tokenizer.unk_token_id not in ids
    assert len(tokenizer) <= rows == model.config.vocab_size
    generated = model.generate(torch.tensor([ids]), max_new_tokens=3, min_new_tokens=3, do_sample=False)
    assert generated.shape == (1, len(ids) + 3) and int(generated.max()) < rows
    return ids
