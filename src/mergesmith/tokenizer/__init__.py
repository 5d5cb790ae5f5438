"""Vocabulary alignment of embeddings and heads, the output tokenizer, and chat templates.

`plan_vocabulary` runs at plan time from headers and tokenizer files (no tensor is read):

- no `tokenizer_source` / `tokenizer:` setting: the models' vocabulary rows must agree in
  number, or the plan fails naming each model's size and the two fixes; with
  `--truncate-embeddings` the common prefix of rows is kept (with warnings);
- a setting: the output tokenizer is built (`base`, `union`, or a model's; plus `tokens:`),
  and every embedding and head row is aligned by token string before the method runs,
  missing tokens filled by the rules in `rules.py`;
- `chat_template`: resolved here (so a bad template fails the plan), written by
  `output_tokenizer_files`.
"""

from __future__ import annotations

from typing import Any

from mergesmith.errors import IncompatibleModelsError
from mergesmith.tokenizer.files import output_tokenizer_files
from mergesmith.tokenizer.setup import aligned_plan, embedding_rows, vocab_models
from mergesmith.tokenizer.sources import read_vocab
from mergesmith.tokenizer.templates import resolve_chat_template
from mergesmith.tokenizer.vocabplan import VocabPlan

__all__ = ["VocabPlan", "output_tokenizer_files", "plan_vocabulary"]


def plan_vocabulary(recipe: Any, checkpoints: dict[str, Any], config_source: str, *,
                    truncate: bool = False) -> VocabPlan | None:
    """The vocabulary plan of a recipe, or None when rows are merged as they are."""
    template, notes = resolve_chat_template(recipe.chat_template,
                                            {ref: c.path for ref, c in checkpoints.items()})
    rows = {ref: embedding_rows(c) for ref, c in checkpoints.items()}
    settings = recipe.tokenizer
    source = settings.source if settings is not None else recipe.tokenizer_source
    if source is not None:
        plan = aligned_plan(recipe, checkpoints, config_source, rows)
        if truncate:
            plan.notes.append("--truncate-embeddings is ignored: the recipe's tokenizer setting aligns "
                              "rows by token instead")
    else:
        plan = _unaligned_plan(recipe, checkpoints, config_source, rows, truncate)
        if plan is None and template is None:
            return None
        plan = plan or VocabPlan("keep", checkpoints, config_source)
    plan.chat_template = template
    plan.notes[:0] = notes
    if template is not None and template.tokens:
        _check_template_tokens(plan, template.tokens, template.origin)
    return plan


def _unaligned_plan(recipe: Any, checkpoints: dict[str, Any], config_source: str,
                    rows: dict[str, int | None], truncate: bool) -> VocabPlan | None:
    """No tokenizer setting: equal sizes merge as they are; different sizes fail or truncate."""
    sizes = {m: rows[m] for m in vocab_models(recipe, checkpoints) if rows.get(m) is not None}
    if len(set(sizes.values())) <= 1:
        notes = _different_tokens(list(sizes), checkpoints)
        return VocabPlan("keep", checkpoints, config_source, notes=notes) if notes else None
    if not truncate:
        raise _sizes_error(sizes, checkpoints)
    keep = min(v for v in sizes.values() if v is not None)
    plan = VocabPlan("truncate", checkpoints, config_source, rows=keep,
                     model_rows={m: r for m, r in rows.items() if r is not None})
    listed = ", ".join(f"{m}: {r}" for m, r in sizes.items())
    plan.notes.append(f"--truncate-embeddings: keeping the first {keep} rows of the embeddings and "
                      f"LM head ({listed}); this is right only if ids below {keep} are the same tokens "
                      "in every model")
    _check_prefix(plan, list(sizes), keep)
    return plan


