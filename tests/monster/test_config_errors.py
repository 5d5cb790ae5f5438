"""Bad MergeMonster/MonsterMapper configs fail before any model is loaded, every problem at
once at its line (exit code 2); donors are found as MergeMonster finds them; the output can
never overwrite an input or the working directory."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from factory import make_family

from mergesmith.cli.main import main

PHRASES = "good_phrases: [{phrase: w9, contexts: ['w1 w2 ']}]\n"


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("monster-config")
    make_family(root, "llama", layers=1)
    (root / "llama" / ".hidden").mkdir()
    return root / "llama"


def test_every_problem_listed_at_its_line(tmp_path: Path, capsys):
    path = tmp_path / "monster.yaml"
    path.write_text("device: cpu\n"
                    "random_seed: abc\n"
                    "directories: {model_path1: nowhere/base, output_directory: out}\n"
                    "models_to_merge: [nowhere/a]\n"
                    "strategy: quantitive\n"
                    "strategy_threshold: most\n"
                    "merge_method: [lerp, slice]\n"
                    "merge_ratios: [0.5, 1.5]\n"
                    "prob_min: 10\n"
                    "mapper: {top_k: three}\n" + PHRASES)
    assert main(["monster", str(path)]) == 2  # the models do not exist: nothing was loaded
    err = capsys.readouterr().err
    assert "the config has 5 problem(s)" in err
    for line, text in [(2, "random_seed: Input should be a valid integer"),
                       (6, "strategy_threshold: Input should be a valid number"),
                       (8, "merge_ratios: [1.5] outside [0, 1]: slice"),
                       (9, "prob_min: MonsterMapper's options go under `mapper:`"),
                       (10, "mapper.top_k: Input should be a valid integer")]:
        assert f"{path}:{line}: {text}" in err, text


def test_ratios_outside_unit_for_lerp_and_slerp(tmp_path: Path):
    from mergesmith.monster.config import parse_config

    data = yaml.safe_load("directories: {model_path1: m}\nmodels_to_merge: [a]\n"
                          "merge_ratios: [-0.2, 1.3]\nmerge_method: [lerp, slerp, cyclic]\n" + PHRASES)
    config = parse_config(data, tmp_path)
    assert config.merge_ratios == [-0.2, 1.3] and config.random_seed == 512  # MergeMonster's defaults
    assert (config.mapper.prob_min, config.mapper.top_k, config.mapper.max_depth,
            config.mapper.additional_length) == (10, 3, 10, 20)


def test_no_donors_is_a_config_error(tmp_path: Path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text("device: cpu\ndirectories: {model_path1: m}\nmodels_to_merge: []\n" + PHRASES)
    assert main(["monster", str(path)]) == 2
    assert "no donors" in capsys.readouterr().err
    from mergesmith.monster.config import load_config

    assert load_config(path, command="map").model_path1 == "m"  # the mapper needs no donors


def test_directory_scan_sorted_without_model_1(family: Path, tmp_path: Path):
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.donors import model_names

    data = {"directories": {"model_path1": str(family / "base"), "model_directory": str(family)},
            "models_to_merge": [], **yaml.safe_load(PHRASES)}
    names = model_names(parse_config(data, tmp_path))
    assert list(names) == ["base", "a", "b"]  # ".hidden" and model 1 itself left out
    data["models_to_merge"] = ["b", str(family / "a")]  # names in model_directory, or paths
    assert list(model_names(parse_config(data, tmp_path))) == ["base", "a", "b"]  # sorted


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="CUDA is here")
def test_cuda_without_cuda_says_how_to_run_on_the_cpu(family: Path, tmp_path: Path, capsys):
    path = tmp_path / "m.yaml"
    path.write_text(f"device: cuda\ndirectories: {{model_path1: {family / 'base'}}}\n"
                    f"models_to_merge: [{family / 'a'}]\n" + PHRASES)
    assert main(["monster", str(path)]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert main(["monster", str(path), "--device", "cpu", "--no-progress"]) == 0
    assert main(["monster", str(path), "--device", "cuda:0"]) == 2
    assert main(["map", str(path), "--device", "cuda"]) == 2
    assert "--device cpu" in capsys.readouterr().err


@pytest.mark.parametrize("where", ["model_1", "inside_donor", "holds_donor", "cwd", "parent_of_cwd"])
def test_output_never_an_input_or_the_working_directory(where: str, family: Path, tmp_path: Path,
                                                        monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = {"model_1": family / "base", "inside_donor": family / "a" / "merged", "holds_donor": family,
           "cwd": work, "parent_of_cwd": tmp_path}[where]
    before = sorted(p.name for p in family.rglob("*"))
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", "directories": {
        "model_path1": str(family / "base"), "output_directory": str(out)},
        "models_to_merge": [str(family / "a")], **yaml.safe_load(PHRASES)}))
    assert main(["monster", str(path), "--no-progress"]) == 2
    assert "output_directory" in capsys.readouterr().err
    assert sorted(p.name for p in family.rglob("*")) == before and list(work.iterdir()) == []


def test_example_configs_parse():
    from mergesmith.monster.config import load_config

    root = Path(__file__).resolve().parents[2] / "examples" / "monster"
    config = load_config(root / "monster.yaml")
    assert config.models_to_merge == ["add", "reverse", "sort", "count"]
    assert config.merge_methods == ["lerp", "slerp", "slice", "cyclic", "gradient"]
    mapper = load_config(root / "mapper.yaml", command="map").mapper
    assert (mapper.prob_min, mapper.top_k, mapper.max_depth, mapper.additional_length) == (5, 3, 2, 4)


def test_donor_of_another_architecture_fails_before_loading(family: Path, tmp_path: Path, capsys):
    from factory import make_model

    make_model(tmp_path / "phi", "phi3", layers=1)  # fused qkv: model 1's tensors are missing
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", "directories": {
        "model_path1": str(family / "base"), "output_directory": str(tmp_path / "out")},
        "models_to_merge": [str(tmp_path / "phi")], **yaml.safe_load(PHRASES)}))
    assert main(["monster", str(path), "--no-progress"]) == 2
    assert "donor phi" in capsys.readouterr().err and not (tmp_path / "out").exists()
