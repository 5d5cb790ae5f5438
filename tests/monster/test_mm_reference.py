"""mergesmith against MergeMonster's own code, run on the same tiny models.

mm_reference/recorded.json holds what MergeMonster and MonsterMapper did on the models of
mm_models.py for every case of mm_reference/cases.py (every blend, strategy, auto_weights,
the directory scan with other vocabulary sizes, ratios outside [0, 1], the mapper's options);
mm_reference/record.py regenerates it where MergeMonster's code is available. mergesmith, with
`header_merge: mergemonster` (MergeMonster's result, see docs/monster.md), must take the same
decisions, score every candidate alike and save the same tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mm_models import make_models
from mm_reference.cases import (
    MAPPER_CASES,
    MONSTER_CASES,
    decisions,
    digest,
    mapper_config,
    monster_config,
)

RECORDED = json.loads((Path(__file__).parent / "mm_reference" / "recorded.json").read_text())


@pytest.fixture(scope="module")
def mm_paths(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mm-models")
    make_models(root)
    return {"MODEL_PATH1": str(root / "base"), "MODEL_DIRECTORY": str(root / "models")}


def run_case(name: str, paths: dict[str, str], out: Path, monkeypatch, **over) -> tuple[dict, list]:
    """Run a case through mergesmith; returns the result and every candidate's scores."""
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.engine import Monster
    from mergesmith.monster.run import run_monster

    config = monster_config(name, {**paths, "OUTPUT": str(out / "model")})
    config.update(device="cpu", header_merge="mergemonster", out_dtype="float32", **over)
    scores: list[list[float]] = []
    real = Monster._score

    def recording(self, prefix):
        scores.append(real(self, prefix))
        return scores[-1]

    monkeypatch.setattr(Monster, "_score", recording)
    monkeypatch.chdir(out)  # logs/ as MergeMonster's, in the working directory
    return run_monster(parse_config(config, out), progress=False), scores


@pytest.mark.parametrize("name", list(MONSTER_CASES))
def test_monster_case_as_mergemonster(name: str, mm_paths, tmp_path: Path, monkeypatch):
    from factory import load_tensors

    want = RECORDED["monster"][name]
    result, scores = run_case(name, mm_paths, tmp_path, monkeypatch)
    assert decisions(result.log.read_text()) == want["decisions"]
    candidates = [e["probs"] for e in want["events"] if e["kind"] != "orig"]
    assert len(scores) == len(candidates)
    for ours, theirs in zip(scores, candidates):
        assert ours == pytest.approx(theirs, rel=1e-4, abs=1e-9)
    tensors = load_tensors(result.output)
    assert sorted(tensors) == sorted(want["tensors"])
    for key, value in tensors.items():
        assert digest(value) == pytest.approx(want["tensors"][key], rel=1e-6, abs=1e-9), key


def saved_score(path: Path) -> float:
    from mm_reference.cases import PHRASES

    from mergesmith.evaluate.loading import load_model
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.scorer import PhraseScorer

    loaded = load_model(path, device="cpu", dtype="float32")
    scorer = PhraseScorer(loaded.model, loaded.tokenizer, PhraseSet.from_config(PHRASES))
    return sum(scorer.signed(scorer.probabilities()))


@pytest.mark.parametrize("mode", ["scored", "mergemonster"])
def test_header_merge_keeps_what_was_scored(mode: str, mm_paths, tmp_path: Path, monkeypatch):
    """`header_merge: scored` (the default) saves the model whose score the header stage
    reported; MergeMonster's own result (mode "mergemonster") puts model 1's embeddings back,
    so its saved model scores otherwise (here 0.0193 reported, 0.0199 saved)."""
    result, _ = run_case("lerp", mm_paths, tmp_path, monkeypatch, header_merge=mode,
                         models_to_merge=[mm_paths["MODEL_DIRECTORY"] + "/a-donor"])
    header = [d for d in decisions(result.log.read_text()) if d["part"] == "Header"]
    assert header[0]["label"] == "CHANGED"
    reported = float(next(line for line in result.log.read_text().splitlines()
                          if " - Header - " in line).split(" > ")[1].split(" - ")[0])
    score = saved_score(result.output)
    if mode == "scored":
        assert score == pytest.approx(reported, abs=1e-5)
    else:
        assert abs(score - reported) > 0.02 * abs(reported)


@pytest.mark.parametrize("name", list(MAPPER_CASES))
def test_mapper_case_as_monster_mapper(name: str, mm_paths):
    from mergesmith.evaluate.loading import load_model
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.mapper import contexts_of, map_context

    config = parse_config({**mapper_config(name, mm_paths), "device": "cpu"}, Path("."), command="map")
    loaded = load_model(mm_paths["MODEL_PATH1"], device="cpu", dtype="float32")
    want = RECORDED["mapper"][name]
    assert sorted(contexts_of(config.phrases)) == sorted(want)
    for context in contexts_of(config.phrases):
        traces = map_context(loaded.model, loaded.tokenizer, config.mapper, context)
        assert [t.tokens for t in traces] == [w["tokens"] for w in want[context]], context
        assert [t.text for t in traces] == [w["text"] for w in want[context]]
        for trace, theirs in zip(traces, want[context]):
            assert trace.probs == pytest.approx(theirs["probs"], rel=1e-5)
