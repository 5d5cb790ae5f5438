"""Tokenizer formats: byte-level BPE (tokenizer.json) and SentencePiece (tokenizer.model), each
written back in its own format with the appended tokens at the same ids."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import EMBED, HEAD, Output, loads_encodes_and_generates, merge_api, row
from vocab_models import bpe, make_llama, vocab_of
from zoo import zoo_fixture  # noqa: F401  (session fixture)

from mergesmith.tokenizer.spm import USER_DEFINED, read_spm

CORPUS_A = ["the quick brown fox jumps over the lazy dog", "merging models is fun and quick"] * 20
CORPUS_B = ["the quick brown cat sleeps under the warm sun", "vocabularies differ between models"] * 20


def test_byte_level_bpe_union(tmp_path: Path) -> None:
    a_dir, b_dir = tmp_path / "bpe_a", tmp_path / "bpe_b"
    wa = make_llama(a_dir, bpe(CORPUS_A, 300), seed=1)
    wb = make_llama(b_dir, bpe(CORPUS_B, 300, added=["<tool>"]), seed=2)
    va, vb = vocab_of(a_dir), vocab_of(b_dir)
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {a_dir}
    parameters: {{weight: 1.0}}
  - model: {b_dir}
    parameters: {{weight: 1.0}}
merge_method: linear
tokenizer_source: union
"""))
    only_b = [t for t in vb if t not in va]
    moved = [t for t in va if t in vb and va[t] != vb[t]]  # shared, at different ids
    assert only_b and moved and set(out.vocab) == set(va) | set(vb)
    for name in (EMBED, HEAD):
        torch.testing.assert_close(out.row(name, only_b[0]), row(wb, vb, name, only_b[0]))
        torch.testing.assert_close(out.row(name, moved[0]), (row(wa, va, name, moved[0]) + row(wb, vb, name, moved[0])) / 2)
    source, written = (json.loads((d / "tokenizer.json").read_text()) for d in (a_dir, out.path))
    assert written["model"] == source["model"]  # merges and vocabulary untouched; tokens appended
    assert len(written["added_tokens"]) == len(source["added_tokens"]) + len(only_b)
    loads_encodes_and_generates(out.path, "the quick brown cat sleeps <tool>")


_MAKE_SPM = """
import shutil, sys, sentencepiece as spm
from transformers import LlamaTokenizer
work, with_json = sys.argv[1], sys.argv[2] == "1"
text = ["w1 w2 merge the models", "the lazy dog w3 sleeps", "tokenizers differ w4"] * 40
open(f"{work}/corpus.txt", "w").write("\\n".join(text))
spm.SentencePieceTrainer.train(input=f"{work}/corpus.txt", model_prefix=f"{work}/m", vocab_size=64,
                               model_type="bpe", user_defined_symbols=["<tool>"], minloglevel=2)
if with_json:
    tok = LlamaTokenizer.from_pretrained(work, vocab_file=f"{work}/m.model")
    tok.save_pretrained(f"{work}/model")
shutil.copy(f"{work}/m.model", f"{work}/model/tokenizer.model")
"""

_READ_SPM = """
import json, sys, sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
print(json.dumps({"size": sp.get_piece_size(), "ids": {t: sp.piece_to_id(t) for t in sys.argv[2:]},
                  "w1": sp.encode("w0 w1", out_type=str)}))
"""


def _run(script: str, *args: str) -> str:
    """Run a script with the sentencepiece library (a dev dependency) in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("with_json", [True, False], ids=["model+json", "model-only"])
def test_sentencepiece_union_appends_user_defined_pieces(zoo, tmp_path: Path, with_json: bool) -> None:
    (tmp_path / "model").mkdir()
    _run(_MAKE_SPM, str(tmp_path), "1" if with_json else "0")
    pieces = read_spm((tmp_path / "model" / "tokenizer.model").read_bytes(), "spm").pieces
    make_llama(tmp_path / "model", None, rows=len(pieces), seed=4)
    out = merge_api(tmp_path, f"""
models:
  - model: {tmp_path / 'model'}
    parameters: {{weight: 1.0}}
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
merge_method: linear
tokenizer_source: union
""")
    written = read_spm((out / "tokenizer.model").read_bytes(), "out")
    new = written.pieces[len(pieces):]
    assert written.pieces[: len(pieces)] == pieces and "w0" in new and "<tool>" not in new
    assert set(written.types[len(pieces):]) == {USER_DEFINED}
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(written.pieces)
    assert (out / "tokenizer.json").is_file() == with_json
    if with_json:  # the two files agree on every id
        assert vocab_of(out) == {p: i for i, p in reversed(list(enumerate(written.pieces)))}
    read = json.loads(_run(_READ_SPM, str(out / "tokenizer.model"), *new[:3]))
    assert read["size"] == len(written.pieces)
    assert read["ids"] == {p: len(pieces) + i for i, p in enumerate(new[:3])}
    assert "w0" in read["w1"]  # a user-defined piece is matched whole
