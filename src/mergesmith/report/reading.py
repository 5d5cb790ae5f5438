"""A plain-words reading of inspect statistics: which merge method the numbers point to.

Thresholds (docs/inspect-and-report.md explains them):

- Sign conflicts. Two task vectors with independent, symmetric entries disagree on 50% of
  the entries where both are non-zero; for jointly Gaussian entries with correlation rho
  the rate is arccos(rho) / pi (Sheppard's formula). HIGH_CONFLICT = 35% is the rate at
  cosine ~0.45: from there on, over a third of the shared entries pull apart and a plain
  average cancels them, which TIES' sign election resolves. LOW_CONFLICT = 20% is cosine
  ~0.8: the task vectors mostly agree and linear / task_arithmetic lose little.
  Above OPPOSED_CONFLICT = 55% (cosine ~ -0.15) the models undo each other.
- Density. A density is advised when it keeps KEEP_TARGET = 80% of each task vector's
  energy (sum of squares), i.e. ~90% of its norm, in the layers concerned.
- Far from base: a whole-model relative delta norm |x - b| / |b| above FAR_FROM_BASE = 0.3
  is no small fine-tuning step; DARE's drop-and-rescale then amplifies large entries.
- Outliers: tensors whose relative delta norm is OUTLIER_FACTOR = 4 times the model's median.
- Runs of layers: consecutive layers of one class are read together; a layer within
  HYSTERESIS = 2 points of a class boundary stays in its neighbour's class.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

HIGH_CONFLICT = 0.35
LOW_CONFLICT = 0.20
OPPOSED_CONFLICT = 0.55
HYSTERESIS = 0.02  # a layer this close to a boundary keeps its neighbour's class
KEEP_TARGET = 0.80
FAR_FROM_BASE = 0.30
OUTLIER_FACTOR = 4.0
MAX_OUTLIERS = 10


def where(keys: list[str | int]) -> str:
    """'embeddings, layers 0-3, head' for a run of layer keys."""
    parts, numbers = [], [k for k in keys if isinstance(k, int)]
    if "embed" in keys:
        parts.append("embeddings")
    if numbers:
        lo, hi = min(numbers), max(numbers)
        parts.append(f"layer {lo}" if lo == hi else f"layers {lo}-{hi}")
    if "head" in keys:
        parts.append("final norm/head")
    return ", ".join(parts)


def _conflict_class(rate: float, previous: str | None = None) -> str:
    """The class of a conflict rate; within HYSTERESIS of a boundary a layer stays in the
    previous layer's class, so 35.4% next to 34.8% does not split a run of layers."""
    def plain(r: float) -> str:
        if r >= OPPOSED_CONFLICT:
            return "opposed"
        if r >= HIGH_CONFLICT:
            return "high"
        return "moderate" if r >= LOW_CONFLICT else "low"

    if previous is not None and previous in (plain(rate - HYSTERESIS), plain(rate + HYSTERESIS)):
        return previous
    return plain(rate)


