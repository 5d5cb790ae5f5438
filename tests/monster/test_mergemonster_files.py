"""MergeMonster's own default.yaml, default-mapper.yaml and example phrase files
(mergemonster_files/, as shipped) parse as they are and run with only their model paths
replaced (and `--device cpu`: they say "cuda")."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mm_models import make_models

FILES = Path(__file__).parent / "mergemonster_files"
PHRASE_FILES = sorted((FILES / "example_phrases").glob("*.yaml"))
HUB_IDS = ["jondurbin/airoboros-m-7b-3.1.2", "Intel/neural-chat-7b-v3-1", "teknium/OpenHermes-2.5-Mistral-7B"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mm-files")
    make_models(root)
    return root


def pointed(text: str, root: Path, out: Path, donors: bool = True) -> str:
    """default.yaml's text with its model paths (and the hub ids, if `donors`) replaced."""
    text = text.replace("/home/gryphe/merge-monster/models/Mistral-7B-v0.1", str(root / "base"))
    text = text.replace("/home/gryphe/merge-monster/models/", str(root / "models"))
    text = text.replace("/home/gryphe/merge-monster/mm-output", str(out))
    for hub_id, local in zip(HUB_IDS, ["b-donor", "a-donor", "wide"]):
        text = text.replace(hub_id, str(root / "models" / local)) if donors else text
    return text


def test_default_yaml_parses_as_is():
    import torch

    from mergesmith.errors import RecipeError
    from mergesmith.monster.config import load_config

    config = load_config(FILES / "default.yaml", device="cpu")
    assert (config.models_to_merge, config.merge_ratios, config.merge_methods) == (
        HUB_IDS, [0.2, 0.4, 0.6, 0.8], ["lerp"])
    assert (config.random_seed, config.strategy, config.strategy_threshold, config.merge_headers) == (
        42, "cumulative", 0.6, True)
    assert config.phrases["bad_phrases"][0]["weight"] == 10
    if not torch.cuda.is_available():  # its `device: "cuda"` says how to run on the CPU
        with pytest.raises(RecipeError) as info:
            load_config(FILES / "default.yaml")
        assert len(info.value.problems) == 1 and "--device cpu" in info.value.problems[0]
        assert "default.yaml:4: device" in info.value.problems[0]


def test_default_mapper_yaml_parses_as_is():
    from mergesmith.monster.config import load_config

    mapper = load_config(FILES / "default-mapper.yaml", command="map", device="cpu").mapper
    assert (mapper.prob_min, mapper.top_k, mapper.max_depth, mapper.additional_length) == (10, 3, 5, 20)


@pytest.mark.parametrize("path", PHRASE_FILES, ids=lambda p: p.stem)
def test_phrase_files_parse_as_is(path: Path):
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.config import parse_config

    phrases = PhraseSet.from_yaml(path)
    expected = {"Decensoring-autoweights": (54, True), "Decensoring-weighted": (54, False),
                "GPT-Roleplay": (14, False)}[path.stem]
    assert (len(phrases.entries()), phrases.auto_weights) == expected
    data = {**yaml.safe_load((FILES / "default.yaml").read_text()), **yaml.safe_load(path.read_text())}
    assert parse_config(data, FILES, device="cpu").phrases["bad_phrases"] == phrases_data(path)


def phrases_data(path: Path) -> list:
    return yaml.safe_load(path.read_text())["bad_phrases"]


@pytest.mark.parametrize("phrases", [None, *PHRASE_FILES], ids=lambda p: p.stem if p else "default")
def test_default_yaml_runs(phrases: Path | None, models: Path, tmp_path: Path):
    """The whole of default.yaml (3 donors, headers), its phrases or a phrase file's."""
    from factory import load_tensors

    from mergesmith.cli.main import main

    config = tmp_path / "default.yaml"
    config.write_text(pointed((FILES / "default.yaml").read_text(), models, tmp_path / "out"))
    if phrases is not None:  # the phrase file's keys replace default.yaml's, as pasting them does
        data = {**yaml.safe_load(config.read_text()), **yaml.safe_load(phrases.read_text())}
        config.write_text(yaml.safe_dump(data, sort_keys=False))
    assert main(["monster", str(config), "--device", "cpu", "--no-progress"]) == 0
    logs = list(Path("logs").glob("merge-monster-*.txt"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert log.count(" - Layer 2/2 - ") == 3 and log.count(" - Header - ") == 3
    assert log.index("Merging a-donor") < log.index("Merging b-donor") < log.index("Merging wide")
    assert {t.dtype for t in load_tensors(tmp_path / "out").values()} == {__import__("torch").float16}


def test_hub_ids_give_the_offline_error(models: Path, tmp_path: Path, capsys):
    from mergesmith.cli.main import main

    config = tmp_path / "default.yaml"
    config.write_text(pointed((FILES / "default.yaml").read_text(), models, tmp_path / "out", donors=False))
    assert main(["monster", str(config), "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Intel/neural-chat-7b-v3-1" in err and "hub" in err
    assert not (tmp_path / "out").exists() and not Path("logs").exists()


def test_default_mapper_yaml_runs(tmp_path: Path):
    """On a flat tiny model no token reaches default-mapper.yaml's 10%: the run is quick and
    says so for each of its five contexts (the branching itself: test_mm_reference.py)."""
    from factory import make_family

    from mergesmith.cli.main import main

    family = make_family(tmp_path / "models", "llama", layers=1)
    config = tmp_path / "default-mapper.yaml"
    config.write_text((FILES / "default-mapper.yaml").read_text().replace(
        "/home/gryphe/merge-monster/models/Mistral-7B-v0.1", str(family["base"])))
    assert main(["map", str(config), "--device", "cpu"]) == 0
    log = next(Path("logs").glob("monster-mapper-*.txt")).read_text()
    assert log.count("CONTEXT: ") == 5 and log.count("TOTAL BRANCHES: ") == 5
