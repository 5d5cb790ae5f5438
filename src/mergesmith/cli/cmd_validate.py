"""`mergesmith validate RECIPE`: check a recipe; with --models, plan it against its models too."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML")
    p.add_argument("--models", action="store_true",
                   help="also open the models' headers and check the whole plan")
    p.add_argument("--allow-crimes", action="store_true",
                   help="merge models of different architectures anyway (as mergekit's option): the output "
                        "takes the first model's (or base's) config.json")


def run(args: argparse.Namespace) -> int:
    from mergesmith.api import check_recipe
    from mergesmith.recipe import load_recipes

    recipes = load_recipes(args.recipe)
    for recipe in recipes:  # method-specific inputs, e.g. fisher/regmean calibration files
        check_recipe(recipe, args.recipe.resolve().parent)
    if args.models:
        from mergesmith.plan.steps import plan_steps

        plan_steps(recipes, args.recipe.resolve().parent, Path("intermediate") if len(recipes) > 1 else None,
                   allow_crimes=args.allow_crimes)
    steps = f" ({len(recipes)} steps)" if len(recipes) > 1 else ""
    print(f"{args.recipe}: valid{steps}")
    return 0
