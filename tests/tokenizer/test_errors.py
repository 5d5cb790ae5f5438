"""Different vocabulary sizes are never merged silently; --truncate-embeddings is explicit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import EMBED, HEAD, Output
from zoo import weights_fixture, zoo_fixture  # noqa: F401  (session fixtures)

from mergesmith.api import plan
from mergesmith.cli.main import main
from mergesmith.errors import IncompatibleModelsError, RecipeError


def _linear(x: Path, y: Path, extra: str = "") -> str:
    return (f"models:\n  - model: {x}\n    parameters: {{weight: 1.0}}\n"
            f"  - model: {y}\n    parameters: {{weight: 1.0}}\nmerge_method: linear\n{extra}")


def test_different_sizes_fail_with_each_size_and_both_fixes(zoo, tmp_path: Path, capsys) -> None:
    (tmp_path / "recipe.yaml").write_text(_linear(zoo["a"], zoo["b"]))
    code = main(["merge", str(tmp_path / "recipe.yaml"), str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{zoo['a']}: 33 rows" in err and f"{zoo['b']}: 37 rows" in err
    assert "tokenizer_source" in err and "--truncate-embeddings" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["recipe.yaml"]  # no output, no temp dir


def test_slices_whose_embedding_and_head_sizes_differ_fail_too(zoo) -> None:
    recipe = f"""
slices:
  - sources: [{{model: {zoo['a']}, layer_range: [0, 1]}}]
  - sources: [{{model: {zoo['b']}, layer_range: [1, 2]}}]
merge_method: passthrough
"""
    with pytest.raises(IncompatibleModelsError, match="different vocabulary sizes"):
        plan(recipe)


def test_truncate_embeddings_keeps_the_common_prefix(zoo, weights, tmp_path: Path, caplog) -> None:
    (tmp_path / "recipe.yaml").write_text(_linear(zoo["a"], zoo["b"]))
    out_dir = tmp_path / "out"
    assert main(["merge", str(tmp_path / "recipe.yaml"), str(out_dir), "--quiet", "--truncate-embeddings"]) == 0
    assert "keeping the first 33 rows" in caplog.text  # the CLI logs plan warnings
    out = Output(out_dir)
    assert out.config["vocab_size"] == 33
    for name in (EMBED, HEAD):
        torch.testing.assert_close(out.tensors[name], (weights["a"][name] + weights["b"][name][:33]) / 2)


def test_truncation_warns_when_the_kept_ids_are_different_tokens(zoo) -> None:
    warnings = "\n".join(plan(_linear(zoo["a"], zoo["c"]), truncate_embeddings=True).warnings)
    assert "keeping the first 33 rows" in warnings
    assert "are different tokens in different models" in warnings


@pytest.mark.parametrize(("setting", "message"), [
    ("tokenizer_source: nowhere", "'nowhere' is not a model of this recipe"),
    ("tokenizer: {tokens: {x: {source: {kind: model_token, model: A, token: nope}}}}", "has no token 'nope'"),
    ("tokenizer: {tokens: {x: {source: {kind: model_token, model: A, token_id: 99}}}}", "outside model"),
    ("tokenizer: {tokens: {w1: {force: true}}}", "force: true needs a source"),
    ("chat_template: chatlm", 'did you mean "chatml"'),
])
def test_bad_tokenizer_settings_fail_the_plan(zoo, setting: str, message: str) -> None:
    recipe = _linear(zoo["a"], zoo["c"], setting.replace("model: A", f"model: {zoo['a']}") + "\n")
    with pytest.raises(RecipeError, match=message):
        plan(recipe)


def test_same_size_but_different_tokenizers_warn(zoo, tmp_path: Path) -> None:
    from vocab_models import make_llama, wordlevel
    from zoo import WORDS

    make_llama(tmp_path / "reversed", wordlevel(WORDS[::-1]), seed=8)  # 33 rows, like a
    warnings = plan(_linear(zoo["a"], tmp_path / "reversed")).warnings
    assert any("tokenizers differ at 30 of 33 ids" in w and "tokenizer_source" in w for w in warnings)
    assert not plan(_linear(zoo["a"], zoo["base"])).warnings  # the same tokenizer: nothing to say
