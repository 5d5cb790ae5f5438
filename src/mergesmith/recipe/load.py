"""Loading recipes: YAML text, files or dicts -> validated `Recipe`s, every problem at once.

A problem names its `file:line`, the key, and the likely fix (a did-you-mean for misspelled
keys); the method's parameter checks are in `validation.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from mergesmith.errors import RecipeError
from mergesmith.recipe.config_errors import clean_loc, located_problems
from mergesmith.recipe.model import (
    FilterRule,
    ModelEntry,
    ModelTokenSource,
    ModuleDef,
    Recipe,
    SliceDef,
    SliceSource,
    TokenizerSettings,
    ZeroSource,
)
from mergesmith.recipe.settings import setting_problems
from mergesmith.recipe.validation import parameter_problems
from mergesmith.recipe.yamlloc import YamlDoc, load_yaml_docs, load_yaml_file

log = logging.getLogger("mergesmith")

_NESTED: dict[str, type[BaseModel]] = {
    "models": ModelEntry, "slices": SliceDef, "sources": SliceSource, "tokenizer": TokenizerSettings,
    "modules": ModuleDef}
_UNION_MEMBERS = (FilterRule, ModelTokenSource, ZeroSource)
_TAGS = {m.__name__ for m in _UNION_MEMBERS}


def parse_recipe_doc(doc: YamlDoc) -> Recipe:
    """Validate one YAML document as a Recipe, reporting every problem at once."""
    if not isinstance(doc.data, dict):
        raise RecipeError(f"{doc.source}: a recipe must be a YAML mapping with keys like "
                          "merge_method and models", hint="see examples/ for recipes")
    moe = _moe_config_problem(doc)
    if moe:
        raise RecipeError(moe, hint=f"build it with `mergesmith moe {doc.source} OUT` (mergekit-moe format)")
    problems, data, misplaced = setting_problems(doc)
    recipe: Recipe | None = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        # a key misplaced under parameters: is missing where it belongs: said once, above
        errors = [e for e in exc.errors() if not (e["type"] == "missing" and clean_loc(e["loc"], _TAGS) in misplaced)]
        problems.extend(located_problems(errors, doc, Recipe, _NESTED, union_members=_UNION_MEMBERS))
        recipe = _without_unknown_keys(data, errors)
    problems.extend(_structure_problems(doc))
    notes: list[str] = []
    if recipe is not None:
        problems.extend(parameter_problems(recipe, doc, check_required=not problems, notes=notes))
        recipe = recipe if not problems else None
    if problems:
        raise RecipeError(f"{doc.source}: the recipe has {len(problems)} problem(s):",
                          problems=list(dict.fromkeys(problems)))
    assert recipe is not None
    for note in dict.fromkeys(notes):
        log.warning(note)
    return recipe


def _without_unknown_keys(data: dict[str, Any], errors: list[Any]) -> Recipe | None:
    """The recipe with misspelled keys dropped, so later checks still report their problems."""
    if any(e["type"] != "extra_forbidden" for e in errors):
        return None
    import copy

    data = copy.deepcopy(data)
    for err in errors:
        loc = clean_loc(err["loc"], _TAGS)
        node: Any = data
        for part in loc[:-1]:
            node = node[part]
        node.pop(loc[-1], None)
    try:
        return Recipe.model_validate(data)
    except (ValidationError, KeyError, IndexError, TypeError):
        return None


def _moe_config_problem(doc: YamlDoc) -> str | None:
    """A mergekit-moe config given as a recipe (it has experts:, no models: or slices:)."""
    data = doc.data
    if "experts" in data and not data.get("models") and not data.get("slices"):
        return f"{doc.source}: this is a mixture-of-experts config (it has experts:), not a merge recipe"
    return None


def _structure_problems(doc: YamlDoc) -> list[str]:
    data = doc.data
    problems = []
    forms = [k for k in ("models", "slices", "modules") if data.get(k)]
    if len(forms) != 1:
        problems.append(f"{doc.source}: give exactly one of 'models:' or 'slices:' (or 'modules:' for a multi-module "
                        "model) "
                        f"(found {', '.join(forms) or 'none'})")
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
