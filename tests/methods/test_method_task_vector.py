"""The task-vector pipeline and its presets, against answers worked by hand."""

from __future__ import annotations

import pytest
import torch
from method_helpers import make_params, merge
from pydantic import ValidationError

from mergesmith.methods import get_method
from mergesmith.methods.task_vector import rescale_mode

BASE = torch.zeros(4)
MODELS = [torch.tensor([1.0, -2.0, 3.0, 0.5]), torch.tensor([-1.5, 1.0, 0.75, 0.0]),
          torch.tensor([0.5, 1.5, -4.0, 0.25])]


def test_task_arithmetic_closed_form() -> None:
    base = torch.tensor([1.0, 2.0])
    models = [torch.tensor([2.0, 2.0]), torch.tensor([1.0, 4.0])]
    out = merge("task_arithmetic", models, base, weight=[0.5, 2.0], **{"lambda": 0.5})
    # base + 0.5 * (0.5 * [1, 0] + 2 * [0, 2])
    assert out.tolist() == [1.25, 4.0]
    normalized = merge("task_arithmetic", models, base, weight=[0.5, 2.0], normalize=True)
    torch.testing.assert_close(normalized, base + (0.5 * torch.tensor([1.0, 0.0]) + 2 * torch.tensor([0.0, 2.0])) / 2.5)


def test_ties_election_worked_by_hand() -> None:
    """Trim to 2 of 4 entries each, elect by summed mass, average the agreeing entries.

    trimmed deltas: [0, -2, 3, 0], [-1.5, 1, 0, 0], [0, 1.5, -4, 0]
    votes: [-1.5, 0.5, -1, 0] -> signs [-, +, -, +]
    entry 0: -1.5 alone; entry 1: (1 + 1.5) / 2; entry 2: -4 alone; entry 3: nobody -> 0
    """
    out = merge("ties", MODELS, BASE, weight=1.0, density=0.5)
    assert out.tolist() == [-1.5, 1.25, -4.0, 0.0]


def test_ties_weights_enter_the_vote_and_the_divisor() -> None:
    # weighted: [0, -2, 3, 0], [-3, 2, 0, 0], [0, 1.5, -4, 0]; votes [-3, 1.5, -1, 0]
    out = merge("ties", MODELS, BASE, weight=[1.0, 2.0, 1.0], density=0.5)
    torch.testing.assert_close(out, torch.tensor([-3.0 / 2.0, 3.5 / 3.0, -4.0, 0.0]))
    unnormalized = merge("ties", MODELS, BASE, weight=[1.0, 2.0, 1.0], density=0.5, normalize=False)
    torch.testing.assert_close(unnormalized, torch.tensor([-3.0, 3.5, -4.0, 0.0]))


def test_count_consensus_elects_the_sign_most_models_hold() -> None:
    # entry 2: one model says +3, one says -4: an even count goes to +, unlike the mass vote
    out = merge("ties", MODELS, BASE, weight=1.0, density=0.5, consensus="count")
    assert out.tolist() == [-1.5, 1.25, 3.0, 0.0]


def test_negative_weights_flip_a_models_vote() -> None:
    """weighted deltas [1, -2, 3, .5] and -[-1.5, 1, .75, 0] = [1.5, -1, -.75, 0]

    votes [2.5, -3, 2.25, .5]: entries 0 and 1 agree in both models, whose weights sum to 0,
    so the divisor counts as 1 (as in mergekit); entry 2: model 0 only; entry 3: model 0
    (a zero delta never agrees).
    """
    out = merge("ties", MODELS[:2], BASE, weight=[1.0, -1.0], density=1.0)
    assert out.tolist() == [2.5, -3.0, 3.0, 0.5]


def test_ties_with_density_one_and_one_model_is_that_model() -> None:
    base = torch.tensor([1.0, -1.0, 2.0])
    model = torch.tensor([1.5, -3.0, 2.0])
    for method in ("ties", "dare_ties", "breadcrumbs_ties", "della"):
        out = merge(method, [model], base, weight=0.7, density=1.0, normalize=True)
        torch.testing.assert_close(out, model, msg=method)


def test_dare_with_density_one_is_task_arithmetic() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(30, 20, generator=gen)
    models = [base + torch.randn(30, 20, generator=gen) for _ in range(3)]
    expected = merge("task_arithmetic", models, base, weight=[0.3, 0.5, 0.2])
    for method in ("dare_linear", "della_linear", "breadcrumbs"):
        torch.testing.assert_close(merge(method, models, base, weight=[0.3, 0.5, 0.2], density=1.0), expected)


