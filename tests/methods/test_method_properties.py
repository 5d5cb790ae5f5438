"""Properties of every registered method, checked with hypothesis on small tensors.

Values are drawn on a grid of eighths so that sums are exact in float32: order-dependent
rounding cannot flip a sign election, and "order does not matter" can be tested sharply.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from method_helpers import make_params
from pydantic import ValidationError

from mergesmith.methods import REGISTRY, get_method
from mergesmith.methods.base import MethodSpec

# Parameters to run each method with (per-model values broadcast to every model).
PARAMS: dict[str, dict[str, Any]] = {
    "linear": {"weight": 1.0}, "slerp": {"t": 0.3}, "passthrough": {},
    "task_arithmetic": {"weight": 1.0},
    "ties": {"weight": 1.0, "density": 0.5}, "dare_ties": {"weight": 1.0, "density": 0.5},
    "dare_linear": {"weight": 1.0, "density": 0.5},
    "breadcrumbs": {"weight": 1.0, "density": 0.5, "gamma": 0.1},
    "breadcrumbs_ties": {"weight": 1.0, "density": 0.5, "gamma": 0.1},
    "della": {"weight": 1.0, "density": 0.5, "epsilon": 0.2},
    "della_linear": {"weight": 1.0, "density": 0.5, "epsilon": 0.2},
    "nuslerp": {"weight": 1.0}, "multislerp": {"weight": 1.0}, "karcher": {}, "model_stock": {},
    "sce": {"select_topk": 0.5}, "nearswap": {"t": 0.1}, "arcee_fusion": {}, "ram": {}, "ramplus_tl": {},
    "mergemonster": {"lerp": 0.3, "slerp": 0.5, "slice": 0.4, "cyclic": 0.2, "gradient": 0.6},
}
# Methods whose result does not depend on the order of the models (with their parameters).
SYMMETRIC = ["linear", "task_arithmetic", "ties", "breadcrumbs", "breadcrumbs_ties", "nuslerp", "multislerp",
             "karcher", "model_stock", "sce", "ram", "ramplus_tl"]
# Methods that give one model back when it is the only one (weight 1, density 1, epsilon 0).
IDENTITY_OF_ONE = ["linear", "passthrough", "task_arithmetic", "ties", "dare_ties", "dare_linear", "breadcrumbs",
                   "breadcrumbs_ties", "della", "della_linear", "multislerp", "karcher", "sce", "ram"]

SHAPES = st.sampled_from([(7,), (3, 5), (4, 4), (2, 3, 4), (1, 9)])
GRID = st.integers(min_value=-24, max_value=24).map(lambda v: v / 8)


def _count(spec: MethodSpec, wanted: int = 3) -> int:
    high = spec.max_models if spec.max_models is not None else wanted
    return max(spec.min_models, min(wanted, high), 1)


@st.composite
def _inputs(draw: st.DrawFn, n_models: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    shape = draw(SHAPES)
    size = 1
    for dim in shape:
        size *= dim
    grid = st.lists(GRID, min_size=size, max_size=size)
    base = torch.tensor(draw(grid)).reshape(shape)
    models = [torch.tensor(draw(grid)).reshape(shape) for _ in range(n_models)]
    return base, models


def _run(spec: MethodSpec, base: torch.Tensor | None, models: list[torch.Tensor], seed: int = 0,
         **overrides: Any) -> torch.Tensor:
    values = {**PARAMS[spec.name], **overrides}
    params = make_params(spec, len(models), **values)
    rng = torch.Generator().manual_seed(seed) if spec.randomized else None
    if spec.uses_base:
        return spec.func(list(models), base, params, rng)
    return spec.func(list(models), None, params, rng)


def test_every_kernel_method_is_covered() -> None:
    """Every method but the data-aware ones (fisher, regmean: they need calibration statistics
    and are tested with them in tests/datamerge)."""
    kernels = {name for name, spec in REGISTRY.items() if spec.statistics is None}
    assert set(PARAMS) == kernels


@pytest.mark.parametrize("name", sorted(PARAMS))
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_degenerate_inputs_give_finite_results(name: str, data: st.DataObject) -> None:
    """Zero task vectors, identical models, zero tensors and zero weights: no NaN or inf."""
    spec = get_method(name)
    n = _count(spec)
    base, models = data.draw(_inputs(n))
    case = data.draw(st.sampled_from(["zero_deltas", "identical", "zeros", "zero_weights"]))
    if case == "zero_deltas":
        models = [base.clone() for _ in models]
    elif case == "identical":
        models = [models[0].clone() for _ in models]
    elif case == "zeros":
        base, models = torch.zeros_like(base), [torch.zeros_like(base) for _ in models]
    overrides = {"weight": 0.0} if case == "zero_weights" and spec.param("weight") else {}
    try:
        out = _run(spec, base, models, **overrides)
    except ValidationError as exc:  # weights summing to 0 are refused with a fix, never NaN
        assert case == "zero_weights" and "sum to 0" in str(exc), exc
        return
    assert out.shape == base.shape and torch.isfinite(out).all()
    if case == "zero_deltas" and spec.uses_base:
        torch.testing.assert_close(out, base)
    if case in ("identical", "zeros") and not spec.uses_base and name != "passthrough":
        torch.testing.assert_close(out, models[0])


@pytest.mark.parametrize("name", SYMMETRIC)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_symmetric_methods_ignore_model_order(name: str, data: st.DataObject) -> None:
    spec = get_method(name)
    n = _count(spec)
    base, models = data.draw(_inputs(n))
    order = data.draw(st.permutations(list(range(n))))
    overrides = {}
    if spec.param("weight") and spec.param("weight").per_model:
        weights = data.draw(st.lists(st.integers(1, 8).map(lambda v: v / 4), min_size=n, max_size=n))
        overrides["weight"] = weights
    if name == "sce":
        overrides["select_topk"] = 1.0  # variance ties across reorderings are rounding-dependent
    out = _run(spec, base, models, **overrides)
    permuted = {key: [value[i] for i in order] for key, value in overrides.items() if isinstance(value, list)}
    out_permuted = _run(spec, base, [models[i] for i in order], **{**overrides, **permuted})
    torch.testing.assert_close(out_permuted, out, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", IDENTITY_OF_ONE)
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_one_model_in_gives_it_back(name: str, data: st.DataObject) -> None:
    spec = get_method(name)
    base, models = data.draw(_inputs(1))
    overrides: dict[str, Any] = {}
    for key, value in (("weight", 1.0), ("density", 1.0), ("epsilon", 0.0), ("select_topk", 1.0)):
        if spec.param(key):
            overrides[key] = value
    out = _run(spec, base, models, **overrides)
    torch.testing.assert_close(out, models[0], rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(PARAMS))
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_inputs_are_not_modified_and_dtype_is_kept(name: str, data: st.DataObject) -> None:
    spec = get_method(name)
    n = _count(spec)
    base, models = data.draw(_inputs(n))
    base, models = base.double(), [m.double() for m in models]
    copies = [base.clone(), *(m.clone() for m in models)]
    out = _run(spec, base, models)
    assert out.dtype == torch.float64
    for before, after in zip(copies, [base, *models], strict=True):
        assert torch.equal(before, after)


@pytest.mark.parametrize("name", [n for n in sorted(PARAMS) if get_method(n).randomized])
def test_random_methods_repeat_with_the_same_seed(name: str) -> None:
    spec = get_method(name)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(16, 16, generator=gen)
    models = [base + torch.randn(16, 16, generator=gen) for _ in range(2)]
    first = _run(spec, base, models, seed=5)
    assert torch.equal(first, _run(spec, base, models, seed=5))
    assert not torch.equal(first, _run(spec, base, models, seed=6))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_non_contiguous_and_empty_inputs(name: str) -> None:
    """Transposed views give the transposed result; empty tensors give empty results."""
    spec = get_method(name)
    n = _count(spec)
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(6, 5, generator=gen)
    models = [base + torch.randn(6, 5, generator=gen) for _ in range(n)]
    expected = _run(spec, base.t().contiguous(), [m.t().contiguous() for m in models])
    out = _run(spec, base.t(), [m.t() for m in models])
    torch.testing.assert_close(out, expected)
    empty = _run(spec, torch.zeros(0, 4), [torch.zeros(0, 4) for _ in range(n)])
    assert empty.shape == (0, 4)
