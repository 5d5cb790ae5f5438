"""MergeMonster's YAML, as it is, validated strictly (unknown keys get a did-you-mean).

Paths are relative to the config file; `~` is the user's home.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.monster.blend import METHODS
from mergesmith.monster.strategy import STRATEGIES

TOP_KEYS = {
    "device", "random_seed", "directories", "models_to_merge", "merge_ratios", "merge_method",
    "merge_headers", "strategy", "strategy_threshold", "auto_weights", "bad_phrases",
    "good_phrases",
    # MonsterMapper's own options
    "prob_min", "top_k", "max_depth", "additional_length",
}
DIR_KEYS = {"model_path1", "model_directory", "output_directory"}


@dataclass
class MonsterConfig:
    model_path1: str
    models_to_merge: list[str]
    output_directory: Path
    model_directory: Path | None = None
    device: str = "cpu"
    random_seed: int = 42
    merge_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    merge_methods: list[str] = field(default_factory=lambda: ["lerp"])
    merge_headers: bool = True
    strategy: str = "cumulative"
    strategy_threshold: float = 0.6
    phrases: dict[str, Any] = field(default_factory=dict)
    prob_min: float = 0.1
    top_k: int = 3
    max_depth: int = 3
    additional_length: int = 10
    base_dir: Path = Path(".")


def _check_keys(data: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise RecipeError(f"{where}: unknown key {key!r}{did_you_mean(str(key), allowed)}")


def _ratios(value: Any) -> list[float]:
    if not isinstance(value, list) or not value:
        raise RecipeError("merge_ratios must be a non-empty list of numbers in [0, 1]")
    try:
        ratios = [float(r) for r in value]
    except (TypeError, ValueError) as exc:
        raise RecipeError(f"merge_ratios: {exc}") from None
    if any(not 0.0 <= r <= 1.0 for r in ratios):
        raise RecipeError(f"merge_ratios must lie in [0, 1], got {ratios}")
    return ratios


def _methods(value: Any) -> list[str]:
    methods = [value] if isinstance(value, str) else value
    if not isinstance(methods, list) or not methods:
        raise RecipeError("merge_method must be a method name or a list of them")
    for m in methods:
        if m not in METHODS:
            raise RecipeError(f"merge_method: unknown method {m!r}{did_you_mean(str(m), METHODS)}")
    return list(methods)


def _user(path: Any) -> Path:
    """`~/...` is the user's home (an absolute path: `base_dir / it` is it)."""
    return Path(str(path)).expanduser()


def parse_config(data: Any, base_dir: Path) -> MonsterConfig:
    if not isinstance(data, Mapping):
        raise RecipeError("a MergeMonster config must be a mapping")
    _check_keys(data, TOP_KEYS, "config")
    dirs = data.get("directories") or {}
    if not isinstance(dirs, Mapping):
        raise RecipeError("directories must be a mapping")
    _check_keys(dirs, DIR_KEYS, "directories")
    if "model_path1" not in dirs:
        raise RecipeError("directories.model_path1 (the base model) is required")
    models = data.get("models_to_merge") or []
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise RecipeError("models_to_merge must be a list of model paths or names")
    strategy = data.get("strategy", "cumulative")
    if strategy not in STRATEGIES:
        raise RecipeError(f"strategy: unknown {strategy!r}{did_you_mean(str(strategy), STRATEGIES)}")
    if not data.get("bad_phrases") and not data.get("good_phrases"):
        raise RecipeError("the config needs bad_phrases or good_phrases")
    model_dir = dirs.get("model_directory")
    return MonsterConfig(
        model_path1=str(dirs["model_path1"]),
        models_to_merge=models,
        output_directory=base_dir / _user(dirs.get("output_directory", "monster_output")),
        model_directory=base_dir / _user(model_dir) if model_dir else None,
        device=str(data.get("device", "cpu")),
        random_seed=int(data.get("random_seed", 42)),
        merge_ratios=_ratios(data.get("merge_ratios", [0.2, 0.4, 0.6, 0.8])),
        merge_methods=_methods(data.get("merge_method", "lerp")),
        merge_headers=bool(data.get("merge_headers", True)),
        strategy=strategy,
        strategy_threshold=float(data.get("strategy_threshold", 0.6)),
        phrases={k: data[k] for k in ("bad_phrases", "good_phrases", "auto_weights") if k in data},
        prob_min=float(data.get("prob_min", 0.1)),
        top_k=int(data.get("top_k", 3)),
        max_depth=int(data.get("max_depth", 3)),
        additional_length=int(data.get("additional_length", 10)),
        base_dir=base_dir,
    )


def load_config(path: Path) -> MonsterConfig:
    import yaml

    if not path.is_file():
        raise RecipeError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RecipeError(f"{path}: not valid YAML: {exc}") from None
    return parse_config(data, path.parent)


def resolve_model_path(ref: str, config: MonsterConfig) -> Path:
    """A donor is a path, or a name inside `model_directory` (MergeMonster's two forms)."""
    ref_path = _user(ref)
    inside = [config.model_directory / ref_path] if config.model_directory else []
    for candidate in [*inside, config.base_dir / ref_path, ref_path]:
        if (candidate / "config.json").is_file():
            return candidate
    raise RecipeError(f"model {ref!r} not found (looked in model_directory and as a path)")
