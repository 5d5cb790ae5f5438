from __future__ import annotations

import json

import pytest
from search_helpers import evaluators, write_config

from mergesmith.cli.main import main
from mergesmith.errors import RecipeError
from mergesmith.search.config import load_soup_config


def test_greedy_soup_beats_uniform_held_out(family, tmp_path, capsys):
    models = [str(family[k]) for k in ("a", "b", "bad")]
    cfg = write_config(tmp_path / "soup.yaml", {"models": models, "output": str(tmp_path / "out"),
                                               **evaluators(family["root"])})
    assert main(["soup", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert '"step": "skip", "model": "' + str(family["bad"]) in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert str(family["bad"]) not in report["ingredients"]
    assert report["soup_search"] >= report["uniform_search"]
    # perplexity: lower is better on the held-out text too
    assert report["final"]["soup"]["perplexity"] <= report["final"]["uniform"]["perplexity"]
    assert (tmp_path / "out" / "model" / "config.json").is_file()


def test_unknown_key_did_you_mean(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", {"models": ["x"], "output": "o", "serch": []})
    with pytest.raises(RecipeError) as err:
        load_soup_config(cfg)
    assert "did you mean" in err.value.render()
    assert main(["soup", str(cfg)]) == 2
