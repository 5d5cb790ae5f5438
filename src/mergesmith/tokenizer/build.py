"""The output tokenizer: a model's tokenizer (`base` or a named model), or the union of all.

The union starts from the base's tokenizer unchanged (so the base's token ids stay valid) and
appends every token of the other models it lacks, model by model in recipe order and, within
a model, by id; then the `tokens:` the recipe adds. Appended tokens are added tokens (as in
mergekit): a model's own added tokens keep their settings (special, lstrip...), other tokens
become plain added tokens. mergekit appends them in a hash order that changes from run to run;
here the order, and so every id, is the same on every run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from mergesmith.errors import MergeError
from mergesmith.tokenizer.sources import ADDED_KEYS, ModelVocab, by_id


@dataclass
class OutTokenizer:
    """The output vocabulary: the source model's tokenizer plus appended tokens."""

    source: ModelVocab  # the model whose tokenizer files the output is built on
    tokens: dict[str, int]  # output token -> id
    new: list[dict[str, Any]] = field(default_factory=list)  # appended added-token entries

    @property
    def size(self) -> int:
        return max(self.tokens.values(), default=-1) + 1


def _entry(token: str, attrs: dict[str, Any] | None) -> dict[str, Any]:
    """A tokenizer.json added-token entry; plain tokens get add_tokens()'s defaults."""
    special = bool((attrs or {}).get("special", False))
    base = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": not special,
            "special": special}
    base.update({k: v for k, v in (attrs or {}).items() if k in ADDED_KEYS})
    return {"content": token, **base}


def build_output(source: ModelVocab, others: list[tuple[ModelVocab, int]], extra: list[str],
                 *, union: bool) -> OutTokenizer:
    """`others`: (vocabulary, embedding rows) of the other models, in recipe order; tokens with
    ids beyond a model's rows have no embedding there and are not taken into the union."""
    wanted: list[dict[str, Any]] = []
    seen = set(source.tokens)
    if union:
        for vocab, rows in others:
            for token, index in sorted(vocab.tokens.items(), key=lambda kv: kv[1]):
                if index < rows and token not in seen:
                    seen.add(token)
                    wanted.append(_entry(token, vocab.added.get(token)))
    for token in extra:
        if token not in seen:
            seen.add(token)
            wanted.append(_entry(token, None))
    if source.fmt == "tokenizer.json":
        return _append_with_library(source, wanted)
    tokens = dict(source.tokens)
    next_id = source.size
    for entry in wanted:
        entry["id"] = tokens[entry["content"]] = next_id
        next_id += 1
    return OutTokenizer(source, by_id(tokens), wanted)


def _append_with_library(source: ModelVocab, wanted: list[dict[str, Any]]) -> OutTokenizer:
    """Let the tokenizers library assign the ids, exactly as loading the output will."""
    if not wanted:
        return OutTokenizer(source, by_id(source.tokens))
    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_str(source_json(source))
    for entry in wanted:  # one at a time: ids follow the order above
        attrs = {k: entry[k] for k in ADDED_KEYS}
        tok.add_tokens([AddedToken(entry["content"], **attrs)])
    tokens = by_id(tok.get_vocab(with_added_tokens=True))
    used = set(source.tokens.values())
    for entry in wanted:
        entry["id"] = tokens[entry["content"]]
        if entry["id"] in used:
            raise MergeError(f"tokenizer of {source.ref!r}: the tokenizers library gave new token "
                             f"{entry['content']!r} id {entry['id']}, which another token has",
                             hint="the source tokenizer's ids have gaps; report this with the model")
        used.add(entry["id"])
    return OutTokenizer(source, tokens, wanted)


def source_json(vocab: ModelVocab) -> str:
    """The text of the source's tokenizer.json (read again rather than kept: it can be 10 MB)."""
    assert vocab.path is not None
    from mergesmith.tokenizer.sources import read_text

    return read_text(vocab.path / "tokenizer.json")


def patched_tokenizer_json(out: OutTokenizer) -> bytes:
    """The source tokenizer.json with the new added tokens: everything else is kept as it was
    (merges format, normalizer...), so tools that read the file directly see the same file."""
    from tokenizers import Tokenizer

    data = json.loads(source_json(out.source))
    data["added_tokens"] = list(data.get("added_tokens") or []) + [
        {"id": e["id"], "content": e["content"], **{k: e[k] for k in ADDED_KEYS}} for e in out.new]
    text = json.dumps(data, ensure_ascii=False, indent=2)
    check = Tokenizer.from_str(text).get_vocab(with_added_tokens=True)
    if check != out.tokens:
        raise MergeError("the output tokenizer.json does not reload with the planned token ids",
                         hint="report this with the models' tokenizer.json files")
    return text.encode("utf-8")
