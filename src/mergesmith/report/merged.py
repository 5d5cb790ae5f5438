"""Statistics of a merged output directory against its inputs, through the merge's own plan.

The directory holds mergesmith_recipe.yaml and mergesmith_manifest.json (input paths). The
recipe is planned again over those inputs (`mergesmith.api.plan`), so every output tensor
is compared with exactly the input tensors it was made from (slices and passthrough
included), and its resolved parameters give each input's nominal weight.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mergesmith.errors import CheckpointError, MergeError
from mergesmith.io.checkpoint import Checkpoint, open_checkpoint
from mergesmith.report.collect import GroupSpec, collect, overall, to_json
from mergesmith.report.inspect import DEFAULT_DENSITIES, default_labels
from mergesmith.report.reading import find_outliers, reading

FORMAT = "mergesmith-report/1"
MANIFEST = "mergesmith_manifest.json"
RECIPE = "mergesmith_recipe.yaml"


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        inputs = {str(e["ref"]): e.get("path") for e in data["inputs"]}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: not a readable mergesmith manifest ({exc})",
                              hint="report on a directory written by `mergesmith merge`") from None
    data["_inputs"] = inputs
    return data


def nominal_weights(op: Any) -> dict[str, float]:
    """Each input's weight in the output as the recipe's resolved parameters set it (by model).

    Exact for linear and task_arithmetic; for slerp the linear view (base 1 - t, other t);
    for trimming methods (TIES, DARE...) the weight before trimming, lambda w_i."""
    params, name = op.params, op.method.name
    if name == "slerp":
        return {op.inputs[0].model: float(params.t)}
    if name == "passthrough":
        scale = params.scale[0]
        return {op.inputs[0].model: 1.0 if scale is None else float(scale)}
    weights = getattr(params, "weight", None)
    if not isinstance(weights, list):
        return {}
    w = [float(x) for x in weights]
    total = sum(w)
    if getattr(params, "normalize", False) and abs(total) >= 1e-8:
        w = [x / total for x in w]
    if op.method.base != "ignored":  # task-vector family: out = base + lambda sum_i w_i d_i
        w = [x * float(getattr(params, "lambda_", 1.0)) for x in w]
    return {ref.model: x for ref, x in zip(op.inputs, w)}


def _op_spec(op: Any, base_model: str | None, index: dict[str, int], ckpts: dict[str, Checkpoint],
             merged: Checkpoint) -> tuple[GroupSpec | None, str]:
    """The group of one plan op, or None and why it is left out."""
    if op.copy_only:
        return None, "not a float tensor (copied)"
    if op.name not in merged.tensors:
        return None, "missing from the merged output"
    if tuple(merged.tensors[op.name].shape) != tuple(op.shape):
        return None, "shape differs from the plan"
    base = op.base or next((r for r in op.inputs if r.model == base_model), None)
    models = {index[r.model]: (r.model, r.name) for r in op.inputs if r != base}
    if not models:
        return None, "only the base contributes"
    shapes = {tuple(op.shape)} | {tuple(ckpts[r.model].tensors[r.name].shape) for r in op.refs()}
    if len(shapes) > 1:
        return None, "input shapes differ from the output (aligned vocabulary)"
    weights = nominal_weights(op)
    nominal = {index[m]: w for m, w in weights.items() if m in index}
    return GroupSpec(op.name, op.role, op.layer, (base.model, base.name) if base else None, models,
                     ("__merged__", op.name), nominal), ""


def plan_specs(the_plan: Any, merged: Checkpoint) -> tuple[list[GroupSpec], list[str], list[dict[str, str]]]:
    """Groups for every op of the plan; the non-base models, in order; what was left out."""
    base_model = the_plan.recipe.base_model
    refs = [r.model for op in the_plan.ops for r in op.refs() if r.model != base_model]
    models = list(dict.fromkeys(refs))
    index = {m: i for i, m in enumerate(models)}
    specs, skipped = [], []
    for op in the_plan.ops:
        spec, why = _op_spec(op, base_model, index, the_plan.checkpoints, merged)
        if spec is None:
            skipped.append({"tensor": op.name, "model": "(merged)", "reason": why})
        else:
            specs.append(spec)
    return specs, models, skipped


def _open_inputs(directory: Path, manifest: dict[str, Any]) -> dict[str, Checkpoint]:
    ckpts: dict[str, Checkpoint] = {}
    for ref, path in manifest["_inputs"].items():
        if not path or not Path(path).is_dir():
            for ckpt in ckpts.values():
                ckpt.close()
            raise CheckpointError(f"{directory / MANIFEST}: input model {ref!r} is not at {path}",
                                  hint="the report compares the merged weights with the inputs: restore "
                                       "them at the paths the manifest lists")
        ckpts[ref] = open_checkpoint(ref, Path(path))
    return ckpts


def merged_document(directory: Path, *, densities: list[float] | None = None) -> dict[str, Any]:
    """Statistics of a merged directory: the inspect JSON shape plus merged-vs-input figures."""
    from mergesmith.api import plan

    manifest = load_manifest(directory)
    ckpts = _open_inputs(directory, manifest)
    merged = open_checkpoint("merged", directory)
    try:
        try:
            the_plan = plan(directory / RECIPE, checkpoints=ckpts)
        except MergeError as exc:
            raise CheckpointError(f"{directory / RECIPE}: cannot be planned again over the inputs: "
                                  f"{exc.message}", hint="were the inputs changed after the merge?") from None
        specs, models, skipped = plan_specs(the_plan, merged)
        labels = default_labels([Path(m) for m in models])
        dens = densities or list(DEFAULT_DENSITIES)
        collected = collect(specs, {**ckpts, "__merged__": merged}, labels, dens)
    finally:
        merged.close()
        for ckpt in ckpts.values():
            ckpt.close()
    base = the_plan.recipe.base_model
    data: dict[str, Any] = {
        "format": FORMAT, "method": the_plan.method.name,
        "base": {"label": default_labels([Path(base)])[0], "path": manifest["_inputs"].get(base)} if base else None,
        "models": [{"label": lab, "path": manifest["_inputs"].get(m)} for lab, m in zip(labels, models)],
        "densities": dens, "overall": overall(collected),
    }
    data.update(to_json(collected))
    data["outliers"] = find_outliers(data["tensors"], labels) if base else []
    data["skipped"] = skipped
    data["summary"] = reading(data) if base else []
    return data
