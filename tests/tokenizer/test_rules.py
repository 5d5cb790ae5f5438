"""The missing-token rules, the SentencePiece format and chat template resolution, on small
hand-made inputs whose answers are worked out by hand."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
import torch

from mergesmith.errors import RecipeError
from mergesmith.tokenizer.rules import Override, apply_spec, build_spec
from mergesmith.tokenizer.spm import USER_DEFINED, add_pieces, read_spm
from mergesmith.tokenizer.templates import BUILTIN, resolve_chat_template


def _rows(*values: float) -> torch.Tensor:
    """One row per value, each row [v, v]: row identity is visible in the result."""
    return torch.tensor([[v, v] for v in values], dtype=torch.float32)


def _align(out_tokens: dict[str, int], rows: int, vocabs: dict[str, dict[str, int]],
           tensors: dict[str, torch.Tensor], overrides: dict[str, Override] | None = None,
           base: str | None = None, extra: dict[str, torch.Tensor] | None = None):
    model_rows = {m: t.shape[0] for m, t in tensors.items()}
    spec = build_spec(out_tokens, rows, model_rows, vocabs, overrides or {}, base)
    return spec, apply_spec(spec, tensors, lambda m: (extra or {})[m])


def test_present_tokens_keep_their_own_rows_in_the_output_order() -> None:
    spec, out = _align({"x": 0, "y": 1}, 2, {"a": {"y": 0, "x": 1}, "b": {"x": 0, "y": 1}},
                       {"a": _rows(10, 11), "b": _rows(20, 21)})
    assert out["a"][:, 0].tolist() == [11, 10]  # a's rows permuted to the output ids
    assert out["b"] is not None and out["b"][:, 0].tolist() == [20, 21]
    assert spec.identity == {"b"} and not spec.zero_tokens


def test_missing_rows_follow_the_rules_in_order() -> None:
    vocabs = {
        "base": {"shared": 0, "base_and_a": 1},
        "a": {"shared": 0, "base_and_a": 1, "a_and_b": 2, "only_a": 3},
        "b": {"shared": 0, "a_and_b": 1},
        "c": {"shared": 0, "a_and_b": 1},
    }
    tensors = {"base": _rows(0, 1), "a": _rows(10, 11, 12, 13), "b": _rows(20, 21), "c": _rows(30, 31)}
    out_tokens = {"shared": 0, "base_and_a": 1, "a_and_b": 2, "only_a": 3, "nobody": 4}
    spec, out = _align(out_tokens, 5, vocabs, tensors, base="base")
    col = {m: t[:, 0].tolist() for m, t in out.items()}
    assert col["b"][1] == 1  # base_and_a: b lacks it; base has it -> the base's row, not the mean
    assert col["base"][2] == pytest.approx((12 + 21 + 31) / 3)  # a_and_b: not in base -> the mean
    assert col["b"][3] == 13 and col["base"][3] == 13  # only_a: the one model that has it
    assert all(col[m][4] == 0 for m in col)  # nobody: zero, and reported
    assert spec.zero_tokens == ["nobody"]
    assert [col[m][0] for m in ("base", "a", "b", "c")] == [0, 10, 20, 30]


def test_configured_sources_come_first_and_force_replaces_present_rows() -> None:
    vocabs = {"a": {"x": 0, "y": 1}, "b": {"x": 0, "z": 1}}
    tensors = {"a": _rows(10, 11), "b": _rows(20, 21)}
    overrides = {
        "y": Override("row", "b", 1),  # b lacks y: b's row 1 (its z), not a's row
        "x": Override("zero", force=True),  # every model's x becomes zero
        "new": Override("row", "ext", 0),  # from a model that is not an input here
    }
    spec, out = _align({"x": 0, "y": 1, "z": 2, "new": 3}, 4, vocabs, tensors, overrides,
                       extra={"ext": _rows(99)})
    assert out["a"][:, 0].tolist() == [0, 11, 21, 99]
    assert out["b"][:, 0].tolist() == [0, 21, 21, 99]
    assert not spec.zero_tokens  # zero was asked for: no warning


def test_padding_rows_are_kept_where_padding_and_else_the_mean() -> None:
    # a pads 2 rows past its 2 tokens; b has only its 2 tokens; the output keeps 4 rows
    vocabs = {"a": {"x": 0, "y": 1}, "b": {"x": 0, "y": 1}}
    spec, out = _align({"x": 0, "y": 1}, 4, vocabs, {"a": _rows(10, 11, 12, 13), "b": _rows(20, 22)})
    assert out["a"][:, 0].tolist() == [10, 11, 12, 13] and "a" in spec.identity
    assert out["b"][:, 0].tolist() == [20, 22, 21, 21]


def test_dtypes_are_kept_and_rows_beyond_a_tensor_count_as_missing() -> None:
    vocabs = {"a": {"x": 0, "y": 1}, "b": {"x": 0}}  # b's vocabulary limited to its rows already
    tensors = {"a": _rows(10, 11).to(torch.bfloat16), "b": _rows(20).to(torch.float16)}
    _, out = _align({"x": 0, "y": 1}, 2, vocabs, tensors)
    assert out["a"].dtype == torch.bfloat16 and out["b"].dtype == torch.float16
    assert out["b"][:, 0].tolist() == [20, 11]


def _proto_piece(piece: str, kind: int) -> bytes:
    text = piece.encode()
    body = b"\x0a" + bytes([len(text)]) + text + b"\x15" + struct.pack("<f", -1.0) + b"\x18" + bytes([kind])
    return b"\x0a" + bytes([len(body)]) + body


def test_sentencepiece_pieces_are_read_and_appended_before_the_other_fields() -> None:
    trainer_spec = b"\x12\x04\x08\x01\x10\x02"  # field 2 (trainer_spec), kept byte for byte
    data = _proto_piece("<unk>", 2) + _proto_piece("\u2581the", 1) + trainer_spec
    vocab = read_spm(data, "test")
    assert vocab.pieces == ["<unk>", "\u2581the"] and vocab.types == [2, 1]
    out = add_pieces(data, vocab, ["<tool>", "é"])
    again = read_spm(out, "test")
    assert again.pieces == ["<unk>", "\u2581the", "<tool>", "é"]
    assert again.types[2:] == [USER_DEFINED, USER_DEFINED]
    assert out.endswith(trainer_spec)


def test_a_broken_sentencepiece_model_is_a_checkpoint_error() -> None:
    from mergesmith.errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a valid SentencePiece model"):
        read_spm(b"\x0a\x50\x0a", "tokenizer.model")


def test_chat_templates_resolve_from_names_text_and_inputs(tmp_path: Path) -> None:
    for name, (text, _) in BUILTIN.items():
        assert resolve_chat_template(name, {})[0].text == text
    literal = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    assert resolve_chat_template(literal, {})[0].text == literal
    with pytest.raises(RecipeError, match='did you mean "chatml"'):
        resolve_chat_template("chatlm", {})
    with pytest.raises(RecipeError, match="does not parse"):
        resolve_chat_template("{% for m in messages %}", {})
    for name, text in (("x", "T1"), ("y", "T2"), ("z", "T2")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "chat_template.jinja").write_text(text)
    paths = {n: tmp_path / n for n in ("x", "y", "z")}
    template, notes = resolve_chat_template("auto", paths)
    assert template.text == "T2" and "from y" in template.origin and not notes
    template, notes = resolve_chat_template("auto", {"none": tmp_path})
    assert template is None and "no input model has a chat template" in notes[0]
