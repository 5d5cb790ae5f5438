"""MergeMonster's and MonsterMapper's YAML, as they are, validated before any model is loaded:
every problem at once, each at its line (unknown keys get a did-you-mean).

Defaults are MergeMonster's (`merge-monster.py`, `monster-mapper.py`). Paths are relative to
the config file (then to the working directory); `~` is the user's home. mergesmith's own
keys (`phrase_scoring`, `candidates`, `header_merge`, `out_dtype`) are documented in docs/monster.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mergesmith.errors import OptionsError, RecipeError, did_you_mean
from mergesmith.methods.mergemonster import BLENDS, POSITIONAL
from mergesmith.monster.strategy import STRATEGIES
from mergesmith.recipe.config_errors import located_problems
from mergesmith.recipe.yamlloc import YamlDoc, load_yaml_file

MAPPER_KEYS = ("prob_min", "top_k", "max_depth", "additional_length")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Directories(_Strict):
    model_path1: str
    model_directory: str | None = None
    output_directory: str = "monster_output"


class _Mapper(_Strict):
    """MonsterMapper's options and defaults (`monster-mapper.py`)."""

    prob_min: float = Field(10.0, allow_inf_nan=False)  # percent of a token's own probability
    top_k: int = Field(3, ge=1)
    max_depth: int = Field(10, ge=0)
    additional_length: int = Field(20, ge=0)


class _MonsterYaml(_Strict):
    device: str = "cpu"
    random_seed: int = Field(512, ge=0, lt=2**63)
    directories: _Directories
    models_to_merge: list[str] = Field(default_factory=list)
    merge_ratios: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.2, 0.4, 0.6, 0.8], min_length=1)
    merge_method: str | list[str] = "lerp"
    merge_headers: bool = True
    strategy: str = "cumulative"
    strategy_threshold: float = Field(0.6, allow_inf_nan=False)
    auto_weights: bool = False
    bad_phrases: Any = None
    good_phrases: Any = None
    mapper: _Mapper = Field(default_factory=_Mapper)
    # mergesmith's own keys
    phrase_scoring: Literal["mergemonster", "continuation"] = "mergemonster"
    candidates: Literal["compound", "independent"] = "compound"
    header_merge: Literal["scored", "mergemonster"] = "scored"
    out_dtype: Literal["float16", "bfloat16", "float32"] = "float16"


@dataclass
class MapperOptions:
    prob_min: float = 10.0
    top_k: int = 3
    max_depth: int = 10
    additional_length: int = 20


@dataclass
class MonsterConfig:
    model_path1: str
    models_to_merge: list[str]
    output_directory: Path
    model_directory: Path | None = None
    device: str = "cpu"
    random_seed: int = 512
    merge_ratios: list[float] = field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    merge_methods: list[str] = field(default_factory=lambda: ["lerp"])
    merge_headers: bool = True
    strategy: str = "cumulative"
    strategy_threshold: float = 0.6
    phrases: dict[str, Any] = field(default_factory=dict)
    mapper: MapperOptions = field(default_factory=MapperOptions)
    phrase_scoring: str = "mergemonster"
    candidates: str = "compound"
    header_merge: str = "scored"
    out_dtype: str = "float16"
    base_dir: Path = Path(".")


def device_problem(device: str) -> str | None:
    """Why `device` cannot run here (MergeMonster's default.yaml says "cuda"), or None."""
    if not device.startswith("cuda"):
        return None
    import torch

    if torch.cuda.is_available():
        return None
    return (f"device {device!r}: CUDA is not available on this machine; MergeMonster's "
            "default.yaml says \"cuda\". Run on the CPU with `device: \"cpu\"` in the config "
            "or `--device cpu` (mergesmith needs no GPU)")


def check_device(device: str) -> None:
    problem = device_problem(device)
    if problem:
        raise OptionsError(problem, hint="--device cpu")


def _where(doc: YamlDoc, loc: tuple) -> str:
    path = ".".join(str(p) for p in loc) or "(top level)"
    return f"{doc.where(loc)}: {path}"


def _methods(data: Mapping[str, Any]) -> list[str]:
    methods = data.get("merge_method", "lerp")
    return [methods] if isinstance(methods, str) else methods if isinstance(methods, list) else []


