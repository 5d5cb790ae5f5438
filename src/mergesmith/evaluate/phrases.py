"""Phrase probabilities in MergeMonster's sense (Gryphe/MergeMonster, `modules/probability.py`).

Each bad or good phrase comes with contexts; the probability of a phrase after a context is
the product of its tokens' probabilities. The score is the weighted sum, bad phrases
positive and good phrases negative, so lower is better (MergeMonster minimises it).

Config, as MergeMonster's YAML::

    auto_weights: false            # true: weight = 1 / p(reference model) per context
    bad_phrases:
      - phrase: "anticipation"
        weight: 10                 # optional (default 1), for contexts given as strings
        contexts: ["Her body quivers with ", {context: "The air is thick with ", weight: 2}]
    good_phrases: [...]

Tokenization: the phrase is never tokenized alone. Context and context+phrase are tokenized
and the tokens after their longest common prefix are scored, since a phrase often
tokenizes differently in context (a context's trailing space merges into the phrase's
first word in BPE vocabularies, "the " + "mat" -> "the", " mat").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from mergesmith.errors import MergeError, OptionsError
from mergesmith.evaluate.base import Scores, eval_mode
from mergesmith.evaluate.loading import LoadedModel, ModelSource, loaded_model


@dataclass(frozen=True)
class PhraseContext:
    context: str
    weight: float = 1.0


@dataclass(frozen=True)
class Phrase:
    phrase: str
    contexts: tuple[PhraseContext, ...]


@dataclass(frozen=True)
class PhraseSet:
    bad: tuple[Phrase, ...] = ()
    good: tuple[Phrase, ...] = ()
    auto_weights: bool = False

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> PhraseSet:
        """Parse MergeMonster's phrase keys; other keys (model paths...) are ignored."""
        bad = tuple(_parse_phrases(config.get("bad_phrases") or [], "bad_phrases"))
        good = tuple(_parse_phrases(config.get("good_phrases") or [], "good_phrases"))
        if not bad and not good:
            raise OptionsError("the phrase config has neither bad_phrases nor good_phrases",
                               hint="bad_phrases: [{phrase: X, contexts: [Y]}] (MergeMonster's format)")
        return cls(bad=bad, good=good, auto_weights=bool(config.get("auto_weights", False)))

    @classmethod
    def from_yaml(cls, path: str | Path) -> PhraseSet:

        from mergesmith.evaluate.base import read_text_file
        from mergesmith.recipe.yamlloc import load_yaml_docs

        try:
            docs = load_yaml_docs(read_text_file(path, "phrase file"), str(path), what="phrase file")
        except MergeError as exc:  # not valid YAML, an alias bomb: an option error here
            raise OptionsError(exc.message, hint=exc.hint or "bad_phrases/good_phrases in MergeMonster's format") from None
        config = docs[0].data if len(docs) == 1 else None
        if not isinstance(config, Mapping):
            raise OptionsError(f"{path}: a phrase config must be a mapping",
                               hint="bad_phrases: [{phrase: X, contexts: [Y]}] (MergeMonster's format)")
        return cls.from_config(config)

    def entries(self) -> list[tuple[int, Phrase, PhraseContext]]:
        """(sign, phrase, context) for every pair: +1 bad, -1 good."""
        signed = [(1, p) for p in self.bad] + [(-1, p) for p in self.good]
        return [(sign, phrase, ctx) for sign, phrase in signed for ctx in phrase.contexts]


@dataclass(frozen=True)
class PhraseProbability:
    phrase: str
    context: str
    sign: int
    weight: float
    probability: float
    tokens: int

    @property
    def weighted(self) -> float:
        return self.sign * self.weight * self.probability


def _parse_phrases(items: Any, key: str) -> list[Phrase]:
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise OptionsError(f"{key} must be a list of {{phrase, contexts}} entries")
    phrases = []
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, Mapping) or "phrase" not in item or "contexts" not in item:
            raise OptionsError(f"{where} needs the keys 'phrase' and 'contexts'")
        unknown = set(item) - {"phrase", "weight", "contexts"}
        if unknown:
            raise OptionsError(f"{where}: unknown key(s) {sorted(unknown)}")
        weight = _finite(item.get("weight", 1.0), f"{where}.weight")
        if not isinstance(item["contexts"], list):
            raise OptionsError(f"{where}.contexts must be a list of strings or {{context, weight}}")
        contexts = tuple(_parse_context(c, weight, f"{where}.contexts") for c in item["contexts"])
        if not str(item["phrase"]) or not contexts:
            raise OptionsError(f"{where} needs a non-empty phrase and at least one context")
        phrases.append(Phrase(phrase=str(item["phrase"]), contexts=contexts))
    return phrases


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise OptionsError(f"{where}: {value!r} is not a finite number", hint="e.g. weight: 1.0")
    return float(value)


def _parse_context(item: Any, weight: float, where: str) -> PhraseContext:
    # MergeMonster's old format: plain strings take the phrase's weight.
    if isinstance(item, str):
        return PhraseContext(item, weight)
    if isinstance(item, Mapping) and "context" in item:
        return PhraseContext(str(item["context"]), _finite(item.get("weight", weight), f"{where}.weight"))
    raise OptionsError(f"{where}: a context is a string or {{context, weight}}, got {item!r}")


