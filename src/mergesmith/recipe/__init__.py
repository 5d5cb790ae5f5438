"""Recipes: mergekit-compatible YAML -> validated `Recipe` models (no checkpoint is read).

    model.py       the pydantic models (Recipe, slices, sources, parameter settings, tokenizer)
    load.py        YAML text, file or dict -> Recipe(s), every problem at once with its line
    validation.py  the method's parameters, model counts and base, checked against the recipe
    values.py      what a parameter setting (scalar, gradient, filter rules) gives one tensor
    yamlloc.py     YAML documents with the line of every key
"""

from mergesmith.recipe.load import load_recipe, load_recipes, parse_recipe_doc
from mergesmith.recipe.model import (
    FilterRule,
    ModelEntry,
    ModelTokenSource,
    ModuleDef,
    Params,
    ParamSetting,
    Recipe,
    SliceDef,
    SliceSource,
    TokenizerSettings,
    TokenSetting,
    ZeroSource,
)

__all__ = [
    "FilterRule", "ModelEntry", "ModelTokenSource", "ModuleDef", "ParamSetting", "Params", "Recipe", "SliceDef",
    "SliceSource", "TokenSetting", "TokenizerSettings", "ZeroSource", "load_recipe", "load_recipes",
    "parse_recipe_doc",
]