def _choice_problems(data: Mapping[str, Any], doc: YamlDoc, command: str) -> list[str]:
    """What the schema cannot say: known blends and strategy, ratios that fit the blends,
    donors to merge, phrases that parse, a device that exists."""
    problems = []
    methods = _methods(data)
    if "merge_method" in data and not methods:
        problems.append(f"{_where(doc, ('merge_method',))}: give a blend or a list of them")
    for m in methods:
        if isinstance(m, str) and m not in BLENDS:
            problems.append(f"{_where(doc, ('merge_method',))}: unknown blend {m!r}{did_you_mean(m, BLENDS)}")
    ratios = data.get("merge_ratios")
    positional = [m for m in methods if m in POSITIONAL and m != "cyclic"]  # cyclic has its own
    if positional and isinstance(ratios, list):
        outside = [r for r in ratios if isinstance(r, (int, float)) and not 0 <= r <= 1]
        if outside:
            problems.append(f"{_where(doc, ('merge_ratios',))}: {outside} outside [0, 1]: "
                            f"{'/'.join(positional)} place model 2 along the columns, a ratio "
                            "is a fraction of them (lerp and slerp take any ratio)")
    strategy = data.get("strategy", "cumulative")
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        problems.append(f"{_where(doc, ('strategy',))}: unknown {strategy!r}{did_you_mean(strategy, STRATEGIES)}")
    for key in MAPPER_KEYS:
        if key in data:
            problems.append(f"{_where(doc, (key,))}: MonsterMapper's options go under `mapper:`")
    dirs = data.get("directories")
    if (command == "monster" and not data.get("models_to_merge") and isinstance(dirs, Mapping)
            and not dirs.get("model_directory")):
        problems.append(f"{_where(doc, ('models_to_merge',))}: no donors: list models_to_merge, or "
                        "give directories.model_directory (every model folder in it is merged)")
    problems += _phrase_problems(data, doc)
    if isinstance(data.get("device", "cpu"), str):
        problem = device_problem(data.get("device", "cpu"))
        problems += [f"{_where(doc, ('device',))}: {problem}"] if problem else []
    return problems


def _phrase_problems(data: Mapping[str, Any], doc: YamlDoc) -> list[str]:
    from mergesmith.evaluate.phrases import PhraseSet

    if not data.get("bad_phrases") and not data.get("good_phrases"):
        return [f"{doc.source}: the config needs bad_phrases or good_phrases"]
    try:
        PhraseSet.from_config(data)
    except (OptionsError, ValueError, TypeError) as exc:
        key = "bad_phrases" if "bad_phrases" in str(exc) or "good_phrases" not in data else "good_phrases"
        return [f"{_where(doc, (key,))}: {exc}"]
    return []


def _user(path: Any) -> Path:
    """`~/...` is the user's home (an absolute path: `base_dir / it` is it)."""
    return Path(str(path)).expanduser()


def parse_config(data: Any, base_dir: Path, doc: YamlDoc | None = None, *,
                 command: str = "monster", device: str | None = None) -> MonsterConfig:
    """Validate a config's YAML data, reporting every problem at once. `command`: "monster"
    or "map" (the mapper needs no donors); `device`: the --device override."""
    doc = doc or YamlDoc(data=data, source="<config>")
    if not isinstance(data, Mapping):
        raise RecipeError(f"{doc.source}: a MergeMonster config must be a mapping")
    if device is not None:
        data = {**data, "device": device}
    problems = _choice_problems(data, doc, command)
    try:
        raw = _MonsterYaml.model_validate({k: v for k, v in data.items() if k not in MAPPER_KEYS})
    except ValidationError as exc:
        problems[:0] = located_problems(exc, doc, _MonsterYaml, {"directories": _Directories, "mapper": _Mapper})
    if problems:
        raise RecipeError(f"{doc.source}: the config has {len(problems)} problem(s):",
                          problems=list(dict.fromkeys(problems)))
    dirs = raw.directories
    return MonsterConfig(
        model_path1=dirs.model_path1,
        models_to_merge=list(raw.models_to_merge),
        output_directory=base_dir / _user(dirs.output_directory),
        model_directory=base_dir / _user(dirs.model_directory) if dirs.model_directory else None,
        device=raw.device, random_seed=raw.random_seed, merge_ratios=list(raw.merge_ratios),
        merge_methods=_methods(data), merge_headers=raw.merge_headers, strategy=raw.strategy,
        strategy_threshold=raw.strategy_threshold,
        phrases={k: data[k] for k in ("bad_phrases", "good_phrases", "auto_weights") if k in data},
        mapper=MapperOptions(**raw.mapper.model_dump()), phrase_scoring=raw.phrase_scoring,
        candidates=raw.candidates, header_merge=raw.header_merge, out_dtype=raw.out_dtype, base_dir=base_dir)


def load_config(path: Path, *, command: str = "monster", device: str | None = None) -> MonsterConfig:
    docs = load_yaml_file(Path(path), what="config")
    if len(docs) != 1:
        raise RecipeError(f"{path}: holds {len(docs)} YAML documents; a MergeMonster config is one",
                          hint="split the file, one config per file")
    return parse_config(docs[0].data, Path(path).parent, docs[0], command=command, device=device)
