"""Measure how a built MoE routes: the share of tokens each expert gets, from the router logits.

For prompts of expert k, `share[k][j]` is the fraction of (token, layer) pairs whose
highest router logit is expert j's. Hidden gates work when the diagonal dominates: expert
k's prompts go mostly to expert k. The BOS token is fed but not counted (as in the gates).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_moe(path: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(model, tokenizer) of a built MoE, in float32 eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(path, dtype="float32").to(device).eval()
    return model, AutoTokenizer.from_pretrained(path)


def top1_counts(model: Any, tokenizer: Any, prompt: str) -> Any:
    """Per expert, how many (token, layer) pairs pick it first, for one prompt."""
    from mergesmith.lazy_torch import torch

    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    bos = tokenizer.bos_token_id
    start = 1 if bos is not None else 0
    full = ([bos] if bos is not None else []) + ids
    with torch.no_grad():
        out = model(input_ids=torch.tensor([full], device=model.device), output_router_logits=True)
    experts = out.router_logits[0].shape[-1]
    counts = torch.zeros(experts, dtype=torch.long)
    for logits in out.router_logits:  # one (tokens, experts) tensor per MoE layer
        picks = logits.reshape(-1, experts)[start:].argmax(dim=-1).cpu()
        counts += torch.bincount(picks, minlength=experts)
    return counts


def routing_shares(model: Any, tokenizer: Any, prompt_sets: list[list[str]]) -> list[list[float]]:
    """share[k][j]: fraction of expert k's prompt tokens (over all layers) routed first to expert j."""
    shares = []
    for prompts in prompt_sets:
        total = sum(top1_counts(model, tokenizer, p) for p in prompts)
        shares.append((total.float() / max(int(total.sum()), 1)).tolist())
    return shares


def format_shares(shares: list[list[float]], labels: list[str]) -> str:
    """A table: one row per expert's prompts, one column per expert routed to."""
    width = max(len(label) for label in labels)
    head = " " * (width + 2) + "".join(f"{'->' + str(j):>8}" for j in range(len(labels)))
    lines = [head]
    for k, row in enumerate(shares):
        lines.append(f"{labels[k]:<{width}}  " + "".join(f"{v:>8.1%}" for v in row))
    return "\n".join(lines)
