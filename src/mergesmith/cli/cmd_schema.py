"""`mergesmith schema`: the JSON schema of recipes, with every method's parameters."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--indent", type=int, default=2)


def recipe_schema() -> dict[str, Any]:
    from mergesmith.methods import REGISTRY, method_names
    from mergesmith.recipe import Recipe

    schema = Recipe.model_json_schema()
    schema["properties"]["merge_method"]["enum"] = method_names()
    schema["$defs"]["MethodParameters"] = {
        name: spec.params.model_json_schema(by_alias=True) for name, spec in sorted(REGISTRY.items())
    }
    return schema


def run(args: argparse.Namespace) -> int:
    print(json.dumps(recipe_schema(), indent=args.indent))
    return 0
