"""`mergesmith inspect`: task-vector statistics of models against their base, streamed.

Each tensor of the base is one group: the base and every model that has it with the same
shape are read (one group in memory at a time), reduced to sums (report/stats.py), summed per
layer (report/collect.py) and turned into a JSON document and a plain-words reading
(report/reading.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mergesmith.errors import CheckpointError, OptionsError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.models import open_model
from mergesmith.io.safetensors_format import FLOAT_DTYPES
from mergesmith.report.collect import Collected, GroupSpec, collect, overall, to_json
from mergesmith.report.reading import find_outliers, reading

FORMAT = "mergesmith-inspect/1"
DEFAULT_DENSITIES = (0.2, 0.5)
JSON_NAME = "inspect.json"  # the file `--json DIR` writes and `mergesmith report DIR` reads


def parse_densities(text: str | Sequence[float]) -> list[float]:
    """'0.2,0.5' -> [0.2, 0.5]; each in (0, 1]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = sorted({float(v) for v in items if str(v).strip()})
    except ValueError:
        raise OptionsError(f"--density {text!r}: not a comma-separated list of numbers",
                           hint="write e.g. --density 0.2,0.5") from None
    if not values or any(not 0 < v <= 1 for v in values):
        raise OptionsError(f"--density {text!r}: each density must lie in (0, 1]",
                           hint="write e.g. --density 0.1,0.3,0.5")
    return values


def default_labels(paths: Sequence[Path]) -> list[str]:
    """Directory names; the parent is prepended where two names clash."""
    names = [p.resolve().name or str(p) for p in paths]
    clashes = {n for n in names if names.count(n) > 1}
    labels = [f"{p.resolve().parent.name}/{n}" if n in clashes else n for p, n in zip(paths, names)]
    if len(set(labels)) != len(labels):
        raise OptionsError(f"models {', '.join(map(str, paths))}: cannot tell them apart by directory name",
                           hint="name them with --labels, e.g. --labels math,code")
    return labels


def _usable(meta: Any, like: Any) -> str | None:
    """Why a model's tensor cannot be compared with the base's, or None when it can."""
    if meta is None:
        return "missing"
    if meta.dtype not in FLOAT_DTYPES:
        return f"not a float tensor ({meta.dtype})"
    if tuple(meta.shape) != tuple(like.shape):
        return f"shape {list(meta.shape)} differs from the base's {list(like.shape)}"
    return None


def build_specs(base: Checkpoint, models: list[Checkpoint], labels: list[str]) -> tuple[list[GroupSpec], list[dict[str, str]]]:
    """One group per float tensor of the base; what could not be compared, with the reason."""
    specs, skipped = [], []
    for name, meta in base.tensors.items():
        if meta.dtype not in FLOAT_DTYPES:
            skipped.append({"tensor": name, "model": "(base)", "reason": f"not a float tensor ({meta.dtype})"})
            continue
        present = {}
        for i, ckpt in enumerate(models):
            why = _usable(ckpt.tensors.get(name), meta)
            if why:
                skipped.append({"tensor": name, "model": labels[i], "reason": why})
            else:
                present[i] = (f"m{i}", name)
        if present:
            role = base.layout.role(name)
            specs.append(GroupSpec(name, role.role, role.layer, ("base", name), present))
    for i, ckpt in enumerate(models):
        skipped += [{"tensor": n, "model": labels[i], "reason": "not in the base"}
                    for n in ckpt.tensors if n not in base.tensors]
    specs.sort(key=lambda s: s.key)  # stable: embeddings, layers in order, then the head
    return specs, skipped


def inspect_models(base: Path, models: Sequence[Path], *, labels: Sequence[str] | None = None,
                   densities: Sequence[float] = DEFAULT_DENSITIES, progress: bool | None = False,
                   threads: int = 2) -> dict[str, Any]:
    """Statistics of each model's task vector against `base`: the inspect JSON document."""
    from mergesmith.progress import Progress

    if not models:
        raise OptionsError("inspect needs at least one model besides --base",
                           hint="mergesmith inspect --base BASE MODEL [MODEL...]")
    densities = parse_densities(densities)
    names = list(labels) if labels else default_labels(models)
    if len(names) != len(models) or len(set(names)) != len(names):
        raise OptionsError(f"--labels {','.join(names)}: need {len(models)} distinct labels, one per model",
                           hint="give one label per MODEL, in order")
    ckpts = {"base": open_model(str(base), None)}
    try:
        for i, path in enumerate(models):
            ckpts[f"m{i}"] = open_model(str(path), None)
        specs, skipped = build_specs(ckpts["base"], [ckpts[f"m{i}"] for i in range(len(models))], names)
        if not specs:
            raise CheckpointError(f"{base}: no tensor of the base is in the models with the same shape",
                                  hint="inspect fine-tunes of this base (same architecture and sizes)")
        nbytes = sum(ckpts[loc[0]].tensors[loc[1]].nbytes for s in specs for loc in s.models.values())
        bar = Progress(len(specs), total_bytes=nbytes, unit="tensors", label="inspecting", enabled=progress)
        try:
            collected = collect(specs, ckpts, names, densities, bar, threads=threads)
        finally:
            bar.close()
    finally:
        for ckpt in ckpts.values():
            ckpt.close()
    return document(collected, Path(base), list(models), skipped)


def document(c: Collected, base: Path, models: list[Path], skipped: list[dict[str, str]]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": FORMAT,
        "base": {"label": default_labels([base])[0], "path": str(Path(base).resolve())},
        "models": [{"label": label, "path": str(Path(p).resolve())} for label, p in zip(c.labels, models)],
        "densities": c.densities,
        "overall": overall(c),
    }
    data.update(to_json(c))
    data["outliers"] = find_outliers(data["tensors"], c.labels)
    data["skipped"] = skipped
    data["summary"] = reading(data)
    return data


def summary_text(data: dict[str, Any]) -> str:
    """What `mergesmith inspect` prints: the setting, whole-model pair figures, the reading."""
    labels = [m["label"] for m in data["models"]]
    numbered = [x["layer"] for x in data["layers"] if isinstance(x["layer"], int)]
    lines = [f"base: {data['base']['label']}    models: {', '.join(labels)}    tensors: "
             f"{len(data['tensors'])} compared, {len(data['skipped'])} skipped    layers: {len(numbered)}"]
    for pair in data["overall"].get("pairs", []):
        cosine = "n/a" if pair["cosine"] is None else f"{pair['cosine']:.3f}"
        conflicts = "n/a" if pair["sign_conflicts"] is None else f"{pair['sign_conflicts']:.1%}"
        lines.append(f"{pair['a']} vs {pair['b']} (whole model): cosine {cosine}, sign conflicts {conflicts}")
    if data["overall"].get("sign_conflicts_any") is not None:
        lines.append(f"all models: sign conflicts among non-zero deltas {data['overall']['sign_conflicts_any']:.1%}")
    lines.append("reading:")
    lines += [f"  - {line}" for line in data["summary"]]
    return "\n".join(lines)
