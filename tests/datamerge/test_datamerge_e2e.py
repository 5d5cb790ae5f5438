"""End to end: statistics from calibration text, cached, merged, loadable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
import yaml
from factory import load_tensors, make_family

from mergesmith.api import merge
from mergesmith.cli.main import main


@pytest.fixture(scope="module")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("datamerge")
    models = make_family(root, "llama", layers=1)
    (root / "a.txt").write_text("w1 w2 w3 w4 w5\nw2 w3 w4 w5 w6\n")
    (root / "b.jsonl").write_text('{"text": "w50 w51 w52 w53"}\n{"text": "w60 w61 w62"}\n')
    return models


def _digest(model_dir: Path) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(model_dir.iterdir()))).hexdigest()


def _recipe(root: Path, method: str) -> Path:
    recipe = {"merge_method": method, "dtype": "float32", "models": [
        {"model": "./llama/a", "parameters": {"calibration": "a.txt"}},
        {"model": "./llama/b", "parameters": {"calibration": "b.jsonl"}}]}
    path = root / f"{method}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.mark.parametrize("method", ["fisher", "regmean"])
def test_merge_loads_in_transformers_and_reuses_statistics(family: dict[str, Path], method: str) -> None:
    from transformers import AutoModelForCausalLM

    root = family["a"].parents[1]
    before = {k: _digest(p) for k, p in family.items()}
    out = root / "out" / method
    cache = root / "stats"
    merge(_recipe(root, method), out, stats_dir=cache)
    files = sorted(cache.glob("*.safetensors"))
    kind = "fisher" if method == "fisher" else "gram"
    assert len([f for f in files if f.name.startswith(kind)]) == 2
    stamps = {f: f.stat().st_mtime_ns for f in files}
    merge(_recipe(root, method), out, stats_dir=cache, overwrite=True)  # statistics reused
    assert {f: f.stat().st_mtime_ns for f in sorted(cache.glob("*.safetensors"))} == stamps
    assert {k: _digest(p) for k, p in family.items()} == before  # inputs never written
    model = AutoModelForCausalLM.from_pretrained(out)
    logits = model(input_ids=torch.tensor([[1, 5, 6]])).logits
    assert torch.isfinite(logits).all()
    merged, a, b = load_tensors(out), load_tensors(family["a"]), load_tensors(family["b"])
    norm = "model.norm.weight"  # no statistics for RegMean: the average; Fisher: between the two
    lo, hi = torch.minimum(a[norm], b[norm]), torch.maximum(a[norm], b[norm])
    assert bool(((merged[norm] >= lo - 1e-6) & (merged[norm] <= hi + 1e-6)).all())
    proj = "model.layers.0.mlp.down_proj.weight"
    assert not torch.allclose(merged[proj], (a[proj] + b[proj]) / 2)  # the statistics mattered


def test_cli_reports_a_missing_calibration(family: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    root = family["a"].parents[1]
    recipe = root / "missing.yaml"
    recipe.write_text(yaml.safe_dump({"merge_method": "fisher", "models": [
        {"model": "./llama/a", "parameters": {"calibration": "a.txt"}}, {"model": "./llama/b"}]}))
    assert main(["merge", str(recipe), str(root / "never")]) == 2
    assert "needs `calibration`" in capsys.readouterr().err
    assert not (root / "never").exists()


def test_statistics_match_hand_computed_ones(family: dict[str, Path], tmp_path: Path) -> None:
    from safetensors import safe_open
    from transformers import AutoModelForCausalLM

    from mergesmith.datamerge.prepare import compute_stats

    data = tmp_path / "one.txt"
    data.write_text("w1 w2 w3 w4\nw7 w8\n")
    model = AutoModelForCausalLM.from_pretrained(family["a"])
    batches = [torch.tensor([[4, 5, 6, 7]]), torch.tensor([[10, 11]])]
    q = "model.layers.0.self_attn.q_proj.weight"
    with safe_open(str(compute_stats("gram", family["a"], data, tmp_path)), framework="pt") as f:
        aliases = yaml.safe_load(f.metadata()["aliases"])
        gram = f.get_tensor(q)
    # q, k and v read one normed input; gate and up another: one Gram matrix each.
    assert aliases[q.replace("q_proj", "k_proj")] == q and aliases[q.replace("q_proj", "v_proj")] == q
    assert aliases["model.layers.0.mlp.up_proj.weight"] == "model.layers.0.mlp.gate_proj.weight"
    with torch.no_grad():
        xs = torch.cat([model.model.layers[0].input_layernorm(model.model.embed_tokens(ids))[0] for ids in batches])
    torch.testing.assert_close(gram, xs.T @ xs / xs.shape[0], rtol=1e-4, atol=1e-6)
    fisher = compute_stats("fisher", family["a"], data, tmp_path)
    expected = torch.zeros_like(model.lm_head.weight)
    for ids in batches:
        model.zero_grad()
        (model(input_ids=ids, labels=ids).loss * (ids.shape[1] - 1)).backward()
        expected += model.lm_head.weight.grad ** 2
    with safe_open(str(fisher), framework="pt") as f:
        torch.testing.assert_close(f.get_tensor("lm_head.weight"), expected / 2, rtol=1e-4, atol=1e-9)
