"""Building the aligned vocabulary plan from a recipe's `tokenizer_source` / `tokenizer:`."""

from __future__ import annotations

from typing import Any

from mergesmith.arch import head_and_embedding
from mergesmith.errors import CheckpointError, RecipeError, did_you_mean
from mergesmith.recipe import ModelTokenSource, TokenSetting, ZeroSource
from mergesmith.tokenizer.build import build_output
from mergesmith.tokenizer.rules import Override
from mergesmith.tokenizer.sources import ModelVocab, read_vocab
from mergesmith.tokenizer.vocabplan import VocabPlan, listing


def embedding_rows(ckpt: Any) -> int | None:
    """Rows of a model's token embedding (or of its head when it has no embedding)."""
    head, embed = head_and_embedding(ckpt.tensors)
    name = embed or head
    return ckpt.tensors[name].shape[0] if name and ckpt.tensors[name].shape else None


def vocab_models(recipe: Any, checkpoints: dict[str, Any]) -> list[str]:
    """The models whose rows the embedding and head merge: every model of a `models:` recipe;
    for slices, the first slice's (embeddings) and last slice's (head) sources and base; for
    `modules:`, those of the text_decoder module (none when it is not merged)."""
    from mergesmith.methods import get_method

    models, slices = recipe.models, recipe.slices
    if recipe.modules:
        text = recipe.modules.get("text_decoder")
        if text is None:
            return []
        models, slices = text.models, text.slices
    if models:
        names = [*([recipe.base_model] if recipe.base_model else []), *(m.model for m in models)]
        return [m for m in dict.fromkeys(names) if m in checkpoints]
    first, last = slices[0], slices[-1]
    names = [s.model for s in [*first.sources, *last.sources]]
    if get_method(recipe.merge_method).uses_base:
        names += [b for b in (first.base_model, last.base_model, recipe.base_model) if b]
    return [m for m in dict.fromkeys(names) if m in checkpoints]


def _base_ref(recipe: Any) -> str:
    """mergekit's "base" tokenizer: the base model, else the first model the recipe names."""
    return recipe.base_model or recipe.referenced_models()[0]


def _model_ref(value: str, checkpoints: dict[str, Any], where: str) -> str:
    if value not in checkpoints:
        raise RecipeError(f"{where}: {value!r} is not a model of this recipe{did_you_mean(value, checkpoints)}",
                          hint=f"use one of {', '.join(checkpoints)} (or union / base)")
    return value


def _vocabularies(recipe: Any, checkpoints: dict[str, Any], notes: list[str]) -> dict[str, ModelVocab]:
    """Every model's vocabulary; a model without tokenizer files is taken to share the base's
    (mergekit does the same), with a note."""
    base = _base_ref(recipe)
    vocabs = {ref: read_vocab(ref, c.path) for ref, c in checkpoints.items()}
    if vocabs.get(base) is None:
        raise CheckpointError(
            f"model {base!r} ({checkpoints[base].where}) has no tokenizer files (tokenizer.json, "
            "tokenizer.model, vocab.json or vocab.txt), which a tokenizer setting needs",
            hint="copy the tokenizer files of this model into its directory")
    out: dict[str, ModelVocab] = {}
    for ref, vocab in vocabs.items():
        if vocab is None:
            notes.append(f"model {ref!r} has no tokenizer files; taking it to use the tokenizer of {base!r}")
            vocab = ModelVocab(ref, vocabs[base].path, vocabs[base].tokens, vocabs[base].added,
                               vocabs[base].fmt, vocabs[base].spm)  # type: ignore[union-attr]
        out[ref] = vocab
    return out


def aligned_plan(recipe: Any, checkpoints: dict[str, Any], config_source: str,
                 rows: dict[str, int | None]) -> VocabPlan:
    notes: list[str] = []
    settings = recipe.tokenizer
    source = settings.source if settings is not None else recipe.tokenizer_source
    tokens: dict[str, TokenSetting] = (settings.tokens or {}) if settings is not None else {}
    vocabs = _vocabularies(recipe, checkpoints, notes)
    model_rows = {m: r for m, r in rows.items() if r is not None}
    src = _base_ref(recipe) if source in ("union", "base") else _model_ref(
        source, checkpoints, "tokenizer source" if settings is None else "tokenizer: source")
    others = [(vocabs[m], model_rows.get(m, 0)) for m in recipe.referenced_models() if m != src]
    out = build_output(vocabs[src], others, list(tokens), union=source == "union")
    out_rows = max(out.size, model_rows.get(src, 0))  # padded rows of the source are kept
    multiple = settings.pad_to_multiple_of if settings is not None else None
    if multiple and out_rows % multiple:
        out_rows += multiple - out_rows % multiple
    plan = VocabPlan("align", checkpoints, config_source, rows=out_rows, model_rows=model_rows,
                     out=out, vocabs=vocabs, base=recipe.base_model or _first_slice_base(recipe), notes=notes)
    plan.overrides = {tok: _override(tok, s, plan) for tok, s in tokens.items()}
    _note_tokens_beyond_rows(plan)
    return plan


def _first_slice_base(recipe: Any) -> str | None:
    return recipe.slices[0].base_model if recipe.slices else None


def _override(token: str, setting: TokenSetting, plan: VocabPlan) -> Override:
    where = f"tokenizer: tokens: {token!r}: source"
    source = setting.source
    if source is None:
        if setting.force:
            raise RecipeError(f"tokenizer: tokens: {token!r}: force: true needs a source",
                              hint="give source: MODEL, {kind: model_token, ...} or {kind: zero}")
        return Override("rules")
    if isinstance(source, ZeroSource):
        return Override("zero", force=setting.force)
    model = _model_ref(source.model if isinstance(source, ModelTokenSource) else source,
                       plan.checkpoints, where)
    rows = plan.model_rows.get(model, 0)
    if isinstance(source, ModelTokenSource) and source.token_id is not None:
        if not 0 <= source.token_id < rows:
            raise RecipeError(f"{where}: token_id {source.token_id} is outside model {model!r}'s "
                              f"{rows} embedding rows", hint=f"use an id from 0 to {rows - 1}")
        return Override("row", model, source.token_id, setting.force)
    wanted = source.token if isinstance(source, ModelTokenSource) else token
    row = plan.present(model, rows).get(wanted)  # type: ignore[arg-type]
    if row is None:
        raise RecipeError(f"{where}: model {model!r} has no token {wanted!r} (with an embedding row)",
                          hint="name a token it has with {kind: model_token, model: M, token: T}, "
                               "or a row with token_id")
    return Override("row", model, row, setting.force)


def _note_tokens_beyond_rows(plan: VocabPlan) -> None:
    for model, vocab in plan.vocabs.items():
        rows = plan.model_rows.get(model)
        beyond = sorted((i, t) for t, i in vocab.tokens.items() if rows is not None and i >= rows)
        if beyond:
            plan.notes.append(f"model {model!r}: {len(beyond)} token(s) of its tokenizer have ids beyond its "
                              f"{rows} embedding rows, so they count as missing from it: "
                              f"{listing([t for _, t in beyond])}")
