"""Vocabulary alignment of embeddings and heads, and the output tokenizer (issue: tokenizers).

`plan_vocabulary` returns None when no tokenizer setting applies and the vocabularies agree in
size; the planner then merges embedding rows as they are.
"""

from __future__ import annotations

from typing import Any

from mergesmith.errors import RecipeError


def plan_vocabulary(recipe: Any, checkpoints: dict[str, Any], config_source: str, *, truncate: bool = False) -> Any:
    if recipe.tokenizer_source is None and recipe.tokenizer is None and not truncate:
        return None
    raise RecipeError("tokenizer_source / tokenizer: / --truncate-embeddings are not implemented yet",
                      hint="remove them from the recipe, or merge models with the same vocabulary")


def output_tokenizer_files(plan: Any) -> dict[str, bytes]:
    """Tokenizer files (and chat template) to write into the output, replacing the copies of
    the config source's files; empty when the source's files are right as they are."""
    return {}
