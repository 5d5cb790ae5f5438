from __future__ import annotations

import pytest

from mergesmith.errors import RecipeError
from mergesmith.recipe import FilterRule, load_recipe, load_recipes

SEED_RECIPE = """
slices:
  - sources:
      - model: EmbeddedLLM/Mistral-7B-Merge-14-v0
        layer_range: [0, 32]
      - model: nvidia/OpenMath-Mistral-7B-v0.1-hf
        layer_range: [0, 32]
merge_method: slerp
base_model: EmbeddedLLM/Mistral-7B-Merge-14-v0
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
"""


def errors_of(text: str) -> RecipeError:
    with pytest.raises(RecipeError) as info:
        load_recipes(text)
    return info.value


def test_mergekit_recipe_from_the_seed_parses_unchanged() -> None:
    recipe = load_recipe(SEED_RECIPE)
    assert recipe.merge_method == "slerp"
    assert recipe.slices[0].sources[1].layer_range == (0, 32)
    rules = recipe.parameters["t"]
    assert rules[0] == FilterRule(filter="self_attn", value=[0, 0.5, 0.3, 0.7, 1])
    assert rules[2].filter is None and rules[2].value == 0.5
    assert recipe.dtype == "bfloat16"


def test_dtype_aliases_are_normalised() -> None:
    recipe = load_recipe("models: [{model: a, parameters: {weight: 1}}]\nmerge_method: linear\ndtype: bf16\nout_dtype: torch.float16\n")
    assert (recipe.dtype, recipe.out_dtype) == ("bfloat16", "float16")


def test_every_problem_is_reported_with_line_and_suggestion() -> None:
    err = errors_of("""
models:
  - model: ./a
    parameters:
      wieght: 0.5
      normalize: true
  - model: ./b
    parameters:
      weight: abc
merge_method: linear
""")
    text = str(err)
    assert len(err.problems) == 2  # normalize per model is ignored with a warning, as mergekit ignores it
    assert '<string>:5: unknown parameter "wieght" for linear (did you mean "weight"?)' in text
    assert "<string>:6:" not in text
    assert "<string>:9:" in text and "'abc'" in text
    assert err.exit_code == 2


def test_unknown_key_and_unknown_method_are_both_reported() -> None:
    err = errors_of("models: [{model: a, parameters: {weight: 1}}]\nmerge_method: linaer\ndtpye: float16\n")
    assert any('dtpye: unknown key (did you mean "dtype"?)' in p for p in err.problems)
    assert any('unknown merge_method "linaer" (did you mean "linear"?)' in p for p in err.problems)


@pytest.mark.parametrize(("text", "needle"), [
    ("models: [{model: a, parameters: {weight: 1}}]\nmerge_method: slerp\n", "needs a base_model"),
    ("models: [{model: a}, {model: b}]\nmerge_method: linear\n", 'has no "weight"'),
    ("models: [{model: a, parameters: {weight: []}}]\nmerge_method: linear\n", "empty list"),
    ("slices: [{sources: [{model: a, layer_range: [4, 2]}]}]\nmerge_method: passthrough\n", "is empty"),
    ("slices: [{sources: [{model: a, layer_range: [0, 2]}, {model: b, layer_range: [0, 3]}]}]\n"
     "merge_method: linear\nparameters: {weight: 1}\n", "same number of layers"),
    ("models: [{model: a}, {model: b}, {model: c}]\nbase_model: a\nmerge_method: slerp\nparameters: {t: 0.5}\n",
     "exactly 1 models besides the base"),
    ("models: [{model: a}, {model: b}]\nbase_model: a\nmerge_method: slerp\nparameters: {t: 1.5}\n",
     "less than or equal to 1"),
    ("models: [{model: a, parameters: {weight: 1}}, {model: a, parameters: {weight: 2}}]\nmerge_method: linear\n",
     "listed 2 times"),
    ("merge_method: linear\n", "exactly one of 'models:' or 'slices:'"),
    ("models: [{model: a, parameters: {weight: 1}}]\nmerge_method: linear\nmodels: []\n", "appears twice"),
    ("models: [{model: a, parameters: {weight: 1}}\nmerge_method: linear\n", "not valid YAML"),
    ("models: [{model: a}, {model: b}]\nbase_model: a\nmerge_method: task_arithmetic\n"
     "parameters: {weight: 1, lambda: fast}\n", "'fast'"),
])
def test_bad_recipes_name_the_problem(text: str, needle: str) -> None:
    assert needle in str(errors_of(text))


def test_multi_document_recipes_load_every_step() -> None:
    text = SEED_RECIPE.replace("merge_method: slerp", "name: first\nmerge_method: slerp") + "---\n" + SEED_RECIPE
    recipes = load_recipes(text)
    assert [r.name for r in recipes] == ["first", None]


def test_to_yaml_round_trips() -> None:
    recipe = load_recipe(SEED_RECIPE)
    assert load_recipe(recipe.to_yaml()) == recipe
