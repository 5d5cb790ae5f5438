"""A session-wide zoo (built once per session, whichever test module asks first) of tiny Llama models whose vocabularies differ (see vocab_models.py).

- base, a: one WordLevel tokenizer (33 tokens, 33 rows); a is a fine-tune of base.
- b: base's tokens in the same order plus words b0..b2 and the added token <tool> (37 rows).
- c: a partly overlapping vocabulary in another order (w10..w29, c0..c5 shuffled, specials
  last, chat tokens added) with 4 padding rows beyond its tokenizer.
- p1, p2: base's tokenizer with 40 rows (7 padding rows, as Qwen pads).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from vocab_models import SPECIALS, make_llama, wordlevel

WORDS = [f"w{i}" for i in range(30)]
CHATML_TOKENS = ["<|im_start|>", "<|im_end|>"]


def c_tokenizer():
    from tokenizers import AddedToken, Tokenizer, models, pre_tokenizers

    words = WORDS[10:] + [f"c{i}" for i in range(6)]
    random.Random(7).shuffle(words)
    vocab = {w: i for i, w in enumerate([*words, *SPECIALS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([AddedToken(t, special=True) for t in [*SPECIALS, *CHATML_TOKENS]])
    return tok


_BUILT: dict[str, dict] = {}


def build_zoo(root: Path) -> dict[str, Path]:
    base_tok = wordlevel(WORDS)
    paths = {name: root / name for name in ("base", "a", "b", "c", "p1", "p2")}
    base = make_llama(paths["base"], base_tok, seed=0)
    make_llama(paths["a"], base_tok, seed=1, like=base)
    make_llama(paths["b"], wordlevel(WORDS + ["b0", "b1", "b2"], added=["<tool>"]), seed=2, like=base)
    c_tok = c_tokenizer()
    make_llama(paths["c"], c_tok, rows=c_tok.get_vocab_size(with_added_tokens=True) + 4, seed=3)
    p1 = make_llama(paths["p1"], base_tok, rows=40, seed=4)
    make_llama(paths["p2"], base_tok, rows=40, seed=5, like=p1)
    return paths


# Imported by each test module; the cache makes the zoo one per session, not one per module
# (a conftest.py here would shadow tests/conftest.py for `from conftest import ...`).
@pytest.fixture(scope="session", name="zoo")
def zoo_fixture(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if "paths" not in _BUILT:
        _BUILT["paths"] = build_zoo(tmp_path_factory.mktemp("vocab_zoo"))
    return _BUILT["paths"]


@pytest.fixture(scope="session", name="weights")
def weights_fixture(zoo: dict[str, Path]) -> dict[str, dict[str, torch.Tensor]]:
    from factory import load_tensors

    if "weights" not in _BUILT:
        _BUILT["weights"] = {name: load_tensors(path) for name, path in zoo.items()}
    return _BUILT["weights"]
