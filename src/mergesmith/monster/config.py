"""MergeMonster's YAML, as it is, validated strictly: every problem at once, at its line
(unknown keys get a did-you-mean).

Paths are relative to the config file; `~` is the user's home.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.io.resolve import resolve_model
from mergesmith.methods.mergemonster import BLENDS
from mergesmith.monster.strategy import STRATEGIES
from mergesmith.recipe.config_errors import located_problems
from mergesmith.recipe.yamlloc import YamlDoc, load_yaml_file


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


Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Directories(_Strict):
    model_path1: str
    model_directory: str | None = None
    output_directory: str = "monster_output"


class _MonsterYaml(_Strict):
    """MergeMonster's keys (and MonsterMapper's), as the YAML has them."""

    device: str = "cpu"
    random_seed: int = 42
    directories: _Directories
    models_to_merge: list[str] = Field(default_factory=list)
    merge_ratios: list[Ratio] = Field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8], min_length=1)
    merge_method: str | list[str] = "lerp"
    merge_headers: bool = True
    strategy: str = "cumulative"
    strategy_threshold: float = 0.6
    auto_weights: bool = False
    bad_phrases: Any = None
    good_phrases: Any = None
    prob_min: float = 0.1
    top_k: int = 3
    max_depth: int = 3
    additional_length: int = 10


def _choice_problems(data: Mapping[str, Any], doc: YamlDoc) -> list[str]:
    """What the schema cannot say: known blends and strategy, and some phrases to score.
    Read from the YAML data, so they are reported together with the schema's problems."""
    problems = []
    methods = data.get("merge_method", "lerp")
    methods = [methods] if isinstance(methods, str) else methods
    if isinstance(methods, list) and not methods:
        problems.append(f"{doc.where(('merge_method',))}: merge_method: give a blend or a list of them")
    for m in methods if isinstance(methods, list) else []:
        if isinstance(m, str) and m not in BLENDS:
            problems.append(f"{doc.where(('merge_method',))}: merge_method: unknown blend {m!r}"
                            f"{did_you_mean(m, BLENDS)}")
    strategy = data.get("strategy", "cumulative")
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        problems.append(f"{doc.where(('strategy',))}: strategy: unknown {strategy!r}"
                        f"{did_you_mean(strategy, STRATEGIES)}")
    if not data.get("bad_phrases") and not data.get("good_phrases"):
        problems.append(f"{doc.source}: the config needs bad_phrases or good_phrases")
    return problems


def _user(path: Any) -> Path:
    """`~/...` is the user's home (an absolute path: `base_dir / it` is it)."""
    return Path(str(path)).expanduser()


def parse_config(data: Any, base_dir: Path, doc: YamlDoc | None = None) -> MonsterConfig:
    """Validate a MergeMonster config (its YAML data), reporting every problem at once."""
    doc = doc or YamlDoc(data=data, source="<config>")
    if not isinstance(data, Mapping):
        raise RecipeError(f"{doc.source}: a MergeMonster config must be a mapping")
    problems = _choice_problems(data, doc)
    try:
        raw = _MonsterYaml.model_validate(data)
    except ValidationError as exc:
        problems[:0] = located_problems(exc, doc, _MonsterYaml, {"directories": _Directories})
    if problems:
        raise RecipeError(f"{doc.source}: the config has {len(problems)} problem(s):", problems=problems)
    dirs = raw.directories
    return MonsterConfig(
        model_path1=dirs.model_path1,
        models_to_merge=raw.models_to_merge,
        output_directory=base_dir / _user(dirs.output_directory),
        model_directory=base_dir / _user(dirs.model_directory) if dirs.model_directory else None,
        device=raw.device,
        random_seed=raw.random_seed,
        merge_ratios=list(raw.merge_ratios),
        merge_methods=[raw.merge_method] if isinstance(raw.merge_method, str) else list(raw.merge_method),
        merge_headers=raw.merge_headers,
        strategy=raw.strategy,
        strategy_threshold=raw.strategy_threshold,
        phrases={k: data[k] for k in ("bad_phrases", "good_phrases", "auto_weights") if k in data},
        prob_min=raw.prob_min,
        top_k=raw.top_k,
        max_depth=raw.max_depth,
        additional_length=raw.additional_length,
        base_dir=base_dir,
    )


def load_config(path: Path) -> MonsterConfig:
    docs = load_yaml_file(Path(path), what="config")
    if len(docs) != 1:
        raise RecipeError(f"{path}: holds {len(docs)} YAML documents; a MergeMonster config is one")
    return parse_config(docs[0].data, Path(path).parent, docs[0])


def resolve_model_path(ref: str, config: MonsterConfig) -> Path:
    """A donor is a name inside `model_directory` (MergeMonster's form), else a model reference
    resolved as a recipe's is (a path relative to the config file, or a hub id)."""
    inside = config.model_directory / _user(ref) if config.model_directory else None
    if inside is not None and inside.is_dir():
        return resolve_model(str(inside))
    return resolve_model(ref, config.base_dir)
