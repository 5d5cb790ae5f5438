"""Fuzzing every command that reads a config or takes options (recipes: tests/recipe/test_fuzz.py).

Generated configs of soup, evolve, MoE, MergeMonster and MonsterMapper, written as YAML files,
go through each command's loader and every check that runs before a model is loaded; generated
option values go through the CLI itself. Only mergesmith's own errors may come out: no
traceback, no "internal error", and every message ends in a fix or lists its problems.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mergesmith.cli.main import main
from mergesmith.errors import MergeError

from .checks import problem_lines
from .corpus import tiny_model

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 2**40), st.floats(allow_nan=True),
                    st.sampled_from(["", ".", "..", "./a", "a", "b", "out", "cpu", "cuda", "t.txt", "nowhere"]),
                    st.text(max_size=6))


def _values(keys: list[str]) -> st.SearchStrategy:
    return st.recursive(SCALARS, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(keys), inner, max_size=3)), max_leaves=10)


def _config(keys: list[str], anchors: dict[str, st.SearchStrategy]) -> st.SearchStrategy:
    """A mapping of the command's keys (and typos) to anything, plus near-valid entries."""
    return st.tuples(st.dictionaries(st.sampled_from(keys), _values(keys), max_size=5),
                     st.fixed_dictionaries({}, optional=anchors)).map(lambda p: {**p[0], **p[1]})


EVALUATOR = st.fixed_dictionaries(
    {"type": st.sampled_from(["perplexity", "exact_match", "phrases", "lm_eval", "bleu"])},
    optional={"path": st.sampled_from(["t.txt", "nowhere.txt", "p.yaml", ""]), "limit": SCALARS,
              "weight": SCALARS, "tasks": st.one_of(SCALARS, st.just({"x": "t.jsonl"})), "name": SCALARS,
              "per_line": SCALARS, "metric": SCALARS})
MODELS = st.lists(st.sampled_from(["./a", "a", "./b", "b", "nowhere", "", "."]), max_size=3)
SEARCH_KEYS = ["models", "base_model", "search", "final", "output", "mode", "dtype", "device", "space",
               "method", "max_evals", "sigma", "population", "seed", "timeout", "layer_groups", "filters",
               "repeats", "dataflow_scale", "allow_negative_weights", "modles", "weight", "path", "type"]
SEARCH = _config(SEARCH_KEYS, {"models": MODELS, "base_model": st.sampled_from(["./a", "nowhere", "b"]),
                               "search": st.lists(EVALUATOR, max_size=2), "final": st.lists(EVALUATOR, max_size=2),
                               "output": st.sampled_from(["out", ".", "..", "./a", "a/x", ""])})
EXPERT = st.fixed_dictionaries({"source_model": st.sampled_from(["./a", "./b", "nowhere"])},
                               optional={"positive_prompts": st.lists(SCALARS, max_size=2),
                                         "negative_prompts": st.lists(SCALARS, max_size=2),
                                         "noise_scale": SCALARS, "residual_scale": SCALARS})
MOE_KEYS = ["base_model", "experts", "gate_mode", "dtype", "experts_per_token", "shared_experts", "architecture",
            "source_model", "positive_prompts", "noise_scale", "residual_scale", "expert"]
MOE = _config(MOE_KEYS, {"base_model": st.sampled_from(["./a", "nowhere"]), "experts": st.lists(EXPERT, max_size=3),
                         "gate_mode": st.sampled_from(["random", "hidden", "cheap_embed", "bogus"])})
PHRASES = st.lists(st.fixed_dictionaries({"phrase": SCALARS, "contexts": st.lists(SCALARS, max_size=2)},
                                         optional={"weight": SCALARS}), max_size=2)
MONSTER_KEYS = ["device", "random_seed", "directories", "models_to_merge", "merge_ratios", "merge_method",
                "merge_headers", "strategy", "strategy_threshold", "auto_weights", "bad_phrases", "good_phrases",
                "mapper", "phrase_scoring", "candidates", "header_merge", "out_dtype", "model_path1",
                "output_directory", "model_directory", "top_k", "prob_min", "max_depth"]
MONSTER = _config(MONSTER_KEYS, {
    "directories": st.fixed_dictionaries({"model_path1": st.sampled_from(["./a", "nowhere"])},
                                         optional={"output_directory": st.sampled_from(["out", ".", "./a", "b/x"]),
                                                   "model_directory": SCALARS}),
    "models_to_merge": st.lists(st.sampled_from(["./b", "b", "./a", "nowhere"]), max_size=2),
    "merge_ratios": st.lists(SCALARS, max_size=3), "good_phrases": PHRASES, "bad_phrases": PHRASES,
    "mapper": st.dictionaries(st.sampled_from(MONSTER_KEYS), SCALARS, max_size=3)})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-commands")
    tiny_model(root / "a")
    tiny_model(root / "b", seed=1)
    (root / "t.txt").write_text("the cat sat on the mat\n")
    (root / "t.jsonl").write_text('{"prompt": "1+1=", "answer": "2"}\n')
    (root / "p.yaml").write_text("bad_phrases:\n  - {phrase: x, contexts: [a]}\n")
    return root