def _different_tokens(models: list[str], checkpoints: dict[str, Any]) -> list[str]:
    """Same sizes but different tokenizers: rows are merged by id, which mixes unrelated tokens
    unless the differences are few (e.g. renamed reserved tokens). Warn with the count."""
    files = {}
    for model in models:
        path = checkpoints[model].path
        found = [path / n for n in ("tokenizer.json", "tokenizer.model", "vocab.json") if path and (path / n).is_file()]
        if found:
            files[model] = found[0]
    if len(files) < 2 or len({f.read_bytes() for f in files.values()}) == 1:
        return []  # fine-tunes usually ship the very same file: no parsing needed
    known = {m: v.id_to_token() for m in files if (v := read_vocab(m, checkpoints[m].path)) is not None}
    first, *rest = known
    ids = sorted(set().union(*known.values()))
    differ = [i for i in ids if any(known[m].get(i) != known[first].get(i) for m in rest)]
    if not differ:
        return []
    sample = ", ".join(f"{m}: {known[m].get(differ[0])!r}" for m in known)
    return [f"the embeddings and LM head are merged row by row, but the tokenizers differ at {len(differ)} of "
            f"{len(ids)} ids (e.g. id {differ[0]}: {sample}); unless those are renamed unused tokens, set "
            "`tokenizer_source` to align rows by token (docs/tokenizers.md)"]


def _sizes_error(sizes: dict[str, int | None], checkpoints: dict[str, Any]) -> IncompatibleModelsError:
    parts = []
    for model, size in sizes.items():
        vocab = read_vocab(model, checkpoints[model].path)
        extra = f", tokenizer {len(vocab.tokens)} tokens" if vocab is not None else ""
        parts.append(f"{model}: {size} rows{extra}")
    return IncompatibleModelsError(
        "the models have different vocabulary sizes (" + "; ".join(parts) + "), so their "
        "embedding and LM head rows cannot be merged row by row",
        hint="either set `tokenizer_source: union` (or `base`, or one model's name) in the recipe to "
             "align rows by token (see docs/tokenizers.md), or pass --truncate-embeddings (API: "
             "truncate_embeddings=True) to keep the common prefix of rows, which is right only when "
             "those ids are the same tokens in every model")


def _check_prefix(plan: VocabPlan, models: list[str], keep: int) -> None:
    """Truncation is only sound when the kept ids mean the same tokens everywhere: check it."""
    vocabs = {m: read_vocab(m, plan.checkpoints[m].path) for m in models}
    known = {m: v.id_to_token() for m, v in vocabs.items() if v is not None}
    if len(known) >= 2:
        first, *rest = known
        differ = [i for i in range(keep) if any(known[m].get(i) != known[first].get(i) for m in rest)]
        if differ:
            i = differ[0]
            sample = ", ".join(f"{m}: {known[m].get(i)!r}" for m in known)
            plan.notes.append(f"--truncate-embeddings: {len(differ)} of the kept ids are different tokens "
                              f"in different models (e.g. id {i}: {sample}); their merged rows mix "
                              "unrelated tokens; use `tokenizer_source` instead")
    source = vocabs.get(plan.config_source) or read_vocab(plan.config_source,
                                                          plan.checkpoints[plan.config_source].path)
    beyond = sorted((i, t) for t, i in (source.tokens.items() if source else []) if i >= keep)
    if beyond:
        plan.notes.append(f"--truncate-embeddings: the output tokenizer (from {plan.config_source!r}) has "
                          f"{len(beyond)} token(s) with ids >= {keep} and no row: "
                          f"{', '.join(repr(t) for _, t in beyond[:12])}; encoding them will fail")


def _check_template_tokens(plan: VocabPlan, wanted: tuple[str, ...], origin: str) -> None:
    tokens = plan.out.tokens if plan.out is not None else None
    if tokens is None:
        vocab = read_vocab(plan.config_source, plan.checkpoints[plan.config_source].path)
        tokens = vocab.tokens if vocab is not None else {}
    lacking = [t for t in wanted if t not in tokens]
    if lacking:
        plan.notes.append(f"chat_template {origin} uses {', '.join(lacking)}, which the output tokenizer "
                          "splits into several tokens; add them with `tokenizer: tokens:` (see "
                          "docs/tokenizers.md) or pick the template the models were trained with")
