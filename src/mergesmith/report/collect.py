"""Stream tensor groups through the statistics, one group at a time, and sum them per layer.

`inspect` builds its groups from the base's tensor names; the merged-model report builds
them from a plan's ops (so slices, passthrough and renamed layers map output to inputs
exactly). Both end here, and both produce the same JSON shape (see `metrics`).
"""

from __future__ import annotations

import math
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mergesmith.io.checkpoint import Checkpoint
from mergesmith.report.stats import GroupSums, group_sums
from mergesmith.threads import torch_threads

ROLE_ORDER = {"pre": 0, "layer": 1, "post": 2}


@dataclass
class GroupSpec:
    """One tensor group: where each participant's tensor is, as (checkpoint key, tensor name)."""

    name: str
    role: str  # "pre", "layer", "post"
    layer: int | None
    base: tuple[str, str] | None
    models: dict[int, tuple[str, str]]  # model index -> location
    merged: tuple[str, str] | None = None
    nominal: dict[int, float] = field(default_factory=dict)  # recipe weights (report)

    @property
    def key(self) -> tuple[int, int]:
        return ROLE_ORDER[self.role], self.layer if self.layer is not None else 0


def layer_label(key: tuple[int, int]) -> str | int:
    """The JSON name of a layer key: "embed", the layer index, or "head"."""
    role, layer = key
    return "embed" if role == 0 else ("head" if role == 2 else layer)


@dataclass
class Collected:
    labels: list[str]  # the models, by index
    densities: list[float]
    tensors: list[tuple[GroupSpec, GroupSums]] = field(default_factory=list)
    layers: dict[tuple[int, int], GroupSums] = field(default_factory=dict)


def collect(specs: list[GroupSpec], checkpoints: dict[str, Checkpoint], labels: list[str],
            densities: list[float], progress: Any = None, threads: int = 2) -> Collected:
    """Read each group's tensors (stored dtype), compute its sums, drop the tensors.

    `threads` groups are in flight at once (torch releases the GIL), so peak memory is about
    threads + 1 groups of stored tensors plus a few MB of float32 chunks per group."""
    # One torch thread per worker: the per-chunk work is many small, memory-bound ops, where
    # waking a BLAS thread pool costs more than it saves (30 ms per 2x2 Gram matrix on a
    # busy machine); parallelism comes from the workers instead.
    out = Collected(labels, densities)
    with torch_threads(1), ThreadPoolExecutor(max(1, threads), thread_name_prefix="inspect") as pool:
        window: deque[tuple[GroupSpec, Future[GroupSums]]] = deque()
        for spec in specs:
            window.append((spec, pool.submit(_group, spec, checkpoints, len(labels), densities)))
            if len(window) > threads:
                _add(out, *window.popleft(), progress, checkpoints)
        while window:
            _add(out, *window.popleft(), progress, checkpoints)
    out.layers = dict(sorted(out.layers.items()))
    return out


def _group(spec: GroupSpec, checkpoints: dict[str, Checkpoint], n_models: int, densities: list[float]) -> GroupSums:
    def read(loc: tuple[str, str]) -> Any:
        return checkpoints[loc[0]].read(loc[1])

    base = read(spec.base) if spec.base else None
    models = {i: read(loc) for i, loc in spec.models.items()}
    merged = read(spec.merged) if spec.merged else None
    sums = group_sums(base, models, n_models, densities, merged)
    numel = next(iter(models.values())).numel()
    for i, weight in spec.nominal.items():
        sums.nominal[i] += weight * numel
        sums.nominal_numel[i] += numel
    return sums


def _add(out: Collected, spec: GroupSpec, future: Future[GroupSums], progress: Any,
         checkpoints: dict[str, Checkpoint]) -> None:
    """Take one finished group (in spec order, so the output does not depend on timing)."""
    sums = future.result()
    out.tensors.append((spec, sums))
    out.layers.setdefault(spec.key, GroupSums(len(out.labels), len(out.densities))).add(sums)
    if progress is not None:
        progress.advance(sum(checkpoints[m].tensors[name].nbytes for m, name in spec.models.values()))


def _ratio(num: float, den: float) -> float | None:
    return num / den if den > 0 else None


def _sqrt_ratio(num: float, den: float) -> float | None:
    return math.sqrt(num / den) if den > 0 else None