def _mean(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def advised_density(layers: list[dict[str, Any]], models: list[str], densities: list[float]) -> tuple[float, float] | None:
    """(smallest density keeping KEEP_TARGET of every model's energy, energy it keeps), else the
    largest density and what it keeps."""
    best = None
    for density in sorted(densities):
        kept = [_mean(layer["models"][m]["kept_energy"].get(f"{density:g}") for layer in layers
                      if m in layer["models"]) for m in models]
        worst = min((k for k in kept if k is not None), default=None)
        if worst is None:
            continue
        best = (density, worst)
        if worst >= KEEP_TARGET:
            return best
    return best


def _advice(kind: str, layers: list[dict[str, Any]], pair: tuple[str, str], densities: list[float]) -> str:
    found = advised_density(layers, list(pair), densities)
    dens = f"ties with density {found[0]:g}" if found else "ties"
    if found and found[1] < KEEP_TARGET:
        dens += f" (it keeps only {found[1]:.0%} of the energy; try a higher density)"
    return {
        "opposed": f"the task vectors pull in opposite directions and cancel in an average: consider {dens}, or a lower weight for one model",
        "high": f"consider {dens}",
        "moderate": f"task_arithmetic works; {dens} trims the interference",
        "low": "they agree: linear or task_arithmetic is enough",
    }[kind]


def _pair_runs(layers: list[dict[str, Any]], a: str, b: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Consecutive layers with the same conflict class for the pair (a, b)."""
    runs: list[tuple[str, list[dict[str, Any]]]] = []
    for layer in layers:
        pair = next((p for p in layer.get("pairs", []) if {p["a"], p["b"]} == {a, b}), None)
        if pair is None or pair["sign_conflicts"] is None:
            continue
        kind = _conflict_class(pair["sign_conflicts"], runs[-1][0] if runs else None)
        if runs and runs[-1][0] == kind:
            runs[-1][1].append(layer)
        else:
            runs.append((kind, [layer]))
    return runs


def pair_lines(layers: list[dict[str, Any]], labels: list[str], densities: list[float]) -> list[str]:
    lines = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            for kind, run in _pair_runs(layers, a, b):
                pairs = [p for layer in run for p in layer["pairs"] if {p["a"], p["b"]} == {a, b}]
                rate = _mean(p["sign_conflicts"] for p in pairs) or 0.0
                cosine = _mean(p["cosine"] for p in pairs)
                cos_text = f", cosine {cosine:.2f}" if cosine is not None else ""
                lines.append(f"{where([layer['layer'] for layer in run])}: {rate:.0%} sign conflicts "
                             f"between {a} and {b}{cos_text}: {_advice(kind, run, (a, b), densities)}")
    return lines


def model_lines(overall: dict[str, Any], densities: list[float]) -> list[str]:
    lines = []
    for label, m in overall["models"].items():
        if not m.get("delta_norm"):
            lines.append(f"{label} is identical to the base: it adds nothing to a merge")
            continue
        kept = ", ".join(f"{p:g} keeps {m['kept_energy'][f'{p:g}']:.0%}" for p in densities
                         if m["kept_energy"].get(f"{p:g}") is not None)
        lines.append(f"{label}: relative delta norm {m['relative']:.3g}; of its task vector's energy, density {kept}")
        if m["relative"] is not None and m["relative"] >= FAR_FROM_BASE:
            lines.append(f"{label} moved far from the base (relative delta {m['relative']:.2f} >= {FAR_FROM_BASE}): "
                         "task vectors this large are no small fine-tuning step; DARE's drop-and-rescale "
                         "amplifies them, so prefer ties at a high density, or slerp")
        if m.get("non_finite"):
            lines.append(f"{label} has {m['non_finite']} NaN/inf entries (counted as 0 here): the checkpoint is broken")
    return lines


def find_outliers(tensors: list[dict[str, Any]], labels: list[str]) -> list[dict[str, Any]]:
    """Tensors whose relative delta norm is OUTLIER_FACTOR x the model's median or more."""
    found = []
    for label in labels:
        rel = [(t["models"][label]["relative"], t["name"]) for t in tensors
               if label in t["models"] and t["models"][label].get("relative") is not None]
        if not rel:
            continue
        ordered = sorted(r for r, _ in rel)
        median = ordered[len(ordered) // 2]
        if median <= 0:
            continue
        mine = sorted(((r, n) for r, n in rel if r >= OUTLIER_FACTOR * median), reverse=True)
        found += [{"model": label, "tensor": n, "relative": r, "times_median": r / median}
                  for r, n in mine[:MAX_OUTLIERS]]
    return found


def outlier_lines(outliers: list[dict[str, Any]]) -> list[str]:
    by_model: dict[str, list[dict[str, Any]]] = {}
    for o in outliers:
        by_model.setdefault(o["model"], []).append(o)
    return [f"{model}: {len(items)} tensor(s) with a relative delta >= {OUTLIER_FACTOR:g}x its median "
            f"(largest: {items[0]['tensor']}, {items[0]['times_median']:.1f}x); they dominate a linear merge: "
            "check them (new tokens, a re-initialised head?) or filter them in the recipe"
            for model, items in by_model.items()]


def reading(data: dict[str, Any]) -> list[str]:
    """The summary's plain-words lines for an inspect JSON document."""
    labels, densities = [m["label"] for m in data["models"]], data["densities"]
    return (model_lines(data["overall"], densities) + pair_lines(data["layers"], labels, densities)
            + outlier_lines(data["outliers"]))
