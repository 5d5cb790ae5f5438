"""The tokenizer files of the output, in the format of the tokenizer they come from.

When anything changes (another model's tokenizer, appended tokens, a chat template), the
returned files are the output's complete side files: the tokenizer source's tokenizer files,
edited where needed, and the config source's generation_config.json. The engine then writes
these instead of copying the config source's, so no stale file of another tokenizer (an
added_tokens.json, a tokenizer.model) is left beside them. Names come only from SIDE_FILES.
"""

from __future__ import annotations

import json
from typing import Any

from mergesmith.io.card import SIDE_FILES
from mergesmith.io.files import read_side_file
from mergesmith.tokenizer.build import OutTokenizer, patched_tokenizer_json
from mergesmith.tokenizer.sources import ADDED_KEYS
from mergesmith.tokenizer.spm import add_pieces
from mergesmith.tokenizer.vocabplan import VocabPlan

GENERATION_CONFIG = "generation_config.json"
TOKENIZER_FILES = tuple(n for n in SIDE_FILES if n != GENERATION_CONFIG)


def _changes(vocab: VocabPlan, config_source: str) -> bool:
    if vocab.chat_template is not None:
        return True
    return vocab.out is not None and (bool(vocab.out.new) or vocab.tokenizer_ref != config_source)


def output_tokenizer_files(plan: Any) -> dict[str, bytes]:
    """Every side file of the output when the tokenizer or chat template changes; else {}."""
    vocab: VocabPlan | None = plan.vocab
    if vocab is None or not _changes(vocab, plan.config_source):
        return {}
    config_dir = plan.checkpoints[plan.config_source].path
    token_dir = vocab.out.source.path if vocab.out is not None else config_dir
    files: dict[str, bytes] = {}
    for name in TOKENIZER_FILES if token_dir is not None else ():
        data = read_side_file(token_dir, name)
        if data is not None:
            files[name] = data
    generation = read_side_file(config_dir, GENERATION_CONFIG) if config_dir is not None else None
    if generation is not None:
        files[GENERATION_CONFIG] = _generation_config(vocab, generation)
    if vocab.out is not None and vocab.out.new:
        _add_tokens(files, vocab.out)
    if vocab.chat_template is not None:
        _set_chat_template(files, vocab.chat_template.text)
    unexpected = set(files) - set(SIDE_FILES)
    assert not unexpected, f"tokenizer files outside the fixed list: {unexpected}"
    return files


def _generation_config(vocab: VocabPlan, raw: bytes) -> bytes:
    if vocab.tokenizer_ref == vocab.config_source:
        return raw
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return raw  # copied as it was, as the engine does for every side file
    if not isinstance(data, dict):
        return raw
    vocab.translate_ids(data, GENERATION_CONFIG)
    return json.dumps(data, indent=2).encode()


def _json_file(files: dict[str, bytes], name: str) -> dict[str, Any] | None:
    if name not in files:
        return None
    try:
        data = json.loads(files[name])
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _add_tokens(files: dict[str, bytes], out: OutTokenizer) -> None:
    """Appended tokens in every format the source keeps its vocabulary in."""
    if out.source.fmt == "tokenizer.json":
        files["tokenizer.json"] = patched_tokenizer_json(out)
    spm = out.source.spm
    in_spm = spm is not None and "tokenizer.model" in files and out.new[0]["id"] == len(spm.pieces)
    if in_spm:  # user-defined pieces get the next ids, the same as in tokenizer.json
        files["tokenizer.model"] = add_pieces(files["tokenizer.model"], spm, [e["content"] for e in out.new])
    config = _json_file(files, "tokenizer_config.json")
    slow_only = out.source.fmt != "tokenizer.json" and not in_spm
    if config is not None and ("added_tokens_decoder" in config or slow_only):
        decoder = config.setdefault("added_tokens_decoder", {})
        for entry in out.new:
            decoder[str(entry["id"])] = {"content": entry["content"], **{k: entry[k] for k in ADDED_KEYS}}
        files["tokenizer_config.json"] = json.dumps(config, indent=2, ensure_ascii=False).encode()
    added = _json_file(files, "added_tokens.json")
    if added is not None or out.source.fmt in ("vocab.json", "vocab.txt"):
        added = added or {}
        added.update({e["content"]: e["id"] for e in out.new})
        files["added_tokens.json"] = json.dumps(added, indent=2, ensure_ascii=False).encode()


def _set_chat_template(files: dict[str, bytes], text: str) -> None:
    """Where transformers reads it: chat_template.jinja (which transformers 5 reads first), and
    the "chat_template" key of tokenizer_config.json / chat_template.json for older readers."""
    files["chat_template.jinja"] = text.encode("utf-8")
    for name in ("tokenizer_config.json", "chat_template.json"):
        data = _json_file(files, name)
        if data is not None:
            data["chat_template"] = text
            files[name] = json.dumps(data, indent=2, ensure_ascii=False).encode()
