"""examples/monster/ on the demo's quick family: the score falls, and the emitted recipe
(every blend, two donors) gives the saved model's tensors exactly."""

from pathlib import Path

import pytest
import torch
import yaml
from demo_examples import EXAMPLES, pointed_config
from factory import load_tensors


def test_example_on_quick_family(quick_family, tmp_path: Path):
    from mergesmith.cli.main import main
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.run import run_monster

    data = pointed_config(EXAMPLES / "monster" / "monster.yaml", quick_family)
    assert data["merge_method"] == ["lerp", "slerp", "slice", "cyclic", "gradient"]
    data["directories"]["output_directory"] = str(tmp_path / "out")
    data["models_to_merge"] = ["add", "count"]  # two donors keep the test short
    result = run_monster(parse_config(data, tmp_path), progress=False)
    assert result.end < result.start - 0.01  # the add answers got likelier
    log = result.log.read_text()
    assert log.count("CHANGED") >= 2 and "Merging count into base" in log
    recipe = yaml.safe_load(result.recipe.read_text())
    assert recipe["merge_method"] == "mergemonster"
    used = {(Path(m["model"]).name, blend) for m in recipe["models"] for blend in m.get("parameters", {})}
    assert {d for d, _ in used} == {"add", "count"} and len({b for _, b in used}) >= 3, used
    assert main(["merge", str(result.recipe), str(tmp_path / "re"), "--quiet"]) == 0
    got, want = load_tensors(tmp_path / "re"), load_tensors(result.output)
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert not torch.equal(want["model.layers.0.mlp.up_proj.weight"],
                           load_tensors(quick_family.base)["model.layers.0.mlp.up_proj.weight"])


def test_progress_bar_counts_candidates():
    import io

    from mergesmith.progress import Progress

    stream = io.StringIO()
    bar = Progress(4, done=1, unit="cand", enabled=True, stream=stream)
    for ratio in (0.2, 0.4, 0.6):
        bar.advance(note=f"add layer 2/4 slice@{ratio:g}")
    line = stream.getvalue().rsplit("\r", 1)[-1]
    assert line.startswith("[" + "#" * 20 + "] 4/4 100% | add layer 2/4 slice@0.6 |")
    assert "cand/s | ETA 0:00" in line


def test_home_in_paths(tmp_path: Path):
    from mergesmith.monster.config import parse_config

    cfg = parse_config({"directories": {"model_path1": "m", "output_directory": "~/monster-out",
                                        "model_directory": "~/models"},
                        "good_phrases": [{"phrase": "a", "contexts": ["b"]}]}, tmp_path)
    assert cfg.output_directory == Path.home() / "monster-out"
    assert cfg.model_directory == Path.home() / "models"


@pytest.mark.parametrize("name", ["monster.yaml", "mapper.yaml"])
def test_examples_name_the_demo_family(name: str):
    from demo_examples import DEMO_DIR

    assert DEMO_DIR in (EXAMPLES / "monster" / name).read_text()
