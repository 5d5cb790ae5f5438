"""MergeMonster configs: every problem reported at once, each at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.errors import RecipeError
from mergesmith.monster.config import load_config

BAD = """directories:
  model_path1: base
  model_dir: experts
merge_ratio: [0.5]
merge_ratios: [1.5]
merge_method: [slice, slurp]
strategy: cumulativ
"""


def test_every_problem_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "monster.yaml"
    path.write_text(BAD)
    with pytest.raises(RecipeError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) == 7
    expected = [f'{path}:3: directories.model_dir: unknown key (did you mean "model_directory"?)',
                f'{path}:4: merge_ratio: unknown key (did you mean "merge_ratios"?)',
                f"{path}:5: merge_ratios: [1.5] outside [0, 1]: slice place model 2 along the columns, "
                "a ratio is a fraction of them (lerp and slerp take any ratio)",
                f"{path}:1: models_to_merge: no donors: list models_to_merge, or give "
                "directories.model_directory (every model folder in it is merged)",
                f"{path}:6: merge_method: unknown blend 'slurp' (did you mean \"slerp\"?)",
                f"{path}:7: strategy: unknown 'cumulativ' (did you mean \"cumulative\"?)",
                f"{path}: the config needs bad_phrases or good_phrases"]
    assert sorted(problems) == sorted(expected)


def test_defaults_and_paths(tmp_path: Path) -> None:
    path = tmp_path / "monster.yaml"
    path.write_text("directories: {model_path1: base, model_directory: experts}\n"
                    "merge_method: slerp\ngood_phrases: [{phrase: a, contexts: [b]}]\n")
    config = load_config(path)
    assert config.merge_methods == ["slerp"] and config.merge_ratios == [0.2, 0.4, 0.6, 0.8]
    assert config.model_directory == tmp_path / "experts"
    assert config.output_directory == tmp_path / "monster_output"
