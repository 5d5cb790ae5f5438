"""Every method's kernel against mergekit 0.1.5's (goldens made by make_golden.py; no mergekit here).

Deterministic methods match to 1e-6 relative (max |ours - theirs| / max |theirs|); on the big
cases, where only a fingerprint is kept, row and column sums match to 1e-6 relative times the
number of entries summed, and 4096 sampled entries to 1e-6 relative. Random ones (DARE, DELLA)
are compared by distribution: kept share, kept share per magnitude decile within rows, mean
kept magnitude after rescaling. Parameter specs and input contracts match mergekit's registry.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
import torch
from compat_compare import GOLDEN, REGENERATE, REL_FP32, fp32_error, tensor_sha
from compat_kernels import (
    CASES,
    RANDOM_CASES,
    SEEDS,
    fingerprint,
    is_big,
    kernel_inputs,
    random_stats,
)
from safetensors.torch import load_file

from mergesmith.methods import REGISTRY, get_method


@pytest.fixture(scope="module")
def kernels() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], dict]:
    """(inputs, mergekit's outputs, record), the inputs checked against the goldens' hashes."""
    record = json.loads((GOLDEN / "kernels.json").read_text())
    inputs = kernel_inputs()
    changed = sorted(n for n, t in inputs.items() if record["inputs"].get(n) != tensor_sha(t))
    if changed:
        pytest.fail(f"kernel inputs {changed} differ from those the goldens were made from: regenerate with {REGENERATE}")
    return inputs, load_file(GOLDEN / "kernels.safetensors"), record


def _ours(method: str, names: list[str], base_index: int | None, params: dict[str, Any],
          inputs: dict[str, torch.Tensor], seed: int = 0) -> torch.Tensor:
    from methods.method_helpers import merge

    tensors = [inputs[name] for name in names]
    if get_method(method).base == "ignored" or base_index is None:
        return merge(method, tensors, None, seed=seed, **params)
    base = tensors.pop(base_index)
    return merge(method, tensors, base, seed=seed, **params)


@pytest.mark.parametrize(("case", "method", "names", "base_index", "params"), CASES, ids=[c[0] for c in CASES])
def test_deterministic_methods_equal_mergekit(kernels, case, method, names, base_index, params) -> None:
    inputs, outputs, record = kernels
    assert case not in record["errors"], record["errors"].get(case)
    ours = _ours(method, names, base_index, params, inputs)
    if is_big(names):
        scale = float(outputs[f"{case}/sample"].abs().max())
        for part, value in fingerprint(ours).items():
            theirs = outputs[f"{case}/{part}"]
            summed = 1 if part == "sample" else ours.shape[1 if part == "rows" else 0]
            error = float((value.double() - theirs.double()).abs().max()) / scale
            print(f"AGREEMENT {case} {part}: max rel {error:.3g}", file=sys.stderr)
            assert error <= REL_FP32 * summed, (part, error)
        return
    theirs = outputs[case]
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    relative = fp32_error(ours, theirs)
    print(f"AGREEMENT {case}: max rel {relative:.3g}", file=sys.stderr)
    assert relative <= REL_FP32


def test_cases_changed_something(kernels) -> None:
    """The agreement cases are not trivial: each output differs from the base/first input."""
    inputs, outputs, _ = kernels
    for case, _, names, base_index, _ in CASES:
        reference = inputs[names[base_index if base_index is not None else 0]]
        theirs = outputs[f"{case}/sample"] if is_big(names) else outputs[case]
        assert not torch.equal(theirs, fingerprint(reference)["sample"] if is_big(names) else reference), case


@pytest.mark.parametrize(("case", "method", "params"), RANDOM_CASES, ids=[c[0] for c in RANDOM_CASES])
def test_random_methods_match_mergekit_in_distribution(kernels, case, method, params) -> None:
    inputs, outputs, record = kernels
    assert case not in record["errors"], record["errors"].get(case)
    base, delta = inputs["rand_base"], inputs["rand_m"] - inputs["rand_base"]
    theirs = torch.stack([outputs[f"{case}/{seed}"] for seed in SEEDS]).sum(0)
    ours = torch.stack([random_stats(_ours(method, ["rand_base", "rand_m"], 0, params, inputs, seed=seed), base, delta)
                        for seed in SEEDS]).sum(0)
    n = base.numel() * len(SEEDS)
    share_theirs, share_ours = float(theirs[0]) / n, float(ours[0]) / n
    density = params["density"][0]
    sigma = (density * (1 - density) / n) ** 0.5
    print(f"AGREEMENT {case}: kept {share_ours:.4f} vs {share_theirs:.4f} (sigma {sigma:.4f})", file=sys.stderr)
    assert abs(share_ours - share_theirs) < 6 * sigma * 2**0.5
    assert abs(share_ours - density) < 6 * sigma
    # Mean kept magnitude, rescaled or not, agrees to sampling noise.
    mean_theirs, mean_ours = float(theirs[1] / theirs[0]), float(ours[1] / ours[0])
    assert abs(mean_ours - mean_theirs) / mean_theirs < 0.02
    # Kept share by magnitude rank within rows (DELLA's ramp; flat for DARE).
    count = n / 10
    for d in range(10):
        got_theirs, got_ours = float(theirs[2 + d]) / count, float(ours[2 + d]) / count
        assert abs(got_ours - got_theirs) < 6 * (0.25 / count) ** 0.5 * 2**0.5, (d, got_ours, got_theirs)


# Our additions, absent from mergekit, each off (or neutral) by default.
EXTRA_PARAMS = {
    "ties": {"consensus"}, "dare_ties": {"consensus"}, "breadcrumbs_ties": {"consensus"}, "della": {"consensus"},
    "karcher": {"weight", "weighted"}, "model_stock": {"clamp_ratio"},
}
# mergekit's optional-tensor policy -> our passthrough_singletons (the nearest of the two).
SINGLETONS = {"error": False, "passthrough_singleton": True, "passthrough_base_singleton": True,
              "base_or_skip": True}


def _specs() -> dict[str, Any]:
    return json.loads((GOLDEN / "kernels.json").read_text())["specs"]


def test_every_mergekit_method_is_registered_with_its_parameters() -> None:
    specs = _specs()
    assert len(specs) >= 20 and set(specs) <= set(REGISTRY)
    for name, theirs in specs.items():
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


def test_model_counts_match_mergekit_contracts() -> None:
    for name, theirs in _specs().items():
        spec = get_method(name)
        with_base = 1 if theirs["base"] == "required" else 0
        low = max(theirs["min_non_base"] or 0, theirs["min_inputs"] - with_base)
        if theirs["base"] == "ignored":
            low = theirs["min_inputs"]
        high = theirs["max_non_base"]
        if high is None and theirs["max_inputs"] is not None:
            high = theirs["max_inputs"] - with_base
        assert (spec.min_models, spec.max_models) == (low, high), name


def test_every_mergekit_method_has_a_recipe_case() -> None:
    """The recipe goldens cover every method mergekit registers."""
    from compat_cases import CASES as RECIPES

    methods = {line.split(":", 1)[1].strip() for case in RECIPES for line in case.recipe.splitlines()
               if line.startswith("merge_method:")}
    assert set(_specs()) - methods == set()


