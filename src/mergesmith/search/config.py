"""Strict YAML configs of `mergesmith soup` and `mergesmith evolve` (unknown keys: did-you-mean)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.yamlloc import YamlDoc, load_yaml_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


DType = Literal["float32", "float16", "bfloat16"]


class EvaluatorSpec(_Strict):
    """One evaluator; `weight` scales its signed primary score in the objective."""

    type: Literal["perplexity", "exact_match", "phrases", "lm_eval"]
    path: str | None = Field(None, description="perplexity: a text file; phrases: a YAML of "
                             "bad_phrases/good_phrases (MergeMonster's format)")
    text: str | None = None
    tasks: dict[str, str] | list[str] | None = Field(
        None, description="exact_match: {name: file.jsonl}; lm_eval: [task names]")
    include_path: str | None = Field(None, description="lm_eval: a folder of task YAMLs")
    weight: float = Field(1.0, allow_inf_nan=False)
    limit: int | None = Field(None, ge=1, description="at most this many examples per task")
    metric: str | None = Field(None, description="score key to optimise instead of the primary, "
                               "e.g. perplexity/nll (a smooth tie-breaker for exact match)")


class SoupConfig(_Strict):
    base_model: str | None = None
    models: list[str] = Field(min_length=1)
    search: list[EvaluatorSpec] = Field(min_length=1)
    final: list[EvaluatorSpec] = Field(default_factory=list)
    output: str
    mode: Literal["greedy", "uniform"] = "greedy"
    dtype: DType = "float32"
    device: str = "cpu"


class EvolveConfig(_Strict):
    base_model: str
    models: list[str] = Field(min_length=1)
    space: Literal["parameters", "dataflow"] = "parameters"
    method: Literal["linear", "task_arithmetic", "ties", "dare_ties", "dare_linear",
                    "slerp"] = "linear"
    dataflow_scale: bool = Field(True, description="dataflow: evolve the input-scaling matrix W")
    repeats: int = Field(2, ge=1, le=8, description="dataflow: r, how often the layer sequence "
                         "of all models is repeated (paths may reuse a layer up to r times)")
    search: list[EvaluatorSpec] = Field(min_length=1)
    final: list[EvaluatorSpec] = Field(default_factory=list)
    output: str
    layer_groups: int = Field(1, ge=1, description="gradient points per parameter (smooth)")
    filters: list[str] = Field(default_factory=list, description="e.g. [self_attn, mlp]")
    allow_negative_weights: bool = False
    max_evals: int = Field(40, ge=1)
    timeout: float | None = Field(None, gt=0, allow_inf_nan=False)
    population: int | None = Field(None, ge=2)
    sigma: float = Field(0.2, gt=0, allow_inf_nan=False)
    seed: int = Field(0, ge=0, lt=2**32 - 1, description="CMA-ES seeds numpy with seed + 1")
    dtype: DType = "float32"
    device: str = "cpu"


def _load(path: Path, model: type[BaseModel]) -> Any:
    docs = load_yaml_file(path)
    if len(docs) != 1:
        raise RecipeError(f"{path}: holds {len(docs)} YAML documents; a config is one",
                          hint="split the file, one config per file")
    doc = docs[0]
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{path}: a config must be a YAML mapping (key: value lines)",
                          hint="see docs/search.md for soup and evolve configs")
    try:
        config = model.model_validate(doc.data)
    except ValidationError as exc:
        problems = _problems(exc, model, doc)
        raise RecipeError(f"{path}: the config has {len(problems)} problem(s):", problems=problems) from None
    config = _resolve_paths(config, path.parent)
    check_config(config, path)
    return config


def check_config(config: SoupConfig | EvolveConfig, path: Path | str) -> None:
    """What the schema cannot say, checked before any model is loaded: the models exist,
    every evaluator's files read, the output is allowed, the device is there."""
    from mergesmith.errors import MergeError
    from mergesmith.execute import check_device
    from mergesmith.io.target import check_output_location
    from mergesmith.search.resident import build_evaluator

    problems = []
    refs = [("base_model", config.base_model)] if config.base_model else []
    refs += [(f"models.{i}", m) for i, m in enumerate(config.models)]
    for key, ref in refs:
        if not (Path(ref) / "config.json").is_file():
            problems.append(f"{key}: {ref}: no such model folder (or it has no config.json)")
    seen: dict[str, int] = {}
    for i, ref in enumerate(config.models):
        if ref in seen:
            problems.append(f"models.{i}: {ref} is the same model as models.{seen[ref]}")
        seen.setdefault(ref, i)
    for group in ("search", "final"):
        for i, spec in enumerate(getattr(config, group)):
            try:
                build_evaluator(spec, "cpu")  # reads its files; needs no model
            except MergeError as exc:
                problems.append(f"{group}.{i} ({spec.type}): {exc.message}")
    if problems:
        raise RecipeError(f"{path}: the config has {len(problems)} problem(s):", problems=problems,
                          hint="fix these before the search loads any model")
    check_output_location(Path(config.output), [(ref, Path(ref)) for _, ref in refs], what="output:")
    try:
        check_device(config.device)
    except MergeError as exc:
        raise RecipeError(f"{path}: device: {config.device!r}: {exc.message.partition(': ')[2] or exc.message}",
                          hint=exc.hint) from None


def _problems(exc: ValidationError, model: type[BaseModel], doc: YamlDoc) -> list[str]:
    problems = []
    for err in exc.errors():
        # pydantic names the union branch it tried (`str`, `list[str]`...): not a key
        path = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p in {"str", "int"})))
        loc = ".".join(str(p) for p in path) or "(top level)"
        where = doc.where(path)
        if err["type"] == "extra_forbidden":
            key = str(path[-1])
            fields = _fields_at(model, path[:-1])
            problems.append(f"{where}: {loc}: unknown key{did_you_mean(key, fields)}")
        else:
            problems.append(f"{where}: {loc}: {err['msg']} (got {_short(err.get('input'))})")
    return list(dict.fromkeys(problems))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    # Nested keys only live in evaluator specs; anything deeper falls back to the top level.
    if loc and loc[0] in ("search", "final"):
        return list(EvaluatorSpec.model_fields)
    return list(model.model_fields)


def _resolve_paths(config: Any, base: Path) -> Any:
    """Paths are relative to the config file, like recipes; `~` and `$VARS` are expanded."""
    def rel(p: str) -> str:
        path = Path(os.path.expandvars(p)).expanduser()
        return str(path) if path.is_absolute() else str((base / path).resolve())
    if getattr(config, "base_model", None):
        config.base_model = rel(config.base_model)
    config.models = [rel(m) for m in config.models]
    config.output = rel(config.output)
    for spec in [*config.search, *config.final]:
        spec.path = rel(spec.path) if spec.path else None
        if isinstance(spec.tasks, dict):
            spec.tasks = {k: rel(v) for k, v in spec.tasks.items()}
        spec.include_path = rel(spec.include_path) if spec.include_path else None
    return config


def load_soup_config(path: Path) -> SoupConfig:
    return _load(Path(path), SoupConfig)


def load_evolve_config(path: Path) -> EvolveConfig:
    return _load(Path(path), EvolveConfig)
