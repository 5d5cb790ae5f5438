"""The header stage: embeddings and LM head, lerped with a donor's (MergeMonster's
`merge_header_tensors`), tried at the ratios of the last merge method.

A donor whose vocabulary differs is first fitted to model 1's: a smaller one gets model 1's
last rows appended, a larger one is cut; where the BOS or EOS ids differ, the donor's rows
are swapped to model 1's ids (before the cut), in place, so the next ratio swaps them again,
as MergeMonster's code does.

The candidates are MergeMonster's: its loop puts the layers and embeddings back before each
ratio but not the LM head, so with compounding candidates (the default) the head is lerped
again at every ratio (ratio k: lerp(...lerp(head, donor, r1)..., donor, rk)) while the
embeddings are lerp(embeddings, donor, rk). What is kept (`header_merge`):

- "scored" (the default): the embeddings and head of the kept candidate, the model scored;
- "mergemonster": MergeMonster's result. Its last restore writes model 1's embeddings into
  the tensor the kept candidate shares, so the saved model has the kept head and model 1's
  embeddings, a model that was never scored.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from mergesmith.methods.mergemonster import lerp


@dataclass
class SpecialIds:
    bos: Any
    eos: Any

    @classmethod
    def of(cls, config: Any) -> SpecialIds:
        get = config.get if isinstance(config, dict) else lambda k: getattr(config, k, None)
        return cls(get("bos_token_id"), get("eos_token_id"))


def fit_donor(v0: torch.Tensor, v1: torch.Tensor, ids0: SpecialIds, ids1: SpecialIds) -> torch.Tensor:
    """Model 2's rows `v1` fitted to model 1's `v0` (rows = tokens). Writes into `v1` when it
    is not grown, as MergeMonster does."""
    size0, size1 = v0.shape[0], v1.shape[0]
    if size0 > size1:
        v1 = torch.cat([v1, v0[-(size0 - size1):]], dim=0)
    for a, b in ((ids0.bos, ids1.bos), (ids0.eos, ids1.eos)):
        # MergeMonster indexes with the ids as they are; ids that are missing or lists are left
        if a != b and isinstance(a, int) and isinstance(b, int):
            v1[a] = v1[b]
            v1[b] = v0[a]
    return v1[:size0] if size0 < size1 else v1


@dataclass
class Headers:
    """Model 1's embedding and head parameters (one parameter when tied) and the donor's."""

    embed: torch.nn.Parameter
    head: torch.nn.Parameter | None  # None: tied to the embeddings
    donor_embed: torch.Tensor
    donor_head: torch.Tensor | None
    ids: tuple[SpecialIds, SpecialIds]

    def params(self) -> list[torch.nn.Parameter]:
        return [self.embed] + ([self.head] if self.head is not None else [])


def candidates(h: Headers, ratios: list[float], compound: bool) -> Iterator[dict[str, torch.Tensor]]:
    """For each ratio, the values of embed (and head) to score, as {"embed": ..., "head": ...}."""
    embed0 = h.embed.detach().clone()
    head0 = h.head.detach().clone() if h.head is not None else None
    donor_embed = h.donor_embed.clone()  # fit_donor's swaps persist from ratio to ratio
    donor_head = h.donor_head.clone() if h.donor_head is not None else None
    head = head0
    for ratio in ratios:
        out = {"embed": lerp(embed0, fit_donor(embed0, donor_embed, *h.ids), ratio)}
        if head is not None and donor_head is not None:
            start = head if compound else head0
            out["head"] = head = lerp(start, fit_donor(start, donor_head, *h.ids), ratio)
        yield out


def kept(h: Headers, candidate: dict[str, torch.Tensor] | None, mode: str) -> dict[str, torch.Tensor]:
    """What the model keeps: the candidate ("scored"), or its head only ("mergemonster")."""
    if candidate is None:
        return {}
    if mode == "mergemonster":
        return {"head": candidate["head"]} if "head" in candidate else {}
    return candidate


def assign(h: Headers, values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        if "embed" in values:
            h.embed.copy_(values["embed"])
        if "head" in values and h.head is not None:
            h.head.copy_(values["head"])


def search(h: Headers, ratios: list[float], mode: str, compound: bool,
           score: Callable[[], list[float]], choice: Any) -> tuple[int | None, float | None]:
    """Try every candidate, keep the chosen one (or restore); returns (index, ratio)."""
    saved = {"embed": h.embed.detach().clone()}
    if h.head is not None:
        saved["head"] = h.head.detach().clone()
    chosen = None
    try:
        for i, values in enumerate(candidates(h, ratios, compound)):
            assign(h, values)
            if choice.offer(i, score()):
                chosen = values
    finally:
        assign(h, saved)
    assign(h, kept(h, chosen, mode))
    return choice.index, (ratios[choice.index] if choice.index is not None else None)
