"""Phrase scores of a live model, with the hidden states entering a layer cached.

All contexts of all phrases go through the model in one right-padded batch (causal
attention: padding after a sequence never reaches its tokens). Tokenization is the phrase
evaluator's (`continuation_ids`): context and context+phrase are tokenized and the tokens
after their common prefix are scored.

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

    def __init__(self, model: Any, tokenizer: Any, phrases: PhraseSet) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.phrases = phrases
        self.entries = phrases.entries()
        self.weights = [sign * ctx.weight for sign, _, ctx in self.entries]
        self.blocks, self.norm = find_blocks(model)
        self._encode()

    def _encode(self) -> None:
        encoded = [continuation_ids(self.tokenizer, c.context, p.phrase) for _, p, c in self.entries]
        width = max(len(ids) for ids, _ in encoded)
        pad = self.tokenizer.pad_token_id or 0
        device = next(self.model.parameters()).device
        self.tokens = torch.full((len(encoded), width), pad, dtype=torch.long)
        self.mask = torch.zeros((len(encoded), width), dtype=torch.long)
        rows, pos, targets = [], [], []
        for row, (ids, first) in enumerate(encoded):
            self.tokens[row, : len(ids)] = torch.tensor(ids)
            self.mask[row, : len(ids)] = 1
            for p in range(first, len(ids)):  # logits at p - 1 predict the token at p
                rows.append(row)
                pos.append(p - 1)
                targets.append(ids[p])
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
        lp = picked.gather(1, self.targets[:, None]).squeeze(1)
        sums = torch.zeros(len(self.entries), device=lp.device).index_add_(0, self.rows, lp)
        return [math.exp(v) for v in sums.tolist()]

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


class _Stop(Exception):
    """Ends a forward pass once layer i's inputs are captured (later layers are not needed)."""


def _first(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output