class PhraseProbabilityEvaluator:
    """`<name>/score` (the primary, lower is better), `<name>/bad`, `<name>/good` (raw sums).

    With `auto_weights`, every context's weight becomes 1 / its probability under a
    reference model, so each pair starts at +-1. Call `calibrate(reference)` first;
    otherwise the first model evaluated is the reference (MergeMonster uses its model 1).
    """

    higher_is_better = False

    def __init__(
        self,
        phrases: PhraseSet | Mapping[str, Any] | str | Path,
        *,
        name: str = "phrases",
        batch_size: int = 64,
        device: str | None = None,
    ) -> None:
        if isinstance(phrases, (str, Path)):
            phrases = PhraseSet.from_yaml(phrases)
        elif not isinstance(phrases, PhraseSet):
            phrases = PhraseSet.from_config(phrases)
        self.phrases = phrases
        self.calibrated = not phrases.auto_weights
        self.name = name
        self.primary = f"{name}/score"
        self.batch_size = batch_size
        self.device = device

    def probabilities(self, model: ModelSource, tokenizer: Any = None) -> list[PhraseProbability]:
        loaded = loaded_model(model, tokenizer, device=self.device)
        entries = self.phrases.entries()
        pairs = [(ctx.context, phrase.phrase) for _, phrase, ctx in entries]
        scored = continuation_log_probs(loaded, pairs, batch_size=self.batch_size)
        return [
            PhraseProbability(phrase.phrase, ctx.context, sign, ctx.weight, math.exp(lp), n)
            for (sign, phrase, ctx), (lp, n) in zip(entries, scored)
        ]

    def calibrate(self, model: ModelSource, tokenizer: Any = None) -> None:
        """Set every context's weight to 1 / p(reference); a zero probability keeps its weight."""
        probs = iter(self.probabilities(model, tokenizer))

        def reweight(phrases: tuple[Phrase, ...]) -> tuple[Phrase, ...]:
            out = []
            for phrase in phrases:
                contexts = []
                for ctx in phrase.contexts:
                    p = next(probs).probability
                    contexts.append(replace(ctx, weight=1.0 / p) if p > 0 else ctx)
                out.append(replace(phrase, contexts=tuple(contexts)))
            return tuple(out)

        # entries() lists bad phrases first, then good ones: consume in that order.
        bad = reweight(self.phrases.bad)
        self.phrases = replace(self.phrases, bad=bad, good=reweight(self.phrases.good))
        self.calibrated = True

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores:
        loaded = loaded_model(model, tokenizer, device=self.device)
        if not self.calibrated:
            self.calibrate(loaded)
        probs = self.probabilities(loaded)
        return {
            self.primary: sum(p.weighted for p in probs),
            f"{self.name}/bad": sum(p.probability for p in probs if p.sign > 0),
            f"{self.name}/good": sum(p.probability for p in probs if p.sign < 0),
        }


def continuation_ids(tokenizer: Any, context: str, phrase: str) -> tuple[list[int], int]:
    """Token ids of BOS + context + phrase, and the index of the first token to score.

    The scored tokens are those after the longest common prefix of tokenize(context) and
    tokenize(context + phrase): the phrase's tokens as they appear in context.
    """
    start = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    context_ids = start + tokenizer(context, add_special_tokens=False)["input_ids"]
    full_ids = start + tokenizer(context + phrase, add_special_tokens=False)["input_ids"]
    shared = 0
    for a, b in zip(context_ids, full_ids):
        if a != b:
            break
        shared += 1
    if shared == len(full_ids):
        raise OptionsError(f"the phrase {phrase!r} adds no tokens after {context!r}",
                       hint="give a phrase that is not empty once tokenized after its context")
    if shared == 0:
        raise OptionsError(
            f"the phrase {phrase!r} merges with the first token of the context {context!r} "
            "and the tokenizer has no BOS token to condition on",
            hint="use a longer context",
        )
    return full_ids, shared


def continuation_log_probs(
    loaded: LoadedModel, pairs: Sequence[tuple[str, str]], *, batch_size: int = 64
) -> list[tuple[float, int]]:
    """(log p(phrase | context), number of scored tokens) for each (context, phrase).

    All pairs share right-padded batches of `batch_size` sequences, whatever their phrase.
    """
    encoded = [continuation_ids(loaded.tokenizer, c, p) for c, p in pairs]
    results: list[tuple[float, int]] = []
    with eval_mode(loaded.model):
        for start in range(0, len(encoded), batch_size):
            results.extend(_batch_log_probs(loaded, encoded[start : start + batch_size]))
    return results


def _batch_log_probs(
    loaded: LoadedModel, batch: list[tuple[list[int], int]]
) -> list[tuple[float, int]]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    pad = loaded.tokenizer.pad_token_id or 0
    tokens = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    rows, positions, targets = [], [], []
    for row, (ids, first) in enumerate(batch):
        tokens[row, : len(ids)] = torch.tensor(ids)
        mask[row, : len(ids)] = 1
        for pos in range(first, len(ids)):
            # The logits at pos - 1 predict the token at pos.
            rows.append(row)
            positions.append(pos - 1)
            targets.append(ids[pos])
    device = loaded.device
    logits = loaded.model(input_ids=tokens.to(device), attention_mask=mask.to(device)).logits
    rows_t = torch.tensor(rows, device=device)
    picked = logits[rows_t, torch.tensor(positions, device=device)].float().log_softmax(-1)
    token_lp = picked.gather(1, torch.tensor(targets, device=device)[:, None]).squeeze(1)
    sums = torch.zeros(len(batch), device=device).index_add_(0, rows_t, token_lp)
    counts = torch.bincount(rows_t, minlength=len(batch))
    return [(float(s), int(n)) for s, n in zip(sums.tolist(), counts.tolist())]
