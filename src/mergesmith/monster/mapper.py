"""MonsterMapper: the tree of most probable continuations of model 1 for every context.

MonsterMapper's rule (`modules/mapping.py`): a context is tokenized as the tokenizer does
(its own BOS included); from it, each of the `top_k` next tokens whose own probability is at
least `prob_min` percent is followed, depth 0 to `max_depth`, so a trace has `max_depth + 1`
tokens; a branch whose tokens all fall below `prob_min` ends without a trace. The end of every
trace is extended greedily by `additional_length` tokens. Traces come in the order of the
walk (most probable child first). Every step feeds one token against the KV cache of its
parent (copied per branch), where MonsterMapper reruns the whole sequence.
"""

from __future__ import annotations

import copy
import inspect
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mergesmith.monster.config import MapperOptions, MonsterConfig


@dataclass
class Trace:
    context: str
    tokens: list[int]
    probs: list[float]  # each token's own probability
    tail: list[int]
    text: str  # the whole sequence decoded, as MonsterMapper prints it


@torch.no_grad()
def _step(model: Any, ids: list[int], past: Any) -> tuple[torch.Tensor, Any]:
    device = next(model.parameters()).device
    # transformers 5.x names the KV cache `cache`, earlier versions `past_key_values`
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    out = model(input_ids=torch.tensor([ids], device=device), use_cache=True, **{key: past})
    return torch.log_softmax(out.logits[0, -1], dim=0), out[key]


def _greedy(model: Any, log_probs: torch.Tensor, past: Any, length: int) -> list[int]:
    tail: list[int] = []
    for i in range(length):
        tail.append(int(torch.argmax(log_probs)))
        if i + 1 < length:
            log_probs, past = _step(model, [tail[-1]], past)
    return tail


def _cleaned(text: str) -> str:
    return re.sub(" +", " ", text.replace("\n", " ").strip())


def explore(model: Any, tokenizer: Any, opts: MapperOptions, ids: list[int], log_probs: torch.Tensor,
            past: Any, depth: int, path: list[tuple[int, float]], context: str) -> list[Trace]:
    """MonsterMapper's recursive_explore_and_generate from the distribution after `ids`."""
    traces = []
    for token in torch.topk(log_probs, min(opts.top_k, log_probs.numel())).indices.tolist():
        prob = math.exp(log_probs[token].item())
        if prob * 100 < opts.prob_min:
            continue
        step_ids, branch = ids + [token], path + [(token, prob)]
        child, child_past = _step(model, [token], copy.deepcopy(past))
        if depth < opts.max_depth:
            traces += explore(model, tokenizer, opts, step_ids, child, child_past, depth + 1, branch, context)
            continue
        tail = _greedy(model, child, child_past, opts.additional_length)
        text = _cleaned(tokenizer.decode(step_ids + tail, skip_special_tokens=True))
        traces.append(Trace(context, [t for t, _ in branch], [p for _, p in branch], tail, text))
    return traces


def map_context(model: Any, tokenizer: Any, opts: MapperOptions, context: str) -> list[Trace]:
    ids = tokenizer.encode(context)
    log_probs, past = _step(model, ids, None)
    return explore(model, tokenizer, opts, ids, log_probs, past, 0, [], context)


def trace_lines(tokenizer: Any, context: str, traces: list[Trace]) -> list[str]:
    """MonsterMapper's report of one context (without its colours)."""
    lines = ["", "-" * 36, f"CONTEXT: {_cleaned(context)}", "-" * 36]
    for trace in traces:
        steps = " > ".join(f"{p * 100:.2f}% [{tokenizer.decode([t], skip_special_tokens=True)}]"
                           for t, p in zip(trace.tokens, trace.probs))
        lines += [f"Sequence: {trace.text}", f"Trace: {steps.replace(chr(10), chr(92) + 'n')}", "---"]
    return lines + [f"TOTAL BRANCHES: {len(traces)}", "-----"]


def contexts_of(phrases: dict[str, Any]) -> list[str]:
    """Every non-empty context of both phrase lists, once, in the order of the config
    (MonsterMapper walks a set, whose order changes from run to run)."""
    out: list[str] = []
    for key in ("bad_phrases", "good_phrases"):
        for item in phrases.get(key) or []:
            for c in item.get("contexts", []):
                text = c if isinstance(c, str) else c["context"]
                if text and text not in out:
                    out.append(text)
    return out


def run_mapper(config: MonsterConfig, emit: Any = print) -> Path:
    from mergesmith.evaluate.loading import load_model
    from mergesmith.monster.config import check_device
    from mergesmith.monster.donors import resolve_model_path
    from mergesmith.monster.run import log_path

    check_device(config.device)
    loaded = load_model(resolve_model_path(config.model_path1, config), device=config.device,
                        dtype="float32")
    loaded.model.eval()
    opts = config.mapper
    lines = [f"Minimum branching prob : {opts.prob_min}%", f"Top # per branch       : {opts.top_k}",
             f"Max branch depth       : {opts.max_depth}", f"Extra tokens generated : {opts.additional_length}"]
    for line in lines:
        emit(line)
    for context in contexts_of(config.phrases):
        for line in trace_lines(loaded.tokenizer, context, map_context(loaded.model, loaded.tokenizer, opts, context)):
            lines.append(line)
            emit(line)
    path = log_path("monster-mapper")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
