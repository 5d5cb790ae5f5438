"""The MergeMonster loop: one model resident, each donor layer streamed from its checkpoint.

For every donor and every layer i (then the headers), each method and ratio is tried on a
copy of layer i's tensors only; the hidden states entering layer i are computed once per
layer (`PhraseScorer.prefix`/`advance`) and only layers i..N-1 are rerun per candidate. The
best candidate is kept when the strategy accepts it against the current model, otherwise the
layer's saved tensors are put back (never written in place before that decision).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mergesmith.arch import is_embedding, is_head
from mergesmith.io.checkpoint import open_checkpoint
from mergesmith.methods.mergemonster import blend, ratios_for
from mergesmith.monster import strategy as strat
from mergesmith.monster.composition import HEADERS, Composition
from mergesmith.monster.config import MonsterConfig
from mergesmith.monster.scorer import PhraseScorer, Prefix


@dataclass
class Stats:
    candidates: int = 0
    seconds: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.candidates / self.seconds if self.seconds else 0.0


class Monster:
    def __init__(self, config: MonsterConfig, model: Any, scorer: PhraseScorer,
                 names: dict[str, str], emit: Callable[[str], None] = print,
                 cached: bool = True) -> None:
        self.config, self.model, self.scorer = config, model, scorer
        self.names = names  # display name -> checkpoint path
        self.emit, self.cached = emit, cached
        self.params = dict(model.named_parameters())
        self.comp = Composition([next(iter(names))])
        self.stats = Stats()
        self.current = scorer.signed(scorer.probabilities())
        self.start_total = sum(self.current)
        # Called after every candidate with (donor, part, method, ratio): the progress bar.
        self.on_candidate: Callable[[str, str, str, float], None] | None = None
        self.where = ("", "")  # (donor, part) being searched
        self.before: list[str] = []  # the phrase table of model 1 as loaded (kept across --resume)

    def log(self, line: str) -> None:
        self.stats.log.append(line)
        self.emit(line)

    def layer_params(self, index: int) -> dict[str, torch.nn.Parameter]:
        return dict(self.scorer.blocks[index].named_parameters())

    def _score(self, prefix: Prefix) -> list[float]:
        self.stats.candidates += 1
        probs = (self.scorer.probabilities_from(prefix) if self.cached
                 else self.scorer.probabilities())
        return self.scorer.signed(probs)

    def _search(self, params: dict[str, torch.nn.Parameter], donor: dict[str, torch.Tensor],
                key: str, donor_name: str, score: Callable[[], list[float]]) -> bool:
        """Each method in turn: try its ratios, keep the best if the strategy accepts it."""
        changed = False
        cfg = self.config
        for method in cfg.merge_methods:
            saved = {n: p.detach().clone() for n, p in params.items()}
            best = self._try_ratios(method, params, saved, donor, score)
            with torch.no_grad():
                accepted = best is not None and strat.accept(
                    cfg.strategy, self.current, best[0], cfg.strategy_threshold)
                for n, p in params.items():
                    p.copy_(blend(method, saved[n], donor[n].to(p.device, p.dtype), best[1])
                            if accepted else saved[n])
            if accepted:
                self.current = best[0]
                self.comp.apply(key, donor_name, method, best[1])
                changed = True
        return changed

    def _try_ratios(self, method: str, params: dict[str, torch.nn.Parameter],
                    saved: dict[str, torch.Tensor], donor: dict[str, torch.Tensor],
                    score: Callable[[], list[float]]) -> tuple[list[float], float] | None:
        cfg = self.config
        best: tuple[list[float], float] | None = None
        try:
            for ratio in ratios_for(method, cfg.merge_ratios):
                with torch.no_grad():
                    for n, p in params.items():
                        p.copy_(blend(method, saved[n], donor[n].to(p.device, p.dtype), ratio))
                new = score()
                if self.on_candidate:
                    self.on_candidate(*self.where, method, ratio)
                if best is None or strat.better(cfg.strategy, best[0], new, cfg.strategy_threshold):
                    best = (new, ratio)
        except KeyboardInterrupt:
            # Ctrl-C mid-layer: put the layer back so the saved state is a decided model.
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])
            raise
        return best

    def _line(self, what: str, changed: bool, old: float) -> str:
        new = sum(self.current)
        pct = (self.start_total - new) / abs(self.start_total) * 100 if self.start_total else 0.0
        state = "CHANGED" if changed else "RETAINED"
        return f"{time.strftime('%H:%M:%S')} - {what} - {state} - {old:.5f} > {new:.5f} - {pct:.1f}%"

    def merge_donor(self, donor_name: str, start_layer: int = 0,
                    on_layer: Callable[[int], None] | None = None) -> None:
        ckpt = open_checkpoint(donor_name, Path(self.names[donor_name]))
        if donor_name not in self.comp.models:
            self.comp.models.append(donor_name)
        layout, n = ckpt.layout, len(self.scorer.blocks)
        prefix = self.scorer.prefix(start_layer) if start_layer < n else None
        for i in range(start_layer, n):
            t0 = time.perf_counter()
            params = self.layer_params(i)
            donor = {r: ckpt.read(layout.layer_name(i, r)) for r in params}
            self.where = (donor_name, f"layer {i + 1}/{n}")
            old = sum(self.current)
            changed = self._search(params, donor, f"layer.{i}", donor_name,
                                   lambda p=prefix: self._score(p))
            self.stats.seconds += time.perf_counter() - t0
            self.log(json.dumps(self.comp.table(f"layer.{i}")))
            self.log(self._line(f"Layer {i + 1}/{n}", changed, old))
            if on_layer:  # before advance: an interrupt from here on resumes at layer i + 1
                on_layer(i + 1)
            prefix = self.scorer.advance(prefix) if i + 1 < n else None
        if self.config.merge_headers:
            self._headers(ckpt, donor_name)
        ckpt.close()

    def _headers(self, ckpt: Any, donor_name: str) -> None:
        """Embeddings and LM head together, scored with full passes (they touch every layer)."""
        names = [t for t in ckpt.tensors if (is_embedding(t) or is_head(t)) and t in self.params]
        if not names:
            return
        params = {t: self.params[t] for t in names}
        donor = {t: ckpt.read(t) for t in names}
        self.where = (donor_name, "headers")
        old = sum(self.current)
        t0 = time.perf_counter()

        def score() -> list[float]:
            self.stats.candidates += 1
            return self.scorer.signed(self.scorer.probabilities())

        changed = self._search(params, donor, HEADERS, donor_name, score)
        self.stats.seconds += time.perf_counter() - t0
        self.log(json.dumps(self.comp.table(HEADERS)))
        self.log(self._line("Headers", changed, old))
