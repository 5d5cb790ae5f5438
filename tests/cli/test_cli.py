"""The CLI's informational commands and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from factory import write_recipe

from mergesmith.cli.main import main


def test_help_does_not_import_torch() -> None:
    code = ("import sys\nfrom mergesmith.cli.main import build_parser\nbuild_parser()\n"
            "from mergesmith.recipe import load_recipe\nimport mergesmith.recipe.validation\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_methods_lists_parameters(capsys) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    assert "linear:" in out and "task_arithmetic:" in out and "weight" in out and "lambda" in out


def test_methods_unknown_name_suggests(capsys) -> None:
    assert main(["methods", "slurp"]) == 2
    assert 'did you mean "slerp"' in capsys.readouterr().err


def test_schema_is_json_with_methods(capsys) -> None:
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "linear" in schema["properties"]["merge_method"]["enum"]
    assert "weight" in schema["$defs"]["MethodParameters"]["linear"]["properties"]


def test_validate_good_and_bad(tmp_path: Path, capsys) -> None:
    good = write_recipe(tmp_path, "models: [{model: a, parameters: {weight: 1}}]\nmerge_method: linear\n", "g.yaml")
    bad = write_recipe(tmp_path, "models: [{model: a, parameters: {weight: 1}}]\nmerge_method: linear\nnormalise: true\n", "b.yaml")
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "b.yaml:3" in err and "normalise" in err and "Traceback" not in err


def test_plan_explain_shows_resolved_parameters(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    recipe = write_recipe(tmp_path, f"""
slices:
  - sources:
      - {{model: {llama['base']}, layer_range: [0, 4]}}
      - {{model: {llama['a']}, layer_range: [0, 4]}}
merge_method: slerp
base_model: {llama['base']}
parameters: {{t: [0, 1]}}
""")
    assert main(["plan", str(recipe), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "method: slerp" in out and "estimated peak memory" in out
    assert "model.layers.0.mlp.up_proj.weight" in out and "t=0" in out
    line = next(ln for ln in out.splitlines() if "model.layers.1.mlp.up_proj.weight" in ln)
    assert "t=0.3333" in line
    assert not (tmp_path / "out").exists()


def test_bad_option_exits_2(capsys) -> None:
    assert_code = subprocess.run([sys.executable, "-m", "mergesmith", "merge"], capture_output=True, text=True)
    assert assert_code.returncode == 2 and "required" in assert_code.stderr


def test_eval_scores_tasks_and_perplexity(llama: dict[str, Path], tmp_path: Path, capsys) -> None:
    task = tmp_path / "toy.jsonl"
    task.write_text('{"prompt": "w1 w2", "answer": "w3"}\n{"prompt": "w4", "answer": "w5"}\n')
    text = tmp_path / "text.txt"
    text.write_text("w1 w2 w3 w4 w5 w6 w7\n")
    out = tmp_path / "scores.json"
    assert main(["eval", str(llama["a"]), "--task", f"toy={task}", "--perplexity", str(text), "--json", str(out)]) == 0
    scores = json.loads(out.read_text())[str(llama["a"])]
    assert 0.0 <= scores["exact_match/toy"] <= 1.0 and scores["perplexity/text"] > 1.0
    assert main(["eval", str(llama["a"]), "--task", "toy"]) == 2
    assert "NAME=FILE" in capsys.readouterr().err
