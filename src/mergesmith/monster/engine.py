"""The MergeMonster loop: one model resident, each donor layer streamed from its checkpoint.

MergeMonster's order (`merge-monster.py`): for every donor, for every layer i, for every
method of `merge_method` in turn, every ratio is tried on layer i (the blend of the layer as
it now stands with the donor's layer i) and the strategy picks the candidate kept, if any;
then the headers (headers.py). The hidden states entering layer i are computed once per layer
(`PhraseScorer.prefix`/`advance`) and only layers i..N-1 are rerun per candidate. A layer's
tensors are saved before its candidates and put back unless one is kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mergesmith.io.checkpoint import open_checkpoint
from mergesmith.methods.mergemonster import blend, ratios_for
from mergesmith.monster import headers as hdr
from mergesmith.monster.composition import HEADERS, Composition
from mergesmith.monster.config import MonsterConfig
from mergesmith.monster.scorer import PhraseScorer, Prefix
from mergesmith.monster.strategy import Choice


@dataclass
class Stats:
    candidates: int = 0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.candidates / self.seconds if self.seconds else 0.0


def decision_line(what: str, changed: bool, orig: float, best: float) -> str:
    """MergeMonster's line after a decision (the change is relative to the part's start)."""
    stamp = time.strftime("%H:%M:%S")
    if not changed:
        return f"{stamp} - {what} - RETAINED - {best:.5f}"
    change = abs((best - orig) / orig * 100) if orig else math.inf
    return f"{stamp} - {what} - CHANGED - {orig:.5f} > {best:.5f} - {change:.1f}%"


class Monster:
    def __init__(self, config: MonsterConfig, model: Any, scorer: PhraseScorer,
                 names: dict[str, str], emit: Callable[[str], None] = print,
                 cached: bool = True) -> None:
        self.config, self.model, self.scorer = config, model, scorer
        self.names = names  # display name -> checkpoint path
        self.emit, self.cached = emit, cached
        self.comp = Composition([next(iter(names))])
        self.stats = Stats()
        self.current = scorer.signed(scorer.probabilities())  # the model as it stands
        self.start_total = sum(self.current)
        # Called after every candidate with (donor, part, method, ratio): the progress bar.
        self.on_candidate: Callable[[str, str, str, float], None] | None = None
        self.where = ("", "")  # (donor, part) being searched
        self.before: list[str] = []  # the phrase table of model 1 as loaded (kept across --resume)

    def log(self, line: str) -> None:
        self.stats.log.append(line)
        self.emit(line)

    def _score(self, prefix: Prefix | None) -> list[float]:
        self.stats.candidates += 1
        probs = (self.scorer.probabilities_from(prefix) if self.cached and prefix is not None
                 else self.scorer.probabilities())
        return self.scorer.signed(probs)

    def _decided(self, key: int, what: str, orig: list[float], changed: bool) -> None:
        self.log(repr(self.comp.origin(key)))
        self.log(decision_line(what, changed, sum(orig), sum(self.current)))
        self.log("----")

    def layer_method(self, i: int, method: str, params: dict[str, torch.nn.Parameter],
                     donor: dict[str, torch.Tensor], donor_name: str, prefix: Prefix | None) -> None:
        """One method on layer i: every ratio, then keep the strategy's choice or restore.
        Compounding candidates (MergeMonster's): ratio k blends candidate k - 1, not the layer."""
        cfg = self.config
        orig = self.current
        choice = Choice(cfg.strategy, orig, cfg.strategy_threshold)
        ratios = ratios_for(method, cfg.merge_ratios)
        saved = {n: p.detach().clone() for n, p in params.items()}
        start, kept = saved, None
        try:
            for k, ratio in enumerate(ratios):
                candidate = {n: blend(method, start[n], donor[n].to(p.device, p.dtype), ratio)
                             for n, p in params.items()}
                with torch.no_grad():
                    for n, p in params.items():
                        p.copy_(candidate[n])
                if choice.offer(k, self._score(prefix)):
                    kept = candidate
                if self.on_candidate:
                    self.on_candidate(*self.where, method, ratio)
                start = candidate if cfg.candidates == "compound" else saved
        finally:  # Ctrl-C mid-layer too: the saved state is a decided model
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n] if kept is None else kept[n])
        if choice.index is not None:
            self.current = choice.best
            self._step(f"layer.{i}", donor_name, method, ratios[: choice.index + 1])
            self.comp.book(i, donor_name, method, ratios[choice.index])
        self._decided(i, f"Layer {i + 1}/{len(self.scorer.blocks)}", orig, choice.index is not None)

    def _step(self, part: str, donor: str, method: str, tried: list[float]) -> None:
        """Record a kept candidate: its ratio, and its share as a lerp (the chain of the
        ratios tried up to it, when candidates compound)."""
        chain = tried if self.config.candidates == "compound" else tried[-1:]
        self.comp.apply(part, donor, method, tried[-1], 1 - math.prod(1 - r for r in chain))

    def merge_donor(self, donor_name: str, start_layer: int = 0,
                    on_layer: Callable[[int], None] | None = None) -> None:
        ckpt = open_checkpoint(donor_name, Path(self.names[donor_name]))
        if donor_name not in self.comp.models:
            self.comp.models.append(donor_name)
        layout, n = ckpt.layout, len(self.scorer.blocks)
        prefix = self.scorer.prefix(start_layer) if start_layer < n else None
        for i in range(start_layer, n):
            t0 = time.perf_counter()
            params = dict(self.scorer.blocks[i].named_parameters())
            donor = {r: ckpt.read_finite(layout.layer_name(i, r)) for r in params}
            self.where = (donor_name, f"layer {i + 1}/{n}")
            for method in self.config.merge_methods:
                self.layer_method(i, method, params, donor, donor_name, prefix)
            self.stats.seconds += time.perf_counter() - t0
            if on_layer:  # before advance: an interrupt from here on resumes at layer i + 1
                on_layer(i + 1)
            prefix = self.scorer.advance(prefix) if prefix is not None and i + 1 < n else None
        if self.config.merge_headers:
            self._headers(ckpt, donor_name)
        ckpt.close()

    def header_tensors(self, ckpt: Any) -> hdr.Headers | None:
        """Model 1's token embedding and LM head (None when tied) with the donor's tensors."""
        embed = self.model.get_input_embeddings().weight
        out = self.model.get_output_embeddings()
        head = out.weight if out is not None and out.weight is not embed else None
        names: dict[int, str] = {}
        for n, p in self.model.named_parameters(remove_duplicate=False):
            names.setdefault(id(p), n)  # a tied head's parameter is named after the embedding first
        embed_name = names.get(id(embed))
        head_name = names.get(id(head)) if head is not None else None
        if embed_name not in ckpt.tensors:
            return None
        read = lambda name: ckpt.read_finite(name).to(embed.device, embed.dtype)  # noqa: E731
        return hdr.Headers(
            embed=embed, head=head, donor_embed=read(embed_name),
            donor_head=read(head_name) if head_name in ckpt.tensors else None,
            ids=(hdr.SpecialIds.of(self.model.config), hdr.SpecialIds.of(ckpt.config)))

    def _headers(self, ckpt: Any, donor_name: str) -> None:
        """Embeddings and LM head together, lerped at the last method's ratios (MergeMonster
        reuses that loop's ratio list), scored with full passes."""
        headers = self.header_tensors(ckpt)
        if headers is None:
            return
        cfg = self.config
        ratios = ratios_for(cfg.merge_methods[-1], cfg.merge_ratios)
        self.where = (donor_name, "headers")
        t0 = time.perf_counter()
        orig = self.current
        choice = Choice(cfg.strategy, orig, cfg.strategy_threshold)

        def score() -> list[float]:
            new = self._score(None)
            if self.on_candidate:
                self.on_candidate(donor_name, "headers", "lerp", ratios[len(seen)])
            seen.append(new)
            return new

        seen: list[list[float]] = []
        index, ratio = hdr.search(headers, ratios, cfg.header_merge, cfg.candidates == "compound",
                                  score, choice)
        self.stats.seconds += time.perf_counter() - t0
        if index is not None and ratio is not None:
            self.comp.book(HEADERS, donor_name, "lerp", ratio)
            self._record_header_steps(donor_name, ratios[: index + 1], headers.head is not None)
            self.current = choice.best
        self._decided(HEADERS, "Header", orig, index is not None)
        if cfg.header_merge == "mergemonster":  # the kept model is not the scored one
            self.current = self.scorer.signed(self.scorer.probabilities())

    def _record_header_steps(self, donor: str, tried: list[float], has_head: bool) -> None:
        """The embeddings take one lerp at the kept ratio (MergeMonster restores them before
        each ratio), the head the chain (compounding); "mergemonster" keeps no embeddings."""
        if self.config.header_merge == "scored":
            self.comp.apply("embed", donor, "lerp", tried[-1], tried[-1])
        if has_head:
            self._step("head", donor, "lerp", tried)
