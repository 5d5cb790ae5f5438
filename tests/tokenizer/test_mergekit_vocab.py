"""A union merge agrees with mergekit's, row by row, for every token (mergekit in /work/mkvenv).

w0..w9 are in a (the base) and b, not c: c gets the base's row; c0 and b0 are in one model
each. Ids are compared through the token strings: mergekit appends a union's new tokens in hash
order (different on every run), mergesmith in recipe order. `base_model` is set because
without it mergekit picks the base tokenizer from a set, in hash order too.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import torch
from helpers import EMBED, HEAD, Output, merge_api
from vocab_models import vocab_of
from zoo import zoo_fixture  # noqa: F401  (session fixture)

MERGEKIT = Path("/work/mkvenv/bin/mergekit-yaml")


@pytest.mark.slow  # about 20 s: mergekit's own start-up and merge
def test_union_rows_match_mergekit(zoo, tmp_path: Path) -> None:
    if not MERGEKIT.exists():
        pytest.skip(f"{MERGEKIT} is absent: mergekit is not installed in /work/mkvenv")
    recipe = f"""
models:
  - model: {zoo['b']}
    parameters: {{weight: 1.0}}
  - model: {zoo['c']}
    parameters: {{weight: 0.5}}
  - model: {zoo['a']}
    parameters: {{weight: 0.25}}
merge_method: linear
base_model: {zoo['a']}
tokenizer_source: union
dtype: float32
"""
    (tmp_path / "ours").mkdir()
    ours = Output(merge_api(tmp_path / "ours", recipe))
    (tmp_path / "mk.yaml").write_text(recipe)
    done = subprocess.run([str(MERGEKIT), str(tmp_path / "mk.yaml"), str(tmp_path / "mk")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = Output(tmp_path / "mk")
    assert set(ours.vocab) == set(theirs.vocab)
    assert ours.config["vocab_size"] == json.loads((tmp_path / "mk" / "config.json").read_text())["vocab_size"]
    assert {t: ours.vocab[t] for t in vocab_of(zoo["a"])} == vocab_of(zoo["a"])
    for name in (EMBED, HEAD):
        for token in ours.vocab:
            torch.testing.assert_close(ours.row(name, token), theirs.row(name, token), rtol=1e-5, atol=1e-6,
                                       msg=lambda m, t=token, n=name: f"{n}[{t!r}]: {m}")
