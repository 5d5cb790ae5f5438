"""mergekit-moe configuration files, strictly validated.

The format is mergekit-moe's: `base_model` (attention, norms, embeddings and head come from
it), `experts` (each `source_model` with `positive_prompts`, `negative_prompts`,
`noise_scale`, `residual_scale`), `gate_mode`, `experts_per_token`, `shared_experts`,
`dtype` and `architecture`. Where mergekit ignores a misspelled key or fails late, we report
every problem at once with its `file:line` and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from mergesmith.errors import RecipeError
from mergesmith.recipe.config_errors import located_problems
from mergesmith.recipe.yamlloc import YamlDoc, load_yaml_docs, read_yaml_text

GateMode = Literal["hidden", "mlp_input", "cheap_embed", "random", "uniform_random"]
PROMPT_MODES = ("hidden", "mlp_input", "cheap_embed")
DTypeName = Literal["float32", "float16", "bfloat16"]
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16",
                  "float": "float32"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Expert(_Strict):
    """One model whose MLPs become one expert of every layer."""

    source_model: str
    positive_prompts: list[str] | None = None
    negative_prompts: list[str] | None = None
    noise_scale: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    residual_scale: Annotated[float, Field(allow_inf_nan=False)] | None = None

    def prompt_key(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(self.positive_prompts or ()), tuple(self.negative_prompts or ())


class MoEConfig(_Strict):
    """A mixture-of-experts build (one YAML document, mergekit-moe's format)."""

    base_model: str
    experts: list[Expert] = Field(min_length=1)
    gate_mode: GateMode = "hidden"
    dtype: DTypeName | None = None
    experts_per_token: int = 2
    shared_experts: list[Expert] | None = None
    architecture: str | None = None

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


def _normalize(data: Any) -> Any:
    if isinstance(data, dict) and isinstance(data.get("dtype"), str):
        data = dict(data)
        value = data["dtype"].removeprefix("torch.")
        data["dtype"] = _DTYPE_ALIASES.get(value, value)
    return data


def parse_moe_doc(doc: YamlDoc) -> MoEConfig:
    """Validate one YAML document, reporting every problem at once."""
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{doc.source}: a MoE config must be a YAML mapping with base_model and experts",
                          hint="see examples/moe/ for configs")
    try:
        config = MoEConfig.model_validate(_normalize(doc.data))
    except ValidationError as exc:
        problems = located_problems(exc, doc, MoEConfig, {"experts": Expert, "shared_experts": Expert})
        raise RecipeError(f"{doc.source}: the MoE config has {len(problems)} problem(s):",
                          problems=problems) from None
    problems = semantic_problems(config, doc)
    if problems:
        raise RecipeError(f"{doc.source}: the MoE config has {len(problems)} problem(s):", problems=problems)
    return config


def semantic_problems(config: MoEConfig, doc: YamlDoc) -> list[str]:
    """What the schema cannot say: top-k range, prompts the gate mode needs, distinct prompts."""
    problems = []
    count = len(config.experts)
    if not 1 <= config.experts_per_token <= count:
        problems.append(f"{doc.where(('experts_per_token',))}: experts_per_token: {config.experts_per_token} "
                        f"is out of range; with {count} expert(s) it must be between 1 and {count}")
    if config.gate_mode in PROMPT_MODES:
        problems += _prompt_problems(config, doc)
    return problems


def _prompt_problems(config: MoEConfig, doc: YamlDoc) -> list[str]:
    problems = []
    groups = [("experts", config.experts), ("shared_experts", config.shared_experts or [])]
    for key, experts in groups:
        for i, expert in enumerate(experts):
            if not expert.positive_prompts or not any(p.strip() for p in expert.positive_prompts):
                problems.append(
                    f"{doc.where((key, i))}: {key}.{i} ({expert.source_model}): gate_mode "
                    f"{config.gate_mode!r} needs positive_prompts (examples of what this expert "
                    "should handle); add some, or use gate_mode: random")
    seen: dict[tuple, int] = {}
    for i, expert in enumerate(config.experts):
        key = expert.prompt_key()
        if key[0] and key in seen:
            problems.append(
                f"{doc.where(('experts', i))}: experts.{i} ({expert.source_model}) has the same prompts as "
                f"experts.{seen[key]}; their gates would be identical and the router could not tell them "
                "apart: give each expert prompts of its own skill")
        seen.setdefault(key, i)
    return problems


def load_moe_config(source: str | Path | dict[str, Any] | MoEConfig) -> tuple[MoEConfig, str]:
    """(config, its YAML text) from a file path, YAML text, a dict or a MoEConfig."""
    if isinstance(source, MoEConfig):
        return source, source.to_yaml()
    if isinstance(source, dict):
        return parse_moe_doc(YamlDoc(data=source, source="<dict>")), _dump(source)
    if isinstance(source, Path) or ("\n" not in str(source) and str(source).endswith((".yml", ".yaml"))):
        path = Path(source)
        text = read_yaml_text(path, "MoE config")
        docs = load_yaml_docs(text, source=str(path), what="MoE config")
    else:
        text = str(source)
        docs = load_yaml_docs(text, what="MoE config")
    if len(docs) != 1:
        raise RecipeError(f"{docs[0].source}: holds {len(docs)} YAML documents; a MoE config is one",
                          hint="split the file, one MoE config per file")
    return parse_moe_doc(docs[0]), text


def _dump(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)
