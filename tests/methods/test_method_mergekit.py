"""Agreement with mergekit's own implementations, run in mergekit's venv.

The venv is /work/mkvenv (or $MERGEKIT_PYTHON); without it every test here is skipped.
Deterministic methods must match to 1e-6 relative (max |ours - theirs| / max |theirs|);
random ones (DARE, DELLA) are compared by distribution: kept share, kept share per
magnitude rank, and mean kept magnitude after rescaling.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from method_helpers import merge
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from mergesmith.methods import REGISTRY, get_method

MERGEKIT_PYTHON = Path(os.environ.get("MERGEKIT_PYTHON", "/work/mkvenv/bin/python"))
RUNNER = Path(__file__).with_name("mergekit_runner.py")
pytestmark = pytest.mark.skipif(
    not MERGEKIT_PYTHON.exists(),
    reason=f"mergekit's venv not found at {MERGEKIT_PYTHON} (set MERGEKIT_PYTHON to a Python with mergekit 0.1.5)",
)

W3 = [0.5, 0.3, 0.7]
D3 = [0.5, 0.3, 0.9]
BASE3 = (["base", "m0", "m1", "m2"], 0)
BIG3 = (["big_base", "big0", "big1", "big2"], 0)  # above the exact-selection size: sampled brackets
# (id, method, input names, base index, parameters)
CASES: list[tuple[str, str, list[str], int | None, dict[str, Any]]] = [
    ("task_arithmetic", "task_arithmetic", *BASE3, {"weight": W3}),
    ("task_arithmetic_norm", "task_arithmetic", *BASE3, {"weight": W3, "normalize": True, "lambda": 0.8}),
    ("ties", "ties", *BASE3, {"weight": W3, "density": D3}),
    ("ties_negative_weight", "ties", *BASE3, {"weight": [0.5, -0.3, 0.7], "density": D3}),
    ("ties_rescale_lambda", "ties", *BASE3, {"weight": W3, "density": D3, "rescale": True, "lambda": 1.3}),
    ("ties_big", "ties", *BIG3, {"weight": W3, "density": [0.2, 0.5, 0.97]}),
    ("ties_big_rescale", "ties", *BIG3, {"weight": W3, "density": [0.2, 0.5, 0.97], "rescale": True}),
    ("breadcrumbs", "breadcrumbs", *BASE3, {"weight": W3, "density": D3, "gamma": [0.01, 0.05, 0.2]}),
    ("breadcrumbs_ties", "breadcrumbs_ties", *BASE3,
     {"weight": W3, "density": D3, "gamma": [0.01, 0.05, 0.2], "rescale": True, "normalize": True}),
    ("breadcrumbs_big", "breadcrumbs", *BIG3, {"weight": W3, "density": [0.3, 0.8, 0.9], "gamma": 0.05}),
    ("breadcrumbs_small_gamma", "breadcrumbs", ["v0", "v1", "v2"], 0, {"weight": [1.0, 1.0], "density": 0.5}),
    ("nuslerp_base", "nuslerp", ["base", "m0", "m1"], 0, {"weight": [0.3, 0.7]}),
    ("nuslerp_no_base", "nuslerp", ["m0", "m1"], None, {"weight": [0.3, 0.7]}),
    ("nuslerp_row_wise", "nuslerp", ["base", "m0", "m1"], 0,
     {"weight": [0.3, 0.7], "nuslerp_flatten": False, "nuslerp_row_wise": True}),
    ("nuslerp_last_dim", "nuslerp", ["m0", "m1"], None, {"weight": [1.0, 2.0], "nuslerp_flatten": False}),
    ("multislerp_base", "multislerp", *BASE3, {"weight": W3}),
    ("multislerp_no_base", "multislerp", ["m0", "m1", "m2"], None, {"weight": W3}),
    ("karcher", "karcher", ["m0", "m1", "m2"], None, {}),
    ("karcher_vectors", "karcher", ["v0", "v1", "v2"], None, {"max_iter": 50, "tol": 1e-7}),
    ("model_stock", "model_stock", *BASE3, {}),
    ("model_stock_filter_wise", "model_stock", *BASE3, {"filter_wise": True}),
    ("sce", "sce", *BASE3, {}),
    ("sce_topk", "sce", *BASE3, {"select_topk": 0.3}),
    ("sce_big_topk", "sce", *BIG3, {"select_topk": 0.6}),
    ("nearswap", "nearswap", ["base", "m0"], 0, {"t": 0.5}),
    ("arcee_fusion", "arcee_fusion", ["base", "m0"], 0, {}),
    ("arcee_fusion_big", "arcee_fusion", ["big_base", "big0"], 0, {}),
    ("ram", "ram", *BASE3, {"epsilon": 0.3}),
    ("ramplus_tl", "ramplus_tl", *BASE3, {"epsilon": 0.3}),
    ("ramplus_tl_strong", "ramplus_tl", *BASE3, {"epsilon": 0.8, "r": 0.5, "alpha": 0.9}),
    ("linear", "linear", ["m0", "m1", "m2"], None, {"weight": W3}),
    ("slerp", "slerp", ["base", "m0"], 0, {"t": 0.3}),
]
SEEDS = [1, 2, 3, 4]
# Random methods: one model, weight 1, so out - base is the sparsified delta.
RANDOM_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("dare_linear", "dare_linear", {"weight": [1.0], "density": [0.3], "rescale": False}),
    ("dare_linear_l1", "dare_linear", {"weight": [1.0], "density": [0.3]}),
    ("dare_ties", "dare_ties", {"weight": [1.0], "density": [0.6]}),
    ("della_linear", "della_linear", {"weight": [1.0], "density": [0.4], "epsilon": [0.3], "rescale": False}),
    ("della", "della", {"weight": [1.0], "density": [0.5], "epsilon": [0.2]}),
]


def _inputs() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(1234)
    base = torch.randn(96, 80, generator=gen)
    big_base = torch.randn(520, 300, generator=gen)
    tensors = {"base": base, "big_base": big_base, "rand_base": torch.randn(256, 256, generator=gen)}
    for i, scale in enumerate((0.5, 1.0, 0.8)):
        tensors[f"m{i}"] = base + scale * torch.randn(96, 80, generator=gen)
        tensors[f"big{i}"] = big_base + scale * torch.randn(520, 300, generator=gen)
        tensors[f"v{i}"] = torch.randn(60, generator=gen)  # gamma * 60 < 1: breadcrumbs keeps its target
    tensors["rand_m"] = tensors["rand_base"] + torch.randn(256, 256, generator=gen)
    return tensors


@pytest.fixture(scope="module")
def mergekit_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """Run every case through mergekit once; returns (inputs, outputs, errors)."""
    tmp = tmp_path_factory.mktemp("mergekit")
    inputs = _inputs()
    cases = [{"id": cid, "method": m, "inputs": names, "base_index": bi, "parameters": p}
             for cid, m, names, bi, p in CASES]
    cases += [{"id": cid, "method": m, "inputs": ["rand_base", "rand_m"], "base_index": 0, "parameters": p,
               "seeds": SEEDS} for cid, m, p in RANDOM_CASES]
    (tmp / "cases.json").write_text(json.dumps(cases))
    save_file(inputs, tmp / "in.safetensors")
    subprocess.run([str(MERGEKIT_PYTHON), str(RUNNER), str(tmp / "cases.json"), str(tmp / "in.safetensors"),
                    str(tmp / "out.safetensors")], check=True, capture_output=True, timeout=600)
    with safe_open(tmp / "out.safetensors", "pt") as handle:
        errors = json.loads(handle.metadata()["errors"])
    return inputs, load_file(tmp / "out.safetensors"), errors


def _ours(method: str, names: list[str], base_index: int | None, params: dict[str, Any],
          inputs: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    tensors = [inputs[name] for name in names]
    if get_method(method).base == "ignored" or base_index is None:
        return merge(method, tensors, None, seed=seed, **params)
    base = tensors.pop(base_index)
    return merge(method, tensors, base, seed=seed, **params)


@pytest.mark.parametrize(("case", "method", "names", "base_index", "params"), CASES, ids=[c[0] for c in CASES])
def test_deterministic_methods_equal_mergekit(mergekit_run, case, method, names, base_index, params) -> None:
    inputs, outputs, errors = mergekit_run
    assert case not in errors, errors.get(case)
    theirs = outputs[f"{case}/0"]
    ours = _ours(method, names, base_index, params, inputs)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    max_abs = float((ours - theirs).abs().max())
    relative = max_abs / float(theirs.abs().max())
    print(f"AGREEMENT {case}: max abs {max_abs:.3g}, max rel {relative:.3g}", file=sys.stderr)
    assert relative <= 1e-6, (max_abs, relative)


def test_cases_changed_something(mergekit_run) -> None:
    """The agreement cases are not trivial: each output differs from the base/first input."""
    inputs, outputs, _ = mergekit_run
    for case, _, names, base_index, _ in CASES:
        reference = inputs[names[base_index if base_index is not None else 0]]
        assert not torch.equal(outputs[f"{case}/0"], reference), case


def _kept(out: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    return (out - base) != 0


@pytest.mark.parametrize(("case", "method", "params"), RANDOM_CASES, ids=[c[0] for c in RANDOM_CASES])
def test_random_methods_match_mergekit_in_distribution(mergekit_run, case, method, params) -> None:
    inputs, outputs, errors = mergekit_run
    assert case not in errors, errors.get(case)
    base, delta = inputs["rand_base"], inputs["rand_m"] - inputs["rand_base"]
    theirs = [outputs[f"{case}/{seed}"] for seed in SEEDS]
    ours = [_ours(method, ["rand_base", "rand_m"], 0, params, inputs, seed=seed) for seed in SEEDS]
    n = base.numel() * len(SEEDS)
    share_theirs = sum(int(_kept(o, base).sum()) for o in theirs) / n
    share_ours = sum(int(_kept(o, base).sum()) for o in ours) / n
    sigma = (params["density"][0] * (1 - params["density"][0]) / n) ** 0.5
    assert abs(share_ours - share_theirs) < 6 * sigma * 2**0.5
    assert abs(share_ours - params["density"][0]) < 6 * sigma
    # Mean kept magnitude, rescaled or not, agrees to sampling noise.
    mean_theirs = torch.stack([(o - base).abs().sum() for o in theirs]).sum() / (share_theirs * n)
    mean_ours = torch.stack([(o - base).abs().sum() for o in ours]).sum() / (share_ours * n)
    assert float((mean_ours - mean_theirs).abs() / mean_theirs) < 0.02
    # Kept share by magnitude rank within rows (DELLA's ramp; flat for DARE).
    ranks = delta.abs().argsort(dim=1).argsort(dim=1)
    decile = (ranks * 10) // delta.shape[1]
    for d in range(10):
        cells = decile == d
        count = int(cells.sum()) * len(SEEDS)
        got_theirs = sum(int((_kept(o, base) & cells).sum()) for o in theirs) / count
        got_ours = sum(int((_kept(o, base) & cells).sum()) for o in ours) / count
        assert abs(got_ours - got_theirs) < 6 * (0.25 / count) ** 0.5 * 2**0.5, (d, got_ours, got_theirs)


@pytest.fixture(scope="module")
def mergekit_specs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("specs") / "specs.json"
    subprocess.run([str(MERGEKIT_PYTHON), str(RUNNER), "--specs", str(path)], check=True, capture_output=True,
                   timeout=300)
    return json.loads(path.read_text())


# Our additions, absent from mergekit, each off (or neutral) by default.
EXTRA_PARAMS = {
    "ties": {"consensus"}, "dare_ties": {"consensus"}, "breadcrumbs_ties": {"consensus"}, "della": {"consensus"},
    "karcher": {"weight"}, "model_stock": {"clamp_ratio"},
}
# mergekit's optional-tensor policy -> our passthrough_singletons (the nearest of the two).
SINGLETONS = {"error": False, "passthrough_singleton": True, "passthrough_base_singleton": True,
              "base_or_skip": True}


def test_every_mergekit_method_is_registered_with_its_parameters(mergekit_specs) -> None:
    assert set(mergekit_specs) <= set(REGISTRY)
    for name, theirs in mergekit_specs.items():
        spec = get_method(name)
        ours = {info.name: info for info in spec.param_infos}
        assert set(ours) - EXTRA_PARAMS.get(name, set()) == set(theirs["parameters"]), name
        for pname, their in theirs["parameters"].items():
            info = ours[pname]
            assert info.required == their["required"], (name, pname)
            assert info.per_model == (their["scope"] != "shared"), (name, pname)
            if not their["required"]:
                assert info.default == their["default"], (name, pname, info.default, their["default"])
        assert spec.base == ("ignored" if theirs["base"] == "ignored" else theirs["base"]), name
        assert spec.passthrough_singletons == SINGLETONS[theirs["optional_tensor_policy"]], name


def test_model_counts_match_mergekit_contracts(mergekit_specs) -> None:
    for name, theirs in mergekit_specs.items():
        spec = get_method(name)
        with_base = 1 if theirs["base"] == "required" else 0
        low = max(theirs["min_non_base"] or 0, theirs["min_inputs"] - with_base)
        if theirs["base"] == "ignored":
            low = theirs["min_inputs"]
        high = theirs["max_non_base"]
        if high is None and theirs["max_inputs"] is not None:
            high = theirs["max_inputs"] - with_base
        assert (spec.min_models, spec.max_models) == (low, high), name
