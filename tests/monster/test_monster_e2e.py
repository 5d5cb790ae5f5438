"""Cached-prefix scoring equals a full pass; monster run, recipe reproduction, mapper, CLI."""

from pathlib import Path

import pytest
import torch
import yaml
from factory import load_tensors, make_family

PHRASES = {
    "bad_phrases": [{"phrase": "w5 w6", "contexts": ["w1 w2 ", {"context": "w3 ", "weight": 2}]}],
    "good_phrases": [{"phrase": "w9", "contexts": ["w1 w2 w3 w4 "]}],
}


@pytest.fixture(scope="module")
def family(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("monster")
    make_family(root, "llama", layers=2)
    return root


def write_config(root: Path, **over) -> Path:
    cfg = {"device": "cpu", "directories": {"model_path1": "llama/base", "model_directory": "llama",
                                           "output_directory": over.pop("out", "out")},
           "models_to_merge": ["a"], "merge_ratios": [0.3, 0.7], "merge_method": "lerp",
           "out_dtype": "float32", **PHRASES}
    cfg.update(over)
    path = root / f"cfg-{len(list(root.glob('cfg-*')))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cached_prefix_equals_full_pass(family):
    from mergesmith.evaluate.loading import load_model
    from mergesmith.evaluate.phrases import PhraseProbabilityEvaluator, PhraseSet
    from mergesmith.monster.scorer import PhraseScorer

    loaded = load_model(family / "llama" / "base", device="cpu", dtype="float32")
    scorer = PhraseScorer(loaded.model, loaded.tokenizer, PhraseSet.from_config(PHRASES), "continuation")
    with torch.no_grad():  # a changed layer 1: the prefix of layer 1 is still valid
        for p in scorer.blocks[1].parameters():
            p.mul_(1.5)
    full = scorer.probabilities()
    reference = [p.probability for p in PhraseProbabilityEvaluator(PHRASES).probabilities(loaded)]
    assert full == pytest.approx(reference, rel=1e-5)
    for layer in (0, 1):
        assert scorer.probabilities_from(scorer.prefix(layer)) == pytest.approx(full, rel=1e-5)
    assert scorer.probabilities_from(scorer.advance(scorer.prefix(0))) == pytest.approx(full, rel=1e-5)
    mm = PhraseScorer(loaded.model, loaded.tokenizer, PhraseSet.from_config(PHRASES))  # MergeMonster's rule
    assert mm.probabilities_from(mm.prefix(1)) == pytest.approx(mm.probabilities(), rel=1e-5)


def test_monster_lowers_score_and_recipe_reproduces(family):
    from mergesmith.api import merge  # noqa: F401 - the recipe path is `mergesmith merge`
    from mergesmith.cli.main import main
    from mergesmith.monster.config import load_config
    from mergesmith.monster.run import run_monster

    result = run_monster(load_config(write_config(family, merge_headers=True)), progress=False)
    assert result.end <= result.start
    text = result.log.read_text()
    assert "Layer 1/2" in text and "Phrases after merging" in text
    linear = result.output / "monster-recipe-linear.yaml"  # lerp only: a plain linear recipe too
    for recipe, out in ((result.recipe, "re"), (linear, "re-linear")):
        assert main(["merge", str(recipe), str(family / out), "--quiet"]) == 0
        got, want = load_tensors(family / out), load_tensors(result.output)
        assert set(got) == set(want)
        for name in want:
            assert torch.allclose(got[name], want[name], atol=1e-6), name


def test_every_method_recipe_reproduces(family):
    """slerp, slice, cyclic and gradient too: the mergemonster recipe replays the steps
    (quantitive with threshold 0 keeps every method's last, most compounded, candidate)."""
    from mergesmith.cli.main import main
    from mergesmith.monster.config import load_config
    from mergesmith.monster.run import run_monster

    cfg = write_config(family, out="out2", merge_method=["gradient", "lerp", "slice", "slerp", "cyclic"],
                       models_to_merge=["a", "b"], merge_headers=True, strategy="quantitive",
                       strategy_threshold=0.0, out_dtype="float16")  # MergeMonster's output dtype
    result = run_monster(load_config(cfg), progress=False)
    assert not (result.output / "monster-recipe-linear.yaml").exists()
    text = result.recipe.read_text()
    assert "merge_method: mergemonster" in text and "order: gradient,lerp,slice,slerp,cyclic" in text
    for method in ("gradient", "lerp", "slice", "slerp", "cyclic"):  # each blend kept somewhere
        assert f"    {method}:\n    - filter:" in text, method
    assert main(["merge", str(result.recipe), str(family / "re2"), "--quiet"]) == 0
    got, want = load_tensors(family / "re2"), load_tensors(result.output)
    assert set(got) == set(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_mapper_traces(family):
    from mergesmith.monster.config import load_config
    from mergesmith.monster.mapper import run_mapper

    mapper = {"prob_min": 0, "top_k": 2, "max_depth": 2, "additional_length": 2}
    lines: list[str] = []
    log = run_mapper(load_config(write_config(family, mapper=mapper), command="map"), emit=lines.append)
    assert sum(line.startswith("CONTEXT: ") for line in lines) == 3
    traces = [line for line in lines if line.startswith("Trace: ")]
    assert len(traces) == 3 * 2 ** 3  # max_depth + 1 = 3 tokens, 2 children each
    assert all(t.count("% [") == 3 for t in traces)
    assert log.parent == Path("logs") and log.read_text().splitlines() == lines


def test_bad_config_exit_2(family, capsys):
    from mergesmith.cli.main import main

    assert main(["monster", str(write_config(family, merge_ratio=[0.5]))]) == 2
    assert 'did you mean "merge_ratios"' in capsys.readouterr().err
    assert main(["monster", str(write_config(family, merge_method="slurp"))]) == 2
    assert main(["map", str(write_config(family, strategy="cumulativ"))]) == 2


def test_interrupt_then_resume_matches_uninterrupted(family, monkeypatch):
    from mergesmith.monster import scorer as scorer_mod
    from mergesmith.monster.config import load_config
    from mergesmith.monster.run import STATE_DIR, run_monster

    cfg = dict(merge_headers=False, models_to_merge=["a", "b"])
    full = run_monster(load_config(write_config(family, out="r-full", **cfg)), progress=False)
    interrupted = load_config(write_config(family, out="r-int", **cfg))
    real = scorer_mod.PhraseScorer.probabilities_from
    calls = {"n": 0}

    def flaky(self, prefix):
        calls["n"] += 1
        if calls["n"] == 6:  # second donor, first layer, mid-search
            raise KeyboardInterrupt
        return real(self, prefix)

    monkeypatch.setattr(scorer_mod.PhraseScorer, "probabilities_from", flaky)
    with pytest.raises(KeyboardInterrupt):
        run_monster(interrupted, progress=False)
    assert (interrupted.output_directory / STATE_DIR / "state.json").is_file()
    monkeypatch.setattr(scorer_mod.PhraseScorer, "probabilities_from", real)
    resumed = run_monster(interrupted, resume=True, progress=False)
    assert resumed.end == pytest.approx(full.end, rel=1e-6)
    got, want = load_tensors(resumed.output), load_tensors(full.output)
    assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want)


@pytest.mark.parametrize("mode", ["scored", "mergemonster"])
def test_tied_embeddings(mode: str, tmp_path: Path):
    """A model whose head is its embedding matrix: the header stage scores the lerped matrix;
    "scored" keeps it, "mergemonster" puts model 1's back (as MergeMonster's code ends up
    doing); the recipe replays either model bit for bit."""
    from mm_models import make_models

    from mergesmith.cli.main import main
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.run import run_monster

    paths = make_models(tmp_path / "models", layers=1, tied=True)
    out = tmp_path / "out"
    config = {"device": "cpu", "header_merge": mode, "strategy": "quantitive", "strategy_threshold": 0.0,
              "directories": {"model_path1": str(paths["base"]), "output_directory": str(out)},
              "models_to_merge": [str(paths["a-donor"])], "merge_method": ["lerp", "slerp"], **PHRASES}
    result = run_monster(parse_config(config, tmp_path), progress=False)
    embed = "model.embed_tokens.weight"
    got, base = load_tensors(out), load_tensors(paths["base"])
    assert "lm_head.weight" not in got
    assert torch.equal(got[embed], base[embed].half()) == (mode == "mergemonster")
    assert main(["merge", str(result.recipe), str(tmp_path / "re"), "--quiet"]) == 0
    replay = load_tensors(tmp_path / "re")
    assert set(replay) == set(got) and all(torch.equal(replay[k], got[k]) for k in got)
