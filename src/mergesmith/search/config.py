"""Strict YAML configs of `mergesmith soup` and `mergesmith evolve` (unknown keys: did-you-mean)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from mergesmith.errors import RecipeError
from mergesmith.evaluate.spec import EvaluatorSpec
from mergesmith.recipe.config_errors import located_problems
from mergesmith.recipe.yamlloc import load_yaml_file


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Config(_Strict):
    _source: str = PrivateAttr("<config>")  # the file it was read from, for messages


DType = Literal["float32", "float16", "bfloat16"]


class SoupConfig(_Config):
    base_model: str | None = None
    models: list[str] = Field(min_length=1)
    search: list[EvaluatorSpec] = Field(min_length=1)
    final: list[EvaluatorSpec] = Field(default_factory=list)
    output: str
    mode: Literal["greedy", "uniform"] = "greedy"
    dtype: DType = "float32"
    device: str = "cpu"


class EvolveConfig(_Config):
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
    docs = load_yaml_file(path, what="config")
    if len(docs) != 1 or not isinstance(docs[0].data, dict):
        raise RecipeError(f"{path}: a config must be one YAML mapping", hint="see examples/search/ for configs")
    try:
        config = model.model_validate(docs[0].data)
    except ValidationError as exc:
        problems = located_problems(exc, docs[0], model, {"search": EvaluatorSpec, "final": EvaluatorSpec})
        raise RecipeError(f"{path}: invalid config", problems=problems) from None
    config = _resolve_paths(config, path.parent)
    config._source = str(path)
    return config


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
