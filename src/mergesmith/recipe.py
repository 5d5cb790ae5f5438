"""Merge recipes: mergekit-compatible YAML, strictly validated.

A recipe has either `models:` (each `{model, parameters}`) or `slices:` (each
`{sources: [{model, layer_range, parameters}], base_model, parameters}`), a `merge_method`,
optional `base_model`, top-level `parameters`, `dtype`, `out_dtype`, `tokenizer_source` or
`tokenizer`, and `chat_template`. Unknown keys, unknown methods or parameters, wrong types
and out-of-range values are errors that name the line and suggest the likely fix; every
problem of a recipe is reported at once.

Parameter values (see `params.py` for resolution): a scalar; a list of numbers (a gradient
over the layers of a slice); or a list of `{filter, value}` rules where a rule applies when
its `filter` is a substring of the tensor name and the first matching rule wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mergesmith.errors import RecipeError, did_you_mean
from mergesmith.yamlloc import Loc, YamlDoc, load_yaml_docs, load_yaml_file

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
        for slc in self.slices or []:
            if slc.base_model:
                names.append(slc.base_model)
            names.extend(src.model for src in slc.sources)
        return list(dict.fromkeys(names))

    def to_yaml(self) -> str:
        import yaml

        data = self.model_dump(mode="json", exclude_none=True)
        return yaml.safe_dump(data, sort_keys=False)


def _format_pydantic_error(err: dict[str, Any], doc: YamlDoc, loc_prefix: Loc = ()) -> str:
    loc = tuple(p for p in err["loc"] if not _is_union_tag(p))
    where = doc.where((*loc_prefix, *loc))
    path = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = _model_at(loc[:-1])
        hint = did_you_mean(str(loc[-1]), parent.model_fields if parent else [])
        return f"{where}: {path}: unknown key{hint}"
    if err["type"] == "missing":
        return f"{where}: {path}: required key is missing"
    return f"{where}: {path}: {err['msg']} (got {err.get('input')!r})"


def _is_union_tag(part: Any) -> bool:
    # pydantic adds union member names ("list[...]", "FilterRule") to locations
    return isinstance(part, str) and ("[" in part or part in {
        "FilterRule", "ModelTokenSource", "ZeroSource", "str", "bool", "int", "float", "none"})


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The pydantic model class reached by following `loc` from Recipe."""
    model: type[BaseModel] | None = Recipe
    fields_to_models = {
        "models": ModelEntry, "slices": SliceDef, "sources": SliceSource,
        "tokenizer": TokenizerSettings,
    }
    for part in loc:
        if isinstance(part, int):
            continue
        model = fields_to_models.get(str(part))
        if model is None:
            return None
    return model


def parse_recipe_doc(doc: YamlDoc) -> Recipe:
    """Validate one YAML document as a Recipe, reporting every problem at once."""
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{doc.source}: a recipe must be a YAML mapping with keys like "
                          "merge_method and models", hint="see examples/ for recipes")
    problems: list[str] = []
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_format_pydantic_error(e, doc) for e in exc.errors())
        recipe = _without_unknown_keys(doc.data, exc)
    problems.extend(_structure_problems(doc))
    if recipe is not None:
        from mergesmith.recipe_params import parameter_problems

        problems.extend(parameter_problems(recipe, doc))
        recipe = recipe if not problems else None
    if problems:
        raise RecipeError(f"{doc.source}: the recipe has {len(problems)} problem(s):",
                          problems=list(dict.fromkeys(problems)))
    assert recipe is not None
    return recipe


def _without_unknown_keys(data: dict[str, Any], exc: ValidationError) -> Recipe | None:
    """The recipe with misspelled keys dropped, so later checks still report their problems."""
    errors = exc.errors()
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    import copy

    data = copy.deepcopy(data)
    for err in errors:
        loc = [p for p in err["loc"] if not _is_union_tag(p)]
        node: Any = data
        for part in loc[:-1]:
            node = node[part]
        node.pop(loc[-1], None)
    try:
        return Recipe.model_validate(data)
    except (ValidationError, KeyError, IndexError, TypeError):
        return None


def _structure_problems(doc: YamlDoc) -> list[str]:
    data = doc.data
    problems = []
    if "modules" in data:
        problems.append(f"{doc.where(('modules',))}: 'modules:' (multi-module architectures) is "
                        "not supported yet; use 'models:' or 'slices:'")
    forms = [k for k in ("models", "slices") if data.get(k)]
    if len(forms) != 1 and "modules" not in data:
        problems.append(f"{doc.source}: give exactly one of 'models:' or 'slices:' "
                        f"(found {', '.join(forms) or 'neither'})")
    if data.get("tokenizer_source") is not None and data.get("tokenizer") is not None:
        problems.append(f"{doc.where(('tokenizer',))}: give either 'tokenizer_source' or "
                        "'tokenizer:', not both")
    return problems


def load_recipes(source: str | Path | dict[str, Any]) -> list[Recipe]:
    """Load every document of a recipe file, YAML text, or a dict (one recipe)."""
    docs = _docs_of(source)
    return [parse_recipe_doc(doc) for doc in docs]


def _docs_of(source: str | Path | dict[str, Any]) -> list[YamlDoc]:
    if isinstance(source, dict):
        return [YamlDoc(data=source, source="<dict>")]
    if isinstance(source, Path) or ("\n" not in str(source) and str(source).endswith((".yml", ".yaml"))):
        return load_yaml_file(Path(source))
    return load_yaml_docs(str(source))


def load_recipe(source: str | Path | dict[str, Any] | Recipe) -> Recipe:
    """Load a single-step recipe from a path, YAML text or dict (validated)."""
    if isinstance(source, Recipe):
        return source
    recipes = load_recipes(source)
    if len(recipes) != 1:
        raise RecipeError(
            f"{source}: holds {len(recipes)} recipe documents; load it with load_recipes "
            "(or `mergesmith merge`, which runs multi-step recipes)"
        )
    return recipes[0]
