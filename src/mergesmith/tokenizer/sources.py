"""A model's vocabulary (token string -> id) read from its tokenizer files, without running code.

Formats, in the order transformers prefers them: `tokenizer.json` (read with the `tokenizers`
library, which never executes code), a SentencePiece `tokenizer.model` (read by `spm.py`),
or the slow formats `vocab.json` / `vocab.txt`. Added tokens listed in `added_tokens.json` or
`tokenizer_config.json` (`added_tokens_decoder`) are included for the formats that keep them
there. No `trust_remote_code`, no tokenizer class is imported from the model directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.errors import CheckpointError
from mergesmith.io.files import read_side_file
from mergesmith.tokenizer.spm import SpmVocab, read_spm

# Attributes of an added token as tokenizer.json stores them (besides id and content).
ADDED_KEYS = ("single_word", "lstrip", "rstrip", "normalized", "special")


@dataclass
class ModelVocab:
    """The tokens of one model's tokenizer."""

    ref: str
    path: Path
    tokens: dict[str, int]  # every token (added ones included) -> id
    added: dict[str, dict[str, Any]] = field(default_factory=dict)  # added token -> attributes
    fmt: str = "tokenizer.json"  # the file the vocabulary was read from
    spm: SpmVocab | None = None  # the SentencePiece pieces, where the model has tokenizer.model

    @property
    def size(self) -> int:
        """Rows needed to index every token: the largest id + 1."""
        return max(self.tokens.values(), default=-1) + 1

    def id_to_token(self) -> dict[int, str]:
        return {i: t for t, i in self.tokens.items()}


def by_id(tokens: dict[str, int]) -> dict[str, int]:
    """The same mapping in id order: the tokenizers library returns a hash order that changes
    from run to run, and warnings and appended ids must not."""
    return dict(sorted(tokens.items(), key=lambda kv: kv[1]))


def read_text(path: Path) -> str:
    """A tokenizer file's text: a regular file inside the model folder (io.files.read_side_file)."""
    data = read_side_file(path.parent, path.name)
    if data is None:
        raise CheckpointError(f"{path}: missing", hint="fetch the tokenizer files of this model again")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc})",
                              hint="fetch the tokenizer files of this model again") from None


def _json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}",
                              hint="fetch the tokenizer files of this model again") from None


def read_vocab(ref: str, path: Path | None) -> ModelVocab | None:
    """The model's vocabulary, or None when its directory has no tokenizer files."""
    if path is None:
        return None
    spm = _read_spm_file(path)
    if (path / "tokenizer.json").is_file():
        vocab = _from_tokenizer_json(ref, path / "tokenizer.json")
    elif spm is not None:
        vocab = ModelVocab(ref, path, {p: i for i, p in reversed(list(enumerate(spm.pieces)))},
                           fmt="tokenizer.model")
    elif (path / "vocab.json").is_file():
        vocab = ModelVocab(ref, path, {str(t): int(i) for t, i in _json(path / "vocab.json").items()},
                           fmt="vocab.json")
    elif (path / "vocab.txt").is_file():
        lines = read_text(path / "vocab.txt").splitlines()
        vocab = ModelVocab(ref, path, {t: i for i, t in reversed(list(enumerate(lines)))},
                           fmt="vocab.txt")
    else:
        return None
    vocab.spm = spm
    if vocab.fmt != "tokenizer.json":
        _add_slow_added_tokens(vocab, path)
    return vocab


def _read_spm_file(path: Path) -> SpmVocab | None:
    file = path / "tokenizer.model"
    if not file.is_file():
        return None
    return read_spm(read_side_file(path, file.name) or b"", str(file))


def _from_tokenizer_json(ref: str, file: Path) -> ModelVocab:
    from tokenizers import Tokenizer

    text = read_text(file)
    try:
        tokens = by_id(Tokenizer.from_str(text).get_vocab(with_added_tokens=True))
    except Exception as exc:  # tokenizers raises plain Exceptions for unknown formats
        raise CheckpointError(f"{file}: the tokenizers library cannot read it ({exc})",
                              hint="upgrade `tokenizers`, or fetch the file again") from None
    added = {}
    for entry in json.loads(text).get("added_tokens") or []:
        added[entry["content"]] = {k: entry[k] for k in ADDED_KEYS if k in entry}
    return ModelVocab(ref, file.parent, tokens, added, "tokenizer.json")


def _add_slow_added_tokens(vocab: ModelVocab, path: Path) -> None:
    """Slow tokenizers keep added tokens beside the vocabulary file."""
    if (path / "added_tokens.json").is_file():
        for token, index in _json(path / "added_tokens.json").items():
            vocab.tokens.setdefault(str(token), int(index))
            vocab.added.setdefault(str(token), {"special": False})
    config = path / "tokenizer_config.json"
    decoder = _json(config).get("added_tokens_decoder") if config.is_file() else None
    for index, info in (decoder or {}).items():
        if isinstance(info, dict) and isinstance(info.get("content"), str):
            vocab.tokens.setdefault(info["content"], int(index))
            vocab.added.setdefault(info["content"], {k: info[k] for k in ADDED_KEYS if k in info})
