"""The recipe model: mergekit-compatible YAML as strict pydantic models.

A recipe has either `models:` (each `{model, parameters}`), `slices:` (each
`{sources: [{model, layer_range, parameters}], base_model, parameters}`) or `modules:` (a name
per module of a multi-module model, each with its own `models:` or `slices:` and `parameters`),
a `merge_method`,
optional `base_model`, top-level `parameters`, `dtype`, `out_dtype`, `tokenizer_source` or
`tokenizer`, and `chat_template`. Unknown keys, unknown methods or parameters, wrong types
and out-of-range values are errors that name the line and suggest the likely fix; every
problem of a recipe is reported at once.

Parameter values (see `values.py` for what a value gives one tensor): a scalar; a list of numbers (a gradient
over the layers of a slice); or a list of `{filter, value}` rules where a rule applies when
its `filter` is a substring of the tensor name and the first matching rule wins.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = bool | int | float | str


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FilterRule(Strict):
    """A conditional value: applies to tensors whose name contains `filter` (substring)."""

    filter: str | None = None
    value: Scalar | list[Scalar]


ParamSetting = Scalar | list[Scalar] | FilterRule | list[FilterRule]
Params = dict[str, ParamSetting]


class ModelEntry(Strict):
    model: str
    parameters: Params | None = None


class SliceSource(Strict):
    model: str
    layer_range: tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]
    parameters: Params | None = None

    @model_validator(mode="after")
    def _ordered(self) -> SliceSource:
        start, end = self.layer_range
        if end <= start:
            raise ValueError(
                f"layer_range [{start}, {end}] is empty: the end is exclusive and must be "
                "greater than the start"
            )
        return self


class SliceDef(Strict):
    sources: list[SliceSource] = Field(min_length=1)
    base_model: str | None = None
    parameters: Params | None = None
    residual_weight: float | None = None  # accepted for mergekit compatibility; unused there too


class ModuleDef(Strict):
    """One module of a multi-module model (mergekit's `modules:`, e.g. a VLM's `text_decoder`,
    `vision_tower`, `multi_modal_projector`): its own `models:` or `slices:` and parameters."""

    models: list[ModelEntry] | None = None
    slices: list[SliceDef] | None = None
    parameters: Params | None = None

    @model_validator(mode="after")
    def _one_form(self) -> ModuleDef:
        if bool(self.models) == bool(self.slices):
            raise ValueError("a module gives exactly one of 'models:' or 'slices:'")
        return self


class ModelTokenSource(Strict):
    kind: Literal["model_token"]
    model: str
    token_id: int | None = None
    token: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ModelTokenSource:
        if (self.token_id is None) == (self.token is None):
            raise ValueError("give exactly one of token_id or token")
        return self


class ZeroSource(Strict):
    kind: Literal["zero"]


class TokenSetting(Strict):
    source: ModelTokenSource | ZeroSource | str | None = None
    force: bool = False


class TokenizerSettings(Strict):
    source: str = "union"  # "union", "base" or a model
    tokens: dict[str, TokenSetting] | None = None
    pad_to_multiple_of: Annotated[int, Field(ge=1)] | None = None


DTypeName = Literal["float32", "float16", "bfloat16", "float64"]
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16",
                  "float": "float32", "fp64": "float64"}


class Recipe(Strict):
    """A merge recipe (one YAML document)."""

    name: str | None = None  # multi-document recipes: later steps refer to this name
    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry] | None = None
    slices: list[SliceDef] | None = None
    modules: dict[str, ModuleDef] | None = None
    parameters: Params | None = None
    dtype: DTypeName | None = None
    out_dtype: DTypeName | None = None
    tokenizer_source: str | None = None
    tokenizer: TokenizerSettings | None = None
    chat_template: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _dtype_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("dtype", "out_dtype"):
                value = data.get(key)
                if isinstance(value, str):
                    value = value.removeprefix("torch.")
                    data[key] = _DTYPE_ALIASES.get(value, value)
        return data

    def referenced_models(self) -> list[str]:
        """Every model the recipe names, in first-mention order."""
        names: list[str] = []
        if self.base_model:
            names.append(self.base_model)
        for entry in self.models or []:
            names.append(entry.model)
        modules = list((self.modules or {}).values())
        for entry in [e for m in modules for e in m.models or []]:
            names.append(entry.model)
        for slc in [*(self.slices or []), *(s for m in modules for s in m.slices or [])]:
            if slc.base_model:
                names.append(slc.base_model)
            names.extend(src.model for src in slc.sources)
        return list(dict.fromkeys(names))

    def to_yaml(self) -> str:
        import yaml

        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)
