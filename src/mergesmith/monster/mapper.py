"""MonsterMapper: the tree of most probable continuations of model 1 for every context.

From each context, the `top_k` next tokens whose path probability is at least `prob_min`
are expanded, down to `max_depth` tokens; each leaf is then extended greedily by
`additional_length` tokens. Every step feeds one token against the KV cache of its parent
(the cache is copied per branch), so a context is encoded once.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mergesmith.monster.config import MonsterConfig, resolve_model_path


@dataclass
class Trace:
    context: str
    tokens: list[int]
    probs: list[float]
    tail: list[int]

    @property
    def probability(self) -> float:
        out = 1.0
        for p in self.probs:
            out *= p
        return out


@torch.no_grad()
def _step(model: Any, ids: list[int], past: Any) -> tuple[torch.Tensor, Any]:
    device = next(model.parameters()).device
    out = model(input_ids=torch.tensor([ids], device=device), past_key_values=past, use_cache=True)
    return out.logits[0, -1].float().softmax(-1), out.past_key_values


def _greedy(model: Any, probs: torch.Tensor, past: Any, length: int) -> list[int]:
    tail = []
    for _ in range(length):
        token = int(probs.argmax())
        tail.append(token)
        probs, past = _step(model, [token], past)
    return tail


def expand(model: Any, config: MonsterConfig, context: str, probs: torch.Tensor, past: Any,
           path: list[int], path_probs: list[float]) -> list[Trace]:
    """Depth-first over the top_k children above prob_min; leaves get their greedy tail."""
    so_far = 1.0
    for p in path_probs:
        so_far *= p
    children = []
    if len(path) < config.max_depth:
        top = probs.topk(min(config.top_k, probs.numel()))
        children = [(int(t), float(p)) for p, t in zip(top.values, top.indices)
                    if so_far * float(p) >= config.prob_min]
    if not children:
        tail = _greedy(model, probs, past, config.additional_length)
        return [Trace(context, path, path_probs, tail)]
    traces = []
    for token, p in children:
        child_probs, child_past = _step(model, [token], copy.deepcopy(past))
        traces += expand(model, config, context, child_probs, child_past,
                         path + [token], path_probs + [p])
    return traces


def map_context(model: Any, tokenizer: Any, config: MonsterConfig, context: str) -> list[Trace]:
    start = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = start + tokenizer(context, add_special_tokens=False)["input_ids"]
    probs, past = _step(model, ids, None)
    return expand(model, config, context, probs, past, [], [])


def format_trace(tokenizer: Any, trace: Trace) -> str:
    steps = " ".join(f"{tokenizer.decode([t])!r}({p:.3f})" for t, p in zip(trace.tokens, trace.probs))
    tail = tokenizer.decode(trace.tail)
    return f"{trace.probability:.4f}  {trace.context!r} -> {steps} ... {tail!r}"


def run_mapper(config: MonsterConfig, emit: Any = print) -> Path:
    from mergesmith.evaluate.loading import load_model

    loaded = load_model(resolve_model_path(config.model_path1, config), device=config.device,
                        dtype="float32")
    loaded.model.eval()
    contexts: list[str] = []
    for key in ("bad_phrases", "good_phrases"):
        for item in config.phrases.get(key) or []:
            for c in item.get("contexts", []):
                text = c if isinstance(c, str) else c["context"]
                if text not in contexts:
                    contexts.append(text)
    lines = []
    for context in contexts:
        lines.append(f"Context: {context!r}")
        traces = map_context(loaded.model, loaded.tokenizer, config, context)
        for trace in sorted(traces, key=lambda t: -t.probability):
            lines.append("  " + format_trace(loaded.tokenizer, trace))
    for line in lines:
        emit(line)
    logs = config.output_directory / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    path = logs / f"mapper-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
