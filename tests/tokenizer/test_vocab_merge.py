"""Merging models whose vocabularies differ: rows aligned by token for every kind of method."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import EMBED, HEAD, Output, loads_encodes_and_generates, merge_api, row
from vocab_models import make_llama, vocab_of
from zoo import weights_fixture, zoo_fixture  # noqa: F401  (session fixtures)

from mergesmith.api import merge


def close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6)


def test_union_with_linear_merges_shared_tokens_and_keeps_single_model_rows(zoo, weights, tmp_path: Path) -> None:
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
  - model: {zoo['c']}
    parameters: {{weight: 0.5}}
merge_method: linear
tokenizer_source: union
"""))
    va, vc = vocab_of(zoo["a"]), vocab_of(zoo["c"])
    a, c = weights["a"], weights["c"]
    assert {t: out.vocab[t] for t in va} == va  # the base's (first model's) ids stay valid
    assert set(out.vocab) == set(va) | set(vc) and len(out.vocab) == 41
    for name in (EMBED, HEAD):
        close(out.row(name, "w15"), (row(a, va, name, "w15") + 0.5 * row(c, vc, name, "w15")) / 1.5)
        close(out.row(name, "c0"), row(c, vc, name, "c0"))  # only in c: c's row
        close(out.row(name, "<|im_start|>"), row(c, vc, name, "<|im_start|>"))
        close(out.row(name, "w0"), row(a, va, name, "w0"))  # only in a: a's row
    assert out.config["vocab_size"] == out.tensors[EMBED].shape[0] == 41
    added = json.loads((out.path / "tokenizer.json").read_text())["added_tokens"]
    assert {"content": "<|im_start|>", "special": True}.items() <= next(
        e for e in added if e["content"] == "<|im_start|>").items()
    ids = loads_encodes_and_generates(out.path, "w1 c0 <|im_start|> w20")
    assert ids == [out.vocab[t] for t in ("w1", "c0", "<|im_start|>", "w20")]


def test_base_tokenizer_with_task_arithmetic(zoo, weights, tmp_path: Path) -> None:
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
  - model: {zoo['b']}
    parameters: {{weight: 0.5}}
merge_method: task_arithmetic
base_model: {zoo['base']}
tokenizer_source: base
"""))
    vbase, vb = vocab_of(zoo["base"]), vocab_of(zoo["b"])
    base, a, b = weights["base"], weights["a"], weights["b"]
    assert out.vocab == vbase and out.config["vocab_size"] == 33
    assert (out.path / "tokenizer.json").read_bytes() == (zoo["base"] / "tokenizer.json").read_bytes()
    for name in (EMBED, HEAD):
        assert out.tensors[name].shape[0] == 33  # b's 37 rows aligned to the base's 33 tokens
        for token in ("w3", "</s>"):
            r0 = row(base, vbase, name, token)
            close(out.row(name, token), r0 + (row(a, vbase, name, token) - r0) + 0.5 * (row(b, vb, name, token) - r0))
    loads_encodes_and_generates(out.path, "w1 w2 w29")


def test_union_with_task_arithmetic_gives_new_tokens_the_donor_row(zoo, weights, tmp_path: Path) -> None:
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
  - model: {zoo['b']}
    parameters: {{weight: 0.5}}
merge_method: task_arithmetic
base_model: {zoo['base']}
tokenizer_source: union
"""))
    vb = vocab_of(zoo["b"])
    assert out.config["vocab_size"] == 37 and all(out.vocab[t] == vb[t] for t in ("b0", "b2", "<tool>"))
    for name in (EMBED, HEAD):  # base and a lack b0: both get b's row, so every delta is zero
        close(out.row(name, "b0"), row(weights["b"], vb, name, "b0"))
        close(out.row(name, "<tool>"), row(weights["b"], vb, name, "<tool>"))
    loads_encodes_and_generates(out.path, "w1 b0 <tool> w2")


def _slerp(zoo, t: float, tmp_path: Path) -> Output:
    return Output(merge_api(tmp_path / f"t{t}", f"""
models:
  - model: {zoo['a']}
  - model: {zoo['c']}
merge_method: slerp
base_model: {zoo['a']}
parameters: {{t: {t}}}
tokenizer_source: {zoo['c']}
"""))


def test_model_tokenizer_with_slerp_aligns_rows_and_renumbers_special_ids(zoo, weights, tmp_path: Path) -> None:
    from mergesmith.methods.slerp import slerp_pair

    for t in (0.0, 1.0, 0.5):
        (tmp_path / f"t{t}").mkdir()
    at_a, at_c, half = (_slerp(zoo, t, tmp_path) for t in (0.0, 1.0, 0.5))
    va, vc = vocab_of(zoo["a"]), vocab_of(zoo["c"])
    assert half.vocab == vc and half.config["vocab_size"] == 35  # c's 31 tokens and 4 padding rows
    for name in (EMBED, HEAD):
        close(at_c.tensors[name], weights["c"][name])  # t = 1: c itself, padding rows included
        close(at_a.row(name, "w15"), row(weights["a"], va, name, "w15"))  # t = 0: a, aligned
        close(at_a.row(name, "c0"), row(weights["c"], vc, name, "c0"))  # a lacks c0: c's row
        close(at_a.tensors[name][31:], at_a.tensors[name][:31].mean(0).expand(4, -1))  # a has no padding
        close(half.tensors[name], slerp_pair(0.5, at_a.tensors[name], at_c.tensors[name]))
    # a's config and generation config name </s> by a's id 2; c's tokenizer has it elsewhere
    assert half.config["eos_token_id"] == vc["</s>"] != 2
    assert json.loads((half.path / "generation_config.json").read_text())["eos_token_id"] == vc["</s>"]
    assert (half.path / "tokenizer.json").read_bytes() == (zoo["c"] / "tokenizer.json").read_bytes()
    loads_encodes_and_generates(half.path, "w15 c0 <|im_end|>")


