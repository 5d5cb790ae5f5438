"""The extraction report (printed and JSON) and the adapter's model card."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from mergesmith.lora.extract import Entry, Extraction

DECOMPOSED = ("lora", "lora_embedding")


def summary(ext: Extraction) -> dict[str, Any]:
    """Overall figures: the delta-weighted error over decomposed tensors and counts per kind."""
    lora = [e for e in ext.entries if e.kind in DECOMPOSED and e.delta_norm]
    total = sum(e.delta_norm**2 for e in lora)  # type: ignore[operator]
    residual = sum((e.rel_error * e.delta_norm) ** 2 for e in lora)  # type: ignore[operator]
    kept = sum(e.energy_kept * e.delta_norm**2 for e in lora)  # type: ignore[operator]
    counts: dict[str, int] = {}
    for e in ext.entries:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    ranks = [e.rank for e in lora if e.rank is not None]
    return {
        "decomposed_tensors": len(lora),
        "overall_rel_error": (residual / total) ** 0.5 if total else 0.0,
        "overall_energy_kept": kept / total if total else 1.0,
        "worst_rel_error": max((e.rel_error for e in lora), default=0.0),  # type: ignore[type-var]
        "rank_min": min(ranks, default=0),
        "rank_max": max(ranks, default=0),
        "tensors_by_kind": counts,
    }


def report_json(ext: Extraction, model: str, base: str, options: Any, adapter_bytes: int) -> str:
    return json.dumps({
        "model": model, "base": base, "options": asdict(options), "adapter_bytes": adapter_bytes,
        "summary": summary(ext), "warnings": ext.warnings,
        "tensors": [asdict(e) for e in ext.entries],
    }, indent=2)


def _row(e: Entry) -> str:
    rank = "-" if e.rank is None else str(e.rank)
    err = "-" if e.rel_error is None else f"{e.rel_error:.4f}"
    kept = "-" if e.energy_kept is None else f"{e.energy_kept:.1%}"
    shape = "x".join(map(str, e.shape))
    return f"{e.tensor:<48} {e.kind:<14} {shape:>11} {rank:>5} {err:>9} {kept:>8}"


def report_text(ext: Extraction, *, all_rows: bool = True) -> str:
    """One line per changed tensor (rank, relative error, energy kept), then the summary."""
    lines = [f"{'tensor':<48} {'kind':<14} {'shape':>11} {'rank':>5} {'rel.err':>9} {'kept':>8}"]
    rows = [e for e in ext.entries if e.kind not in ("unchanged", "excluded")]
    lines += [_row(e) for e in rows] if all_rows else []
    s = summary(ext)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(s["tensors_by_kind"].items()))
    ranks = str(s["rank_min"]) if s["rank_min"] == s["rank_max"] else f"{s['rank_min']}-{s['rank_max']}"
    lines.append(f"decomposed {s['decomposed_tensors']} tensors (rank {ranks}): "
                 f"overall relative error {s['overall_rel_error']:.4f}, delta energy kept "
                 f"{s['overall_energy_kept']:.1%}, worst tensor {s['worst_rel_error']:.4f}  ({counts})")
    return "\n".join(lines)


def adapter_card(model: str, base: str, ext: Extraction, command: str) -> str:
    s = summary(ext)
    return (
        "---\nlibrary_name: peft\ntags:\n- lora\n- mergesmith\n---\n\n"
        "# LoRA adapter extracted with mergesmith\n\n"
        f"The low-rank difference between `{model}` (fine-tune) and `{base}` (base), from the truncated "
        f"SVD of each changed weight (rank {s['rank_min']}-{s['rank_max']}). Relative error over the "
        f"decomposed weights: {s['overall_rel_error']:.4f}; share of the delta's energy kept: "
        f"{s['overall_energy_kept']:.1%}. Per-tensor figures are in `extraction_report.json`.\n\n"
        f"```\n{command}\n```\n\n"
        "Load it with PEFT: `PeftModel.from_pretrained(base_model, adapter_dir)`, or use it in a "
        "mergesmith recipe as `model: BASE+ADAPTER`.\n"
    )
