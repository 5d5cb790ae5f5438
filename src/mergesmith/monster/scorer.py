"""Phrase scores of a live model, with the hidden states entering a layer cached.

All contexts of all phrases go through the model in one right-padded batch (causal
attention: padding after a sequence never reaches its tokens). Two tokenization rules:

- "mergemonster" (the default; MergeMonster's `calculate_joint_log_probability`): the text
  is `tokenizer.encode(context + phrase)` with the tokenizer's own special tokens, and the
  phrase's tokens `encode(phrase)` (no special tokens) are scored at the last positions of it,
  whatever the joined text tokenized to;
- "continuation" (the phrase evaluator's, `continuation_ids`): BOS + context + phrase, and
  the tokens after the common prefix with the context are scored.

Log-probabilities are summed per pair in double precision, in order, as MergeMonster's loop.

`prefix(i)` runs the model once and records, with a pre-hook on layer i, the hidden states
and the keyword arguments (mask, rotary embeddings, positions) that layer i receives. A
candidate for layer i is then scored by running layers i..N-1, the final norm and the head
only (`score_from(i, prefix)`): the layers before i are unchanged by the candidate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from mergesmith.errors import OptionsError
from mergesmith.evaluate.phrases import PhraseSet, continuation_ids

_FINAL_NORMS = ("norm", "ln_f", "final_layernorm", "norm_f", "final_layer_norm")


@dataclass
class Prefix:
    layer: int
    hidden: torch.Tensor
    kwargs: dict[str, Any]


def find_blocks(model: Any) -> tuple[torch.nn.ModuleList, torch.nn.Module | None]:
    """The decoder layer list (the longest ModuleList) and the final norm of a causal LM."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    blocks = max(lists, key=len)
    inner = model.get_decoder() if hasattr(model, "get_decoder") else model
    norm = next((getattr(inner, n) for n in _FINAL_NORMS if hasattr(inner, n)), None)
    return blocks, norm


class PhraseScorer:
    """Signed weighted probabilities per (phrase, context): + bad, - good; lower is better."""

    def __init__(self, model: Any, tokenizer: Any, phrases: PhraseSet, rule: str = "mergemonster") -> None:
        self.model, self.tokenizer, self.rule = model, tokenizer, rule
        self.phrases = phrases
        self.entries = phrases.entries()
        self.weights = [sign * ctx.weight for sign, _, ctx in self.entries]
        self.blocks, self.norm = find_blocks(model)
        self._encode()

    def _encode(self) -> None:
        encoded = [scored_tokens(self.tokenizer, c.context, p.phrase, self.rule) for _, p, c in self.entries]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        device = next(self.model.parameters()).device
        self.tokens = torch.full((len(encoded), width), pad, dtype=torch.long)
        self.mask = torch.zeros((len(encoded), width), dtype=torch.long)
        rows, pos, targets = [], [], []
        for row, (ids, scored) in enumerate(encoded):
            self.tokens[row, : len(ids)] = torch.tensor(ids)
            self.mask[row, : len(ids)] = 1
            for p, target in scored:
                rows.append(row)
                pos.append(p)
                targets.append(target)
        self.tokens, self.mask = self.tokens.to(device), self.mask.to(device)
        self.rows = torch.tensor(rows, device=device)
        self.pos = torch.tensor(pos, device=device)
        self.targets = torch.tensor(targets, device=device)

    def set_weights(self, probabilities: list[float]) -> None:
        """auto_weights: every pair's weight becomes 1 / p under model 1 (so each starts at +-1)."""
        self.weights = [
            sign * (1.0 / p if p > 0 else ctx.weight)
            for (sign, _, ctx), p in zip(self.entries, probabilities)
        ]

    def _probabilities(self, logits: torch.Tensor) -> list[float]:
        picked = logits[self.rows, self.pos].float().log_softmax(-1)
        lp = picked.gather(1, self.targets[:, None]).squeeze(1).tolist()
        sums = [0.0] * len(self.entries)
        for row, value in zip(self.rows.tolist(), lp):
            sums[row] += value
        return [math.exp(v) for v in sums]

    @torch.no_grad()
    def probabilities(self) -> list[float]:
        """Full forward pass (the reference the cached path must match)."""
        return self._probabilities(self.model(input_ids=self.tokens, attention_mask=self.mask).logits)

    def signed(self, probabilities: list[float]) -> list[float]:
        return [w * p for w, p in zip(self.weights, probabilities)]

    @torch.no_grad()
    def prefix(self, layer: int) -> Prefix:
        captured: dict[str, Any] = {}

        def hook(_module: Any, args: tuple, kwargs: dict) -> None:
            captured["hidden"] = args[0] if args else kwargs["hidden_states"]
            captured["kwargs"] = {k: v for k, v in kwargs.items() if k != "hidden_states"}
            raise _Stop

        handle = self.blocks[layer].register_forward_pre_hook(hook, with_kwargs=True)
        try:
            self.model(input_ids=self.tokens, attention_mask=self.mask, use_cache=False)
        except _Stop:
            pass
        finally:
            handle.remove()
        return Prefix(layer, captured["hidden"], captured["kwargs"])

    @torch.no_grad()
    def advance(self, prefix: Prefix) -> Prefix:
        """The prefix of the next layer, from this one (layer i as it now stands)."""
        hidden = _first(self.blocks[prefix.layer](prefix.hidden, **prefix.kwargs))
        return Prefix(prefix.layer + 1, hidden, prefix.kwargs)

    @torch.no_grad()
    def probabilities_from(self, prefix: Prefix) -> list[float]:
        hidden = prefix.hidden
        for block in self.blocks[prefix.layer :]:
            hidden = _first(block(hidden, **prefix.kwargs))
        if self.norm is not None:
            hidden = self.norm(hidden)
        return self._probabilities(self.model.get_output_embeddings()(hidden))


def scored_tokens(tokenizer: Any, context: str, phrase: str, rule: str) -> tuple[list[int], list[tuple[int, int]]]:
    """The token ids of a pair and the (position, token) pairs scored: the logits at the
    position predict the token."""
    if rule == "continuation":
        ids, first = continuation_ids(tokenizer, context, phrase)
        return ids, [(p - 1, ids[p]) for p in range(first, len(ids))]
    ids = tokenizer.encode(context + phrase)
    targets = tokenizer.encode(phrase, add_special_tokens=False)
    start = len(ids) - len(targets)
    # MergeMonster reads logits[0, start + i - 1]: a negative index counts from the end.
    positions = [start + i - 1 for i in range(len(targets))]
    if any(p < -len(ids) for p in positions):
        raise OptionsError(f"the phrase {phrase!r} has more tokens alone than {context!r} + it "
                           "together", hint="use phrase_scoring: continuation")
    return ids, [(p % len(ids), t) for p, t in zip(positions, targets)]


class _Stop(Exception):
    """Ends a forward pass once layer i's inputs are captured (later layers are not needed)."""


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output