def _dump(data: dict) -> str:
    try:
        return yaml.safe_dump(data, allow_unicode=False)
    except yaml.YAMLError:  # a float YAML cannot write: write it as text
        return yaml.safe_dump(yaml.safe_load(yaml.safe_dump(data, default_style='"')))


def _only_our_errors(check, path: Path) -> None:
    try:
        check(path)
    except MergeError as exc:
        text = exc.render()
        assert "fix:" in text or problem_lines(text) or exc.hint, text


def _search_checks(kind: str):
    def check(path: Path) -> None:
        from mergesmith.search.checks import check_config
        from mergesmith.search.config import load_evolve_config, load_soup_config

        config = (load_soup_config if kind == "soup" else load_evolve_config)(path)
        for value in (getattr(config, "sigma", 1.0), getattr(config, "timeout", None) or 1.0):
            assert math.isfinite(value)
        check_config(config)
    return check


def _moe_checks(path: Path) -> None:
    from mergesmith.moe.config import load_moe_config

    config, _ = load_moe_config(path)
    for expert in config.experts:
        assert expert.noise_scale is None or math.isfinite(expert.noise_scale)
        assert expert.residual_scale is None or math.isfinite(expert.residual_scale)


def _monster_checks(command: str):
    def check(path: Path) -> None:
        from mergesmith.monster.config import load_config
        from mergesmith.monster.run import prepare

        config = load_config(path, command=command)
        assert all(math.isfinite(r) for r in config.merge_ratios) and math.isfinite(config.strategy_threshold)
        if command == "monster":
            prepare(config)  # every check before model 1 is loaded
    return check


CHECKS = {"soup": (SEARCH, _search_checks("soup")), "evolve": (SEARCH, _search_checks("evolve")),
          "moe": (MOE, _moe_checks), "monster": (MONSTER, _monster_checks("monster")),
          "map": (MONSTER, _monster_checks("map"))}


@pytest.mark.parametrize("command", sorted(CHECKS))
def test_generated_configs_raise_only_our_errors(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(workdir)
    strategy, check = CHECKS[command]
    path = workdir / f"{command}.yaml"
    before = sorted(p.name for p in workdir.iterdir())

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(strategy)
    def run(data: dict) -> None:
        path.write_text(_dump(data))
        _only_our_errors(check, path)
        left = sorted(p.name for p in workdir.iterdir())
        assert left == before or left == sorted([*before, path.name]), left  # no output folder made

    run()


OPTION = st.one_of(st.sampled_from(["0", "-1", "1", "inf", "nan", "-inf", "1e400", "", "x", "5G", "0.5", "1.5",
                                    "cuda", "cuda:7", "tpu", "cpu", "(", "[a", ".*", "a/config.json", "t.txt",
                                    "nowhere/x.json", "a", "."]),
                   st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=5))
ARGV = {  # each command's options, over inputs that are absent or tiny: nothing long ever starts
    "merge": lambda v: ["merge", "r.yaml", "out", "--quiet", "--shard-size", v[0], "--threads", v[1], "--device", v[2]],
    "moe": lambda v: ["moe", "m.yaml", "out", "--quiet", "--shard-size", v[0], "--device", v[1], "--seed", v[2]],
    "extract-lora": lambda v: ["extract-lora", "out", "--model", "nowhere", "--base", "b", "--rank", v[0],
                               "--energy", v[1], "--include", v[2]],
    "eval": lambda v: ["eval", "nowhere", "--perplexity", "t.txt", "--limit", v[0], "--device", v[1], "--json", v[2]],
    "inspect": lambda v: ["inspect", "nowhere", "--base", "b", "--threads", v[0], "--density", v[1],
                          "--json", v[2], "--quiet"],
    "evolve": lambda v: ["evolve", "nowhere.yaml", "--max-evals", v[0], "--seed", v[1], "--workers", v[2]],
    "monster": lambda v: ["monster", "nowhere.yaml", "--threads", v[0], "--device", v[1]],
    "report": lambda v: ["report", v[0] or "nowhere", "--out", v[1] or "x"],
}


@pytest.mark.parametrize("command", sorted(ARGV))
def test_generated_options_get_an_answer_never_a_traceback(command: str, workdir: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(workdir)
    (workdir / "r.yaml").write_text("models:\n  - model: ./nowhere\n    parameters: {weight: 1}\nmerge_method: linear\n")
    (workdir / "m.yaml").write_text("base_model: ./nowhere\ngate_mode: random\nexperts:\n  - source_model: ./b\n")
    before = sorted(p.name for p in workdir.iterdir())

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(st.tuples(OPTION, OPTION, OPTION))
    def run(values: tuple[str, str, str]) -> None:
        code = 0
        with contextlib.suppress(SystemExit):  # argparse's own answers exit 2
            code = main(ARGV[command](values))
        err = capsys.readouterr().err
        assert "Traceback" not in err and "internal error" not in err, err
        assert code in (0, 1, 2), err
        if code and "usage:" not in err:
            assert "fix:" in err or problem_lines(err), err
        assert sorted(p.name for p in workdir.iterdir()) == before

    run()