def test_passthrough_slices_take_rows_from_their_slice_and_warn_of_zero_rows(zoo, weights, tmp_path: Path) -> None:
    (tmp_path / "recipe.yaml").write_text(f"""
slices:
  - sources: [{{model: {zoo['a']}, layer_range: [0, 1]}}]
  - sources: [{{model: {zoo['c']}, layer_range: [1, 2]}}]
merge_method: passthrough
tokenizer:
  source: union
  tokens:
    c0: {{source: {zoo['c']}}}
""")
    result = merge(tmp_path / "recipe.yaml", tmp_path / "out")
    out = Output(tmp_path / "out")
    va, vc = vocab_of(zoo["a"]), vocab_of(zoo["c"])
    close(out.row(EMBED, "w0"), row(weights["a"], va, EMBED, "w0"))  # embeddings: the first slice
    close(out.row(HEAD, "w20"), row(weights["c"], vc, HEAD, "w20"))  # head: the last slice
    close(out.row(EMBED, "c0"), row(weights["c"], vc, EMBED, "c0"))  # configured: read from c
    assert not out.row(EMBED, "c1").any() and not out.row(HEAD, "w0").any()
    warned = "\n".join(result.plan.warnings)
    assert f"{EMBED}: 7 token(s)" in warned and "'c1'" in warned and "'c0'" not in warned
    assert f"{HEAD}: 10 token(s)" in warned and "'w0'" in warned
    loads_encodes_and_generates(out.path, "w1 c0 w20")


def test_token_overrides_model_token_zero_and_force(zoo, weights, tmp_path: Path) -> None:
    a, c = zoo["a"], zoo["c"]
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {a}
    parameters: {{weight: 1.0}}
  - model: {c}
    parameters: {{weight: 1.0}}
merge_method: linear
tokenizer:
  source: union
  tokens:
    "<new>": {{source: {{kind: model_token, model: {a}, token: w1}}}}
    w12: {{source: {{kind: zero}}, force: true}}
    w13: {{source: {c}, force: true}}
    w0: {{source: {{kind: model_token, model: {c}, token_id: 0}}}}
    w14: {{source: {{kind: model_token, model: {c}, token_id: 1}}, force: true}}
"""))
    va, vc = vocab_of(a), vocab_of(c)
    wa, wc = weights["a"], weights["c"]
    assert out.vocab["<new>"] == 41 and out.config["vocab_size"] == 42
    for name in (EMBED, HEAD):
        close(out.row(name, "<new>"), row(wa, va, name, "w1"))
        assert not out.row(name, "w12").any()
        close(out.row(name, "w13"), row(wc, vc, name, "w13"))
        close(out.row(name, "w0"), (row(wa, va, name, "w0") + wc[name][0]) / 2)  # not forced: a keeps its own
        close(out.row(name, "w14"), wc[name][1])
    loads_encodes_and_generates(out.path, "<new> w12 w13")


def test_pad_to_multiple_of_adds_mean_rows(zoo, tmp_path: Path) -> None:
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
  - model: {zoo['c']}
    parameters: {{weight: 1.0}}
merge_method: linear
tokenizer: {{source: union, pad_to_multiple_of: 16}}
"""))
    embed = out.tensors[EMBED]
    assert embed.shape[0] == out.config["vocab_size"] == 48 and len(out.vocab) == 41
    close(embed[41:], embed[:41].mean(0).expand(7, -1))  # linear of each model's mean row
    loads_encodes_and_generates(out.path, "w1 c0")


def test_padded_rows_beyond_the_tokenizer_are_kept(zoo, weights, tmp_path: Path) -> None:
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['p1']}
    parameters: {{weight: 1.0}}
  - model: {zoo['p2']}
    parameters: {{weight: 3.0}}
merge_method: linear
tokenizer_source: base
"""))
    assert out.config["vocab_size"] == 40 and len(out.vocab) == 33
    for name in (EMBED, HEAD):  # all 40 rows, the 7 padding rows included, merged as they are
        close(out.tensors[name], (weights["p1"][name] + 3.0 * weights["p2"][name]) / 4.0)
    loads_encodes_and_generates(out.path, "w1 w2")


def test_a_tied_model_gives_its_embedding_rows_to_the_head(zoo, weights, tmp_path: Path) -> None:
    from zoo import c_tokenizer

    tied = make_llama(tmp_path / "tied", c_tokenizer(), seed=6, tied=True)
    out = Output(merge_api(tmp_path, f"""
models:
  - model: {zoo['a']}
    parameters: {{weight: 1.0}}
  - model: {tmp_path / 'tied'}
    parameters: {{weight: 1.0}}
merge_method: linear
tokenizer_source: union
"""))
    va, vt = vocab_of(zoo["a"]), vocab_of(tmp_path / "tied")
    for name in (EMBED, HEAD):  # the tied model's head is its embedding
        close(out.row(name, "c0"), tied[EMBED][vt["c0"]])
        close(out.row(name, "w15"), (row(weights["a"], va, name, "w15") + tied[EMBED][vt["w15"]]) / 2)
    loads_encodes_and_generates(out.path, "w1 c0 w15")