def test_no_models_gives_a_copy_of_the_base() -> None:
    base = torch.tensor([1.0, 2.0])
    for method in ("task_arithmetic", "ties", "dare_ties", "breadcrumbs", "della_linear", "sce", "ram", "ramplus_tl"):
        spec = get_method(method)
        out = merge(method, [], base, **({"weight": []} if spec.param("weight") else {}))
        assert torch.equal(out, base) and out.data_ptr() != base.data_ptr(), method


@pytest.mark.parametrize(("method", "normalize", "rescale", "extra"), [
    ("task_arithmetic", False, False, set()),
    ("ties", True, False, {"consensus"}),
    ("dare_ties", False, True, {"consensus"}),
    ("dare_linear", False, True, set()),
    ("breadcrumbs", False, False, {"gamma"}),
    ("breadcrumbs_ties", False, False, {"gamma", "consensus"}),
    ("della", True, True, {"epsilon", "consensus"}),
    ("della_linear", False, True, {"epsilon"}),
])
def test_preset_defaults_follow_mergekit(method: str, normalize: bool, rescale: bool, extra: set[str]) -> None:
    spec = get_method(method)
    params = make_params(spec, 2, weight=1.0)
    assert (params.normalize, params.rescale, params.lambda_, params.int8_mask) == (normalize, rescale, 1.0, False)
    names = {info.name for info in spec.param_infos}
    assert names == {"weight", "density", "normalize", "rescale", "lambda", "int8_mask"} | extra
    assert spec.base == "required" and spec.min_models == 0 and spec.max_models is None
    assert spec.randomized == (method.startswith(("dare", "della")))
    if "gamma" in extra:
        assert params.gamma == [0.01, 0.01]
    if "epsilon" in extra:
        assert params.epsilon == [0.15, 0.15]
    if "consensus" in extra:
        assert params.consensus == "sum"


def test_rescale_accepts_mergekits_booleans_and_the_named_modes() -> None:
    spec = get_method("dare_linear")
    assert rescale_mode(make_params(spec, 1, weight=1.0).rescale) == "l1"
    assert rescale_mode(make_params(spec, 1, weight=1.0, rescale=False).rescale) is None
    assert rescale_mode(make_params(spec, 1, weight=1.0, rescale="inverse_density").rescale) == "inverse_density"
    assert rescale_mode(make_params(spec, 1, weight=1.0, rescale="l1").rescale) == "l1"
    with pytest.raises(ValidationError):
        make_params(spec, 1, weight=1.0, rescale="l2")


def test_inverse_density_rescale_in_the_pipeline() -> None:
    base = torch.zeros(8)
    model = torch.tensor([4.0, -3.0, 2.0, 1.0, 0.5, -0.25, 0.125, 0.0])
    out = merge("ties", [model], base, weight=1.0, density=0.25, rescale="inverse_density", normalize=False)
    assert out.tolist() == [16.0, -12.0] + [0.0] * 6


def test_parameter_ranges_are_validated() -> None:
    with pytest.raises(ValidationError):
        make_params(get_method("ties"), 1, weight=1.0, density=1.5)
    with pytest.raises(ValidationError):
        make_params(get_method("breadcrumbs"), 1, weight=1.0, gamma=-0.1)
    with pytest.raises(ValidationError, match="epsilon"):
        make_params(get_method("della"), 1, weight=1.0, density=0.2, epsilon=0.3)
    with pytest.raises(ValidationError):
        make_params(get_method("ties"), 1, weight=1.0, consensus="majority")
    # epsilon does not matter where nothing is sparsified
    assert make_params(get_method("della"), 1, weight=1.0, density=1.0, epsilon=0.3).epsilon == [0.3]


def test_chunked_pipeline_matches_a_direct_computation_on_a_large_tensor() -> None:
    """Many chunks, thresholds from the sampled bracket: same as the formula on whole tensors."""
    gen = torch.Generator().manual_seed(9)
    base = torch.randn(700, 400, generator=gen)
    models = [base + torch.randn(700, 400, generator=gen) * s for s in (1.0, 0.5)]
    out = merge("ties", models, base, weight=[0.6, 0.4], density=[0.3, 0.6])
    deltas = []
    for model, density in zip(models, (0.3, 0.6), strict=True):
        delta = (model - base).reshape(-1)
        keep = torch.zeros_like(delta, dtype=torch.bool)
        keep[delta.abs().argsort(descending=True)[: int(density * delta.numel())]] = True
        deltas.append(delta * keep)
    weighted = torch.stack(deltas) * torch.tensor([[0.6], [0.4]])
    sign = torch.where(weighted.sum(0) >= 0, 1.0, -1.0)
    agree = weighted.sign() == sign
    divisor = (torch.tensor([[0.6], [0.4]]) * agree).sum(0)
    expected = base.reshape(-1) + (weighted * agree).sum(0) / torch.where(divisor == 0, 1.0, divisor)
    torch.testing.assert_close(out.reshape(-1), expected)
