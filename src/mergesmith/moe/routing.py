"""Measure how a built MoE routes, from its router logits.

Two views, for the prompts of each expert k (the BOS token is fed but not counted):
- token share: `share[k][j]`, the fraction of (token, layer) pairs whose highest router logit
  is expert j's. The router decides per token, so this is what the model does; tokens common
  to every skill (digits, letters, punctuation) blur it.
- prompt vote: `vote[k][j]`, the fraction of prompts whose router logits, averaged over their
  tokens and layers, are highest for expert j: which expert the prompt as a whole leans to.
Gates work when the diagonals dominate.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_moe(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of a built MoE, in float32 eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    safe = {"local_files_only": True, "trust_remote_code": False}  # never code from the folder
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32", **safe).to(device).eval()
    return model, AutoTokenizer.from_pretrained(path, **safe)


def router_logits(model: Any, tokenizer: Any, prompt: str) -> Any:
    """(layers, tokens, experts) router logits of one prompt, BOS left out."""
    from mergesmith.lazy_torch import torch

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    start = 1 if bos is not None else 0
    full = ([bos] if bos is not None else []) + ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([full], device=model.device), output_router_logits=True)
    experts = out.router_logits[0].shape[-1]
    return torch.stack([lg.reshape(-1, experts)[start:] for lg in out.router_logits]).float().cpu()


def measure_routing(model: Any, tokenizer: Any, prompt_sets: list[list[str]]) -> tuple[list[list[float]], list[list[float]]]:
    """(routing_shares, prompt_votes) of the same prompts, from one forward pass per prompt."""
    from mergesmith.lazy_torch import torch

    shares, votes = [], []
    for prompts in prompt_sets:
        assert prompts, "every prompt set needs at least one prompt"
        counts, row = None, None
        for prompt in prompts:
            logits = router_logits(model, tokenizer, prompt)
            picks = torch.bincount(logits.argmax(dim=-1).reshape(-1), minlength=logits.shape[-1])
            counts = picks if counts is None else counts + picks
            row = [0.0] * logits.shape[-1] if row is None else row
            row[int(logits.mean(dim=(0, 1)).argmax())] += 1.0 / len(prompts)
        assert counts is not None and row is not None
        shares.append((counts.float() / max(int(counts.sum()), 1)).tolist())
        votes.append(row)
    return shares, votes


def routing_shares(model: Any, tokenizer: Any, prompt_sets: list[list[str]]) -> list[list[float]]:
    """share[k][j]: fraction of expert k's prompt tokens (over all layers) routed first to expert j."""
    return measure_routing(model, tokenizer, prompt_sets)[0]


def prompt_votes(model: Any, tokenizer: Any, prompt_sets: list[list[str]]) -> list[list[float]]:
    """vote[k][j]: fraction of expert k's prompts whose mean router logit is highest for expert j."""
    return measure_routing(model, tokenizer, prompt_sets)[1]


def format_shares(shares: list[list[float]], labels: list[str]) -> str:
    """A table: one row per expert's prompts, one column per expert routed to."""
    width = max(len(label) for label in labels)
    head = " " * (width + 2) + "".join(f"{'->' + str(j):>8}" for j in range(len(labels)))
    lines = [head]
    for k, row in enumerate(shares):
        lines.append(f"{labels[k]:<{width}}  " + "".join(f"{v:>8.1%}" for v in row))
    return "\n".join(lines)
