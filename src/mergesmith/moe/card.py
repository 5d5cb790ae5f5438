"""The model card (README.md with YAML front matter) of a MoE build."""

from __future__ import annotations

from mergesmith.io.resolve import looks_like_hub_id
from mergesmith.moe.config import Expert, MoEConfig


def _prompts(expert: Expert) -> str:
    shown = "; ".join(p.replace("|", "\\|").replace("\n", " ") for p in (expert.positive_prompts or [])[:3])
    more = len(expert.positive_prompts or []) - 3
    return shown + (f" (+{more} more)" if more > 0 else "") if shown else "-"


def moe_card(config: MoEConfig, text: str, title: str) -> str:
    models = [config.base_model] + [e.source_model for e in config.experts]
    models += [e.source_model for e in config.shared_experts or []]
    hub = [m for m in dict.fromkeys(models) if looks_like_hub_id(m)]
    front = ["---"]
    if hub:
        front += ["base_model:"] + [f"- {m}" for m in hub]
    front += ["library_name: transformers", "tags:", "- moe", "- mergesmith", "---", ""]
    rows = [f"| {i} | `{e.source_model}` | {_prompts(e)} |" for i, e in enumerate(config.experts)]
    rows += [f"| shared | `{e.source_model}` | {_prompts(e)} |" for e in config.shared_experts or []]
    body = (
        "# Mixture of experts\n\n"
        f"A {title} mixture of {len(config.experts)} experts ({config.experts_per_token} per token), "
        "built with [mergesmith](https://github.com/mergesmith/mergesmith) `moe`. Attention, norms, "
        f"embeddings and head come from `{config.base_model}`; each expert's MLPs come from its "
        f"model; the routers were set with gate mode **{config.gate_mode}**.\n\n"
        "## Experts\n\n| expert | model | positive prompts |\n|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"## Config\n\n```yaml\n{text.rstrip()}\n```\n"
    )
    return "\n".join(front) + body