def _model_metrics(s: GroupSums, i: int, densities: list[float]) -> dict[str, Any]:
    m: dict[str, Any] = {"numel": int(s.numel[i]), "norm": math.sqrt(s.model_sq[i])}
    if s.has_base:
        m["delta_norm"] = math.sqrt(s.delta_sq[i])
        m["relative"] = _sqrt_ratio(s.delta_sq[i], s.base_sq[i])
        m["nonzero"] = _ratio(s.nonzero[i], s.numel[i])
        m["kept_energy"] = {f"{p:g}": _ratio(s.kept[i, j], s.delta_sq[i]) for j, p in enumerate(densities)}
    if s.non_finite[i]:
        m["non_finite"] = int(s.non_finite[i])
    if s.merged:
        m["distance"] = math.sqrt(s.dist_sq[i])
        m["relative_distance"] = _sqrt_ratio(s.dist_sq[i], s.model_sq[i])
    if s.nominal_numel[i]:
        m["nominal_weight"] = s.nominal[i] / s.nominal_numel[i]
    return m


def _pair_metrics(s: GroupSums, labels: list[str]) -> list[dict[str, Any]]:
    pairs = []
    for i in range(len(labels)):
        for j in range(i + 1, len(labels)):
            if not s.pair_numel[i, j]:
                continue
            pairs.append({
                "a": labels[i], "b": labels[j],
                "cosine": _ratio(s.gram[i, j], math.sqrt(s.pair_sq[i, j] * s.pair_sq[j, i])),
                "sign_conflicts": _ratio(s.conflicts[i, j], s.both[i, j]),
                "overlap": _ratio(s.both[i, j], s.pair_numel[i, j]),
            })
    return pairs


def coefficients(s: GroupSums) -> dict[int, float]:
    """Least-squares c with m - b ~ sum_i c_i d_i: how much of each task vector the merge
    holds (for task arithmetic, exactly lambda w_i; for TIES/DARE what survived trimming)."""
    rows = [i for i in range(s.n_models) if s.present[i] and s.delta_sq[i] > 0]
    if not rows or not s.has_base or not s.merged:
        return {}
    gram = s.gram[np.ix_(rows, rows)]
    solution = np.linalg.lstsq(gram, s.proj[rows], rcond=1e-10)[0]
    return {i: float(c) for i, c in zip(rows, solution)}


def metrics(s: GroupSums, labels: list[str], densities: list[float]) -> dict[str, Any]:
    """The JSON record of one tensor or layer."""
    out: dict[str, Any] = {"tensors": s.tensors,
                           "models": {labels[i]: _model_metrics(s, i, densities)
                                      for i in range(len(labels)) if s.present[i]}}
    if s.has_base:
        out["pairs"] = _pair_metrics(s, labels)
        if sum(1 for i in range(len(labels)) if s.present[i]) > 2:
            out["sign_conflicts_any"] = _ratio(s.any_conflict, s.multi_nonzero)
    if s.merged:
        out["merged"] = {"norm": math.sqrt(s.merged_sq),
                         "relative_to_base": _sqrt_ratio(s.merged_delta_sq, s.merged_base_sq) if s.has_base else None,
                         "coefficients": {labels[i]: c for i, c in coefficients(s).items()}}
    return out


def finite(value: Any) -> Any:
    """JSON-safe copy: numpy numbers become floats, NaN/inf become None (null)."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def overall(c: Collected) -> dict[str, Any]:
    """The whole-model record: every layer's sums added."""
    total = GroupSums(len(c.labels), len(c.densities))
    for sums in c.layers.values():
        total.add(sums)
    return finite(metrics(total, c.labels, c.densities))


def to_json(c: Collected) -> dict[str, Any]:
    """Per-tensor and per-layer records (the `tensors` and `layers` lists of the JSON)."""
    tensors = []
    for spec, sums in c.tensors:
        record = {"name": spec.name, "role": spec.role, "layer": spec.layer}
        record.update(metrics(sums, c.labels, c.densities))
        tensors.append(record)
    layers = []
    for key, sums in c.layers.items():
        record = {"layer": layer_label(key)}
        record.update(metrics(sums, c.labels, c.densities))
        layers.append(record)
    return finite({"tensors": tensors, "layers": layers})
