"""The data-aware merge methods `fisher` and `regmean`.

Each declares the statistic it needs (`MethodSpec.statistics`: "fisher" or "gram"); before the
merge the api computes it from each model's calibration data (mergesmith.datamerge). Both receive their statistics by reference: the per-model `stats` parameter names a
safetensors file written by the prepare step, and `tensor_names` (filled in by the planner)
says which tensor of that file belongs to each input. Reading one statistic tensor is the
only I/O these functions do; it keeps the plan free of tensors whose shapes differ from the
weights (a Gram matrix is in x in, the weight out x in).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field

from mergesmith.errors import MethodError
from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, NonNegative, per_model
from mergesmith.methods.task_vector import SPECS as TASK_VECTOR_SPECS
from mergesmith.methods.task_vector_presets import SPECS as PRESET_SPECS

FISHER_PAPER = "Matena & Raffel 2022"
Fallback = Literal["linear", "task_arithmetic", "ties"]
FALLBACKS_WITH_BASE = ("task_arithmetic", "ties")
_FALLBACK_SPECS = {spec.name: spec for spec in (*TASK_VECTOR_SPECS, *PRESET_SPECS)
                   if spec.name in FALLBACKS_WITH_BASE}
REGMEAN_PAPER = "Jin et al. 2023"


class _StatsParams(MethodParams):
    weight: list[NonNegative] = per_model(description="scaling of the model's statistics", default=1.0)
    calibration: list[str | None] = per_model(
        description="calibration data (text file, one example a line, or JSONL with a `text` field)",
        default=None)
    stats: list[str | None] = per_model(description="statistics file, set by the prepare step", default=None)
    max_examples: Annotated[int, Field(ge=1)] = Field(
        256, description="calibration examples used per model (the first ones of its file)")
    max_tokens: Annotated[int, Field(ge=2)] = Field(512, description="tokens kept of each calibration example")
    tensor_names: tuple[str, ...] = Field(default=(), description="input tensor names, set by the planner")


class FisherParams(_StatsParams):
    epsilon: Annotated[float, Field(gt=0.0)] = Field(
        1e-8, description="added to every Fisher value so parameters no data touched are averaged")


class RegMeanParams(_StatsParams):
    alpha: Annotated[float, Field(ge=0.0, le=1.0)] = Field(
        0.9, description="scale of the Gram matrices' off-diagonal terms (1: exact least squares)")
    fallback: Fallback = Field(
        "linear", description="method for tensors without Gram matrices (task_arithmetic, ties: need base_model)")


def load_stat(path: str | None, name: str | None, like: Any) -> Any | None:
    """One statistic tensor from a stats file, on `like`'s device and dtype; None if absent."""
    if path is None or name is None:
        return None
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        # Layers fed the same input (q/k/v, gate/up) share one Gram matrix: see calibration.py.
        name = json.loads((f.metadata() or {}).get("aliases", "{}")).get(name, name)
        if name not in f.keys():  # noqa: SIM118 - safe_open has no __contains__
            return None
        return f.get_tensor(name).to(device=like.device, dtype=like.dtype)


def _stats(tensors: list[Any], params: _StatsParams) -> list[Any | None]:
    names = params.tensor_names or [None] * len(tensors)
    return [load_stat(p, n, t) for p, n, t in zip(params.stats, names, tensors)]


def _check_prepared(params: _StatsParams, method: str) -> None:
    if any(c is not None for c in params.calibration) and any(s is None for s in params.stats):
        raise MethodError(f"{method}: calibration data is set but no statistics were computed",
                          hint="merge with `mergesmith merge` or `mergesmith.merge`, which compute the "
                               "statistics first (in-memory merges cannot: they have no model files to run)")


def _linear(tensors: list[Any], weights: list[float]) -> Any:
    total = sum(weights) or float(len(tensors))
    weights = weights if sum(weights) else [1.0] * len(tensors)
    return sum(w * x for w, x in zip(weights, tensors)) / total


def fisher(tensors: list[Any], base: Any, params: FisherParams, rng: Any) -> Any:
    """Diagonal Fisher merging: out = sum_i l_i (F_i + eps) x_i / sum_i l_i (F_i + eps).

    F_i is model i's diagonal Fisher (mean squared gradient of the log-likelihood on its
    calibration data), l_i its `weight`. Without statistics for this tensor (e.g. a tied
    head) every F_i is taken as equal, which is the weighted average.
    """
    _check_prepared(params, "fisher")
    fishers = _stats(tensors, params)
    if any(f is None or f.shape != x.shape for f, x in zip(fishers, tensors)):
        return _linear(tensors, list(params.weight))
    scaled = [w * (f + params.epsilon) for w, f in zip(params.weight, fishers)]
    return sum(s * x for s, x in zip(scaled, tensors)) / sum(scaled)


def _fallback(tensors: list[Any], base: Any, params: RegMeanParams) -> Any:
    """The recipe's `fallback` method at its defaults, with the models' weights."""
    if params.fallback == "linear":
        return _linear(tensors, list(params.weight))
    if base is None:
        raise MethodError(f"regmean: fallback {params.fallback} needs a base model", hint="set `base_model`")
    spec = _FALLBACK_SPECS[params.fallback]
    values: dict[str, Any] = {i.field_name: [i.default] * len(tensors) for i in spec.param_infos
                              if i.per_model and not i.required}
    values["weight"] = list(params.weight)
    return spec.func(tensors, base, spec.params.model_validate(values), None)


def _shrink(gram: Any, alpha: float) -> Any:
    # RegMean's regularisation: off-diagonal terms scaled by alpha (Jin et al. 2023, eq. 4).
    return alpha * gram + (1.0 - alpha) * torch.diag(torch.diagonal(gram))


def regmean(tensors: list[Any], base: Any, params: RegMeanParams, rng: Any) -> Any:
    """RegMean for a linear layer y = x W^T with input Gram matrices G_i = X_i^T X_i:

    W^T = (sum_i l_i G~_i)^-1 sum_i l_i G~_i W_i^T, where G~ scales G's off-diagonal terms by
    alpha. Tensors without Gram matrices (norms, embeddings, biases) use `fallback`: the
    weighted average, or task arithmetic / TIES at their defaults over the base.
    """
    _check_prepared(params, "regmean")
    grams = _stats(tensors, params)
    if tensors[0].dim() != 2 or any(g is None or g.shape != (x.shape[1], x.shape[1]) for g, x in zip(grams, tensors)):
        return _fallback(tensors, base, params)
    # float64 for the solve: Gram matrices of LLM activations are badly conditioned.
    shrunk = [w * _shrink(g.double(), params.alpha) for w, g in zip(params.weight, grams)]
    lhs = sum(shrunk)
    rhs = sum(g @ x.double().T for g, x in zip(shrunk, tensors))
    solution, info = torch.linalg.solve_ex(lhs, rhs)
    if int(info) != 0:  # singular (a feature no calibration token used, alpha = 1): least squares
        solution = torch.linalg.lstsq(lhs, rhs).solution
    return solution.T.to(tensors[0].dtype).contiguous()


SPECS: tuple[MethodSpec, ...] = (
    MethodSpec("fisher", fisher, FisherParams, "Fisher-weighted average of the models, from calibration data.",
               paper=FISHER_PAPER, base="ignored", min_models=1, statistics="fisher"),
    # base "optional": only a task_arithmetic/ties fallback uses it; it is never a regmean input.
    MethodSpec("regmean", regmean, RegMeanParams, "Least-squares merge of linear layers from their input Gram matrices on calibration data.",
               paper=REGMEAN_PAPER, base="optional", min_models=1, statistics="gram"),
)
