"""The vocabulary plan the planner and executor call: which tensors are indexed by token, their
output shape, and how each model's rows are aligned before the merge method runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from threading import Lock
from typing import Any

from mergesmith.arch import head_and_embedding, is_embedding, is_head
from mergesmith.errors import IncompatibleModelsError
from mergesmith.tokenizer.build import OutTokenizer
from mergesmith.tokenizer.rules import AlignSpec, Override, apply_spec, build_spec
from mergesmith.tokenizer.sources import ModelVocab
from mergesmith.tokenizer.templates import ChatTemplate

SPECIAL_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
_MAX_LISTED = 12


def listing(tokens: list[str]) -> str:
    shown = ", ".join(repr(t) for t in tokens[:_MAX_LISTED])
    return shown + (f" and {len(tokens) - _MAX_LISTED} more" if len(tokens) > _MAX_LISTED else "")


def is_positional(name: str) -> bool:
    lowered = name.lower()
    return "position" in lowered or "wpe" in lowered


def embedding_name(tensors: Any, name: str) -> str | None:
    """The tensor of a model that plays `name`'s part: itself, or for a head the tied embedding."""
    if name in tensors:
        return name
    head, embed = head_and_embedding(tensors)
    return (head or embed) if is_head(name) else embed


def _key(rows: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """One alignment per set of (model, rows): the planner and the executor list the inputs in
    different orders (the executor puts the base last)."""
    return tuple(sorted(rows.items()))


@dataclass
class VocabPlan:
    """mode "align": rows aligned by token to `out`; "truncate": the first `rows` rows kept;
    "keep": rows untouched (only the chat template changes)."""

    mode: str
    checkpoints: dict[str, Any]
    config_source: str
    rows: int | None = None  # rows of every vocabulary tensor in the output
    model_rows: dict[str, int] = field(default_factory=dict)  # each model's embedding rows
    out: OutTokenizer | None = None
    vocabs: dict[str, ModelVocab] = field(default_factory=dict)
    overrides: dict[str, Override] = field(default_factory=dict)
    base: str | None = None
    chat_template: ChatTemplate | None = None
    notes: list[str] = field(default_factory=list)
    _specs: dict[tuple, AlignSpec] = field(default_factory=dict)
    _spec_names: dict[tuple, list[str]] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    @property
    def tokenizer_ref(self) -> str:
        """The model whose tokenizer files the output gets."""
        return self.out.source.ref if self.out is not None else self.config_source

    @property
    def warnings(self) -> list[str]:
        out = list(self.notes)
        for key, names in self._spec_names.items():
            zero = self._specs[key].zero_tokens
            if zero:
                models = ", ".join(m for m, _ in key)
                out.append(f"{' and '.join(names)}: {len(zero)} token(s) are in none of its input models "
                           f"({models}) and have no configured source, so their rows are zero: "
                           f"{listing(zero)}; set `tokenizer: tokens: {{TOKEN: {{source: MODEL}}}}` to choose")
        return out

    def applies_to(self, name: str, refs: list[Any]) -> bool:
        if self.mode == "keep" or not (is_embedding(name) or is_head(name)) or is_positional(name):
            return False
        for ref in refs:
            meta = self.checkpoints[ref.model].tensors[ref.name]
            if not meta.shape or meta.shape[0] != self.model_rows.get(ref.model):
                return False
        return True

    def shape(self, name: str, refs: list[Any]) -> tuple[int, ...]:
        assert self.rows is not None
        metas = {r.model: self.checkpoints[r.model].tensors[r.name] for r in refs}
        rest = {tuple(m.shape[1:]) for m in metas.values()}
        if len(rest) > 1:
            shapes = ", ".join(f"{model}: {list(m.shape)}" for model, m in metas.items())
            raise IncompatibleModelsError(
                f"tensor {name!r}: besides the vocabulary, the shapes differ between models ({shapes})",
                hint="these models have different hidden sizes; they cannot be merged")
        if self.mode == "align":
            key = _key({model: m.shape[0] for model, m in metas.items()})
            self._spec(key)
            self._spec_names.setdefault(key, []).append(name)
            self._check_sources(name, rest.pop())
        return (self.rows, *next(iter(metas.values())).shape[1:])

    def _check_sources(self, name: str, rest: tuple[int, ...]) -> None:
        """A configured source outside the tensor's inputs is read at merge time: check it now."""
        for model in {o.model for o in self.overrides.values() if o.kind == "row"}:
            tensors = self.checkpoints[model].tensors
            own = embedding_name(tensors, name)
            if own is None or tuple(tensors[own].shape[1:]) != rest:
                raise IncompatibleModelsError(
                    f"tokenizer: tokens: a source is model {model!r}, which has no tensor like "
                    f"{name!r} of shape [*, {', '.join(map(str, rest))}]",
                    hint="take token rows from a model of the same architecture and size")

    def _spec(self, key: tuple) -> AlignSpec:
        with self._lock:  # executor threads may ask at once; build each spec once
            spec = self._specs.get(key)
            if spec is None:
                assert self.out is not None and self.rows is not None
                model_rows = dict(key)
                present = {m: self.present(m, rows) for m, rows in model_rows.items()}
                base = self.base if self.base in model_rows else None
                spec = self._specs[key] = build_spec(self.out.tokens, self.rows, model_rows, present,
                                                     self.overrides, base)
            return spec

    def present(self, model: str, rows: int) -> dict[str, int]:
        """The model's tokens that have a row among its first `rows` rows."""
        return {t: i for t, i in self.vocabs[model].tokens.items() if i < rows}

    def align(self, name: str, tensors: dict[str, Any]) -> dict[str, Any]:
        assert self.rows is not None
        if self.mode == "truncate":
            return {m: t[: self.rows] for m, t in tensors.items()}
        key = _key({m: t.shape[0] for m, t in tensors.items()})
        return apply_spec(self._spec(key), tensors, lambda model: self._read_extra(model, name))

    def _read_extra(self, model: str, name: str) -> Any:
        ckpt = self.checkpoints[model]
        own = embedding_name(ckpt.tensors, name)
        assert own is not None  # checked by _check_sources at plan time
        return ckpt.read(own)

    def update_config(self, config: dict[str, Any]) -> None:
        text = config.get("text_config") if isinstance(config.get("text_config"), dict) else None
        if self.rows is not None:
            if "vocab_size" in config or text is None or "vocab_size" not in text:
                config["vocab_size"] = self.rows
            if text is not None and "vocab_size" in text:
                text["vocab_size"] = self.rows
        for target in (config, text or {}):
            self.translate_ids(target, "config.json")

    def translate_ids(self, target: dict[str, Any], where: str) -> None:
        """Special-token ids of the config source, renumbered for a tokenizer from another model."""
        source = self.vocabs.get(self.config_source)
        if self.out is None or source is None or self.tokenizer_ref == self.config_source:
            return
        by_id = source.id_to_token()
        for key in SPECIAL_ID_KEYS:
            value = target.get(key)
            ids = value if isinstance(value, list) else [value]
            if not ids or not all(isinstance(i, int) for i in ids):
                continue
            mapped = [self.out.tokens.get(by_id.get(i, ""), None) for i in ids]
            if any(m is None for m in mapped):
                self.notes.append(f"{where}: {key} = {value} names token(s) of {self.config_source!r} that "
                                  f"the output tokenizer (from {self.tokenizer_ref!r}) lacks; left as it is")
                continue
            target[key] = mapped if isinstance(value, list) else mapped[0]
