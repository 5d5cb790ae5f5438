"""Each blend against hand-made tensors: a = 0, b = 1, so the result is model 2's share."""

import math

import pytest
import torch

from mergesmith.methods.mergemonster import blend, ratios_for


def share(method: str, rows: int, ratio: float, cols: int | None = None) -> list[float]:
    shape = (rows,) if cols is None else (rows, cols)
    out = blend(method, torch.zeros(shape), torch.ones(shape), ratio)
    return out.tolist() if cols is None else out[:, 0].tolist()


def test_lerp():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    assert blend("lerp", a, b, 0.25).tolist() == [1.5, 3.0]


def test_slerp_orthogonal_quarter_turn():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    out = blend("slerp", a, b, 0.5)
    assert torch.allclose(out, torch.tensor([math.sqrt(0.5), math.sqrt(0.5)]), atol=1e-6)


def test_slerp_parallel_falls_back_to_lerp():
    a = torch.tensor([1.0, 2.0])
    assert torch.allclose(blend("slerp", a, 2 * a, 0.5), 1.5 * a)


def test_slice_1d_and_2d_same_rule():
    # 11 rows: t = 0, 0.1, ..., 1; ratio 0.3: 0 up to 0.3, ramp over 0.1, then 1.
    expected = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]
    assert share("slice", 11, 0.3) == pytest.approx(expected)
    assert share("slice", 11, 0.3, cols=3) == pytest.approx(expected)
    assert share("slice", 21, 0.3)[7] == pytest.approx(0.5, abs=1e-6)  # t = 0.35, mid-ramp


def test_cyclic_band_of_fifteen_percent():
    mix = torch.tensor(share("cyclic", 101, 0.0))
    assert mix.max() > 0.9999 and mix[0] == 0  # ramps up from model 1
    assert mix[5:16].min() > 0.9999 and mix[21:].sum() == 0  # back to model 1 after the band
    assert float(mix.mean()) == pytest.approx(0.15, abs=0.01)
    assert float(torch.tensor(share("cyclic", 101, 1.0)).mean()) == pytest.approx(0.15, abs=0.01)
    assert ratios_for("cyclic", [0.5]) == [i / 10 for i in range(11)]


def test_gradient_peak_and_average():
    mix = share("gradient", 11, 0.5)
    assert mix[5] == pytest.approx(0.9) and mix[0] == 0 and mix[10] == 0
    assert sum(mix) / len(mix) == pytest.approx(0.45, abs=0.05)
    assert share("gradient", 1, 0.5) == [0.0]  # one row: t = 0


def test_inputs_untouched():
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    a0, b0 = a.clone(), b.clone()
    for m in ("lerp", "slerp", "slice", "cyclic", "gradient"):
        blend(m, a, b, 0.4)
    assert torch.equal(a, a0) and torch.equal(b, b0)
