"""Statistics from calibration data: diagonal Fisher and input Gram matrices of linear layers.

Models are loaded with transformers (float32, on the chosen device) and fed one example at
a time, so the Fisher is the per-example empirical Fisher of Matena & Raffel and no padding
enters the Gram matrices. Sums are accumulated in float32 on the device, then divided by the
number of examples (Fisher) or tokens (Gram) so models with more data do not dominate.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mergesmith.errors import RecipeError
from mergesmith.lazy_torch import torch
from mergesmith.threads import cpu_threads_for


def read_examples(path: Path, limit: int) -> list[str]:
    """Examples from a text file (one a line) or JSONL (a `text` field per line)."""
    if not path.is_file():
        raise RecipeError(f"calibration file {path} does not exist", hint="give a text or JSONL file per model")
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if path.suffix == ".jsonl":
        lines = [json.loads(line)["text"] for line in lines]
    if not lines:
        raise RecipeError(f"calibration file {path} holds no examples")
    return lines[:limit]


def _load(model_dir: Path, device: str) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mergesmith.errors import CheckpointError

    # Never code from the model folder: with trust_remote_code unset, transformers would ask
    # on the terminal whether to run a folder's auto_map code.
    safe = {"local_files_only": True, "trust_remote_code": False}
    try:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, **safe).to(device)
        return model, AutoTokenizer.from_pretrained(model_dir, **safe)
    except Exception as exc:  # transformers raises many types for unknown or broken models
        raise CheckpointError(f"model {model_dir}: transformers cannot load it to compute calibration "
                              f"statistics: {type(exc).__name__}: {str(exc).strip()[:300]}",
                              hint="fisher/regmean run each model with transformers, and mergesmith never "
                                   "runs code from a model folder; use a method that needs no calibration") from None


def _encode(tokenizer: Any, text: str, max_tokens: int, device: str) -> Any:
    ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=max_tokens)["input_ids"]
    return ids.to(device)


def fisher_stats(model_dir: Path, examples: list[str], *, device: str, max_tokens: int,
                 advance: Callable[[], None] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Mean over examples of the squared gradient of each example's log-likelihood (no aliases)."""
    model, tokenizer = _load(model_dir, device)
    model.train(False)
    params = {n: p for n, p in model.named_parameters() if p.dtype.is_floating_point}
    sums = {n: torch.zeros_like(p) for n, p in params.items()}
    with cpu_threads_for(model, device):
        _accumulate_fisher(model, tokenizer, examples, params, sums, device, max_tokens, advance)
    return {n: (s / max(1, len(examples))).cpu() for n, s in sums.items()}, {}


def _accumulate_fisher(model: Any, tokenizer: Any, examples: list[str], params: dict[str, Any],
                       sums: dict[str, Any], device: str, max_tokens: int,
                       advance: Callable[[], None] | None) -> None:
    for text in examples:
        ids = _encode(tokenizer, text, max_tokens, device)
        if ids.shape[1] < 2:
            continue
        model.zero_grad(set_to_none=True)
        # The loss is the mean token NLL; times the token count it is the example's -log p.
        loss = model(input_ids=ids, labels=ids).loss * (ids.shape[1] - 1)
        loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                sums[name] += p.grad.detach() ** 2
        if advance is not None:
            advance()


class _GramRecorder:
    """Forward hooks summing X^T X of every linear layer's inputs.

    Layers fed the very same tensor (q/k/v after one norm, gate/up) share one Gram matrix:
    on the first example each later one is recorded as an alias of the first, which cuts
    memory and the stats file by about a third on Llama-style blocks.
    """

    def __init__(self) -> None:
        self.grams: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self.aliases: dict[str, str] = {}
        self.first = True
        # This forward's inputs, held so that no id is reused by a new tensor mid-pass.
        self.seen: dict[int, tuple[Any, str]] = {}

    def hook(self, name: str) -> Any:
        def record(module: Any, inputs: tuple[Any, ...], output: Any) -> None:
            x = inputs[0]
            if self.first:
                owner = self.seen.get(id(x))
                if owner is not None and owner[0] is x:
                    self.aliases[name] = owner[1]
                    return
                self.seen[id(x)] = (x, name)
            elif name in self.aliases:
                return
            flat = x.detach().reshape(-1, x.shape[-1]).float()
            self.grams[name] = self.grams.get(name, 0) + flat.T @ flat
            self.counts[name] = self.counts.get(name, 0) + flat.shape[0]
        return record

    def end_example(self) -> None:
        self.first = False
        self.seen.clear()


def gram_stats(model_dir: Path, examples: list[str], *, device: str, max_tokens: int,
               advance: Callable[[], None] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """Per linear layer `<module>.weight`: X^T X / tokens over its inputs, and the aliases."""
    model, tokenizer = _load(model_dir, device)
    model.train(False)
    recorder = _GramRecorder()
    handles = [m.register_forward_hook(recorder.hook(f"{n}.weight")) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear)]
    try:
        with torch.no_grad(), cpu_threads_for(model, device):
            for text in examples:
                model(input_ids=_encode(tokenizer, text, max_tokens, device))
                recorder.end_example()
                if advance is not None:
                    advance()
    finally:
        for h in handles:
            h.remove()
    grams = {n: (g / recorder.counts[n]).cpu().contiguous() for n, g in recorder.grams.items()}
    return grams, recorder.aliases
