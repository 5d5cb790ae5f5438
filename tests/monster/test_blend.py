"""MergeMonster's blends (`modules/merging.py`), cases worked by hand from its code.

a = 0 and b = 1 make a result model 2's share, column by column: slice, cyclic and gradient
work along the columns (dim 1) with MergeMonster's integer positions, and leave 1-D tensors
alone. (The whole blends were also compared bit for bit with MergeMonster's own functions on
2,412 random cases; its code is not needed here.)
"""

import math

import pytest
import torch

from mergesmith.methods.mergemonster import CYCLIC_RATIOS, blend, mergemonster, ratios_for, steps


def share(method: str, width: int, ratio: float, rows: int = 2) -> list[float]:
    out = blend(method, torch.zeros(rows, width), torch.ones(rows, width), ratio)
    assert torch.equal(out[0], out[-1])  # every row alike
    return out[0].tolist()


def test_lerp_is_mergemonsters_formula():
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([3.0, 6.0])
    assert blend("lerp", a, b, 0.25).tolist() == [1.5, 3.0]
    assert blend("lerp", a, b, 1.5).tolist() == [4.0, 8.0]  # outside [0, 1]: extrapolates
    x, y = torch.randn(64), torch.randn(64)
    assert torch.equal(blend("lerp", x, y, 0.3), ((1 - 0.3) * x) + (0.3 * y))


def test_slerp_lerps_1d_and_slerps_2d():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    assert blend("slerp", a, b, 0.5).tolist() == [0.5, 0.5]  # 1-D: lerp, not [0.707, 0.707]
    out = blend("slerp", a[None], b[None], 0.5)
    assert torch.allclose(out, torch.tensor([[math.sqrt(0.5), math.sqrt(0.5)]]), atol=1e-6)
    c = torch.tensor([[1.0, 2.0]])
    assert torch.allclose(blend("slerp", c, 2 * c, 0.5), 1.5 * c)  # parallel: lerp


def test_slice_puts_model_2_at_the_end():
    # width 100, ratio 0.2: cut = int(100 * 0.8) = 80, ramp of 2 * int(5.0) = 10 columns
    # from 75: column 75 + i takes i / 10 of model 2; columns 85-99 are model 2's.
    expected = [0.0] * 75 + [i / 10 for i in range(10)] + [1.0] * 15
    assert share("slice", 100, 0.2) == pytest.approx(expected, abs=1e-7)
    # width 20: ramp of 2 columns (15: 0, 16: 0.5); model 2 from column 17
    assert share("slice", 20, 0.2) == [0.0] * 16 + [0.5, 1.0, 1.0, 1.0]
    # width 19: int(0.95) = 0, no ramp: model 1 up to int(19 * 0.6) = 11, then model 2
    assert share("slice", 19, 0.4) == [0.0] * 11 + [1.0] * 8


def test_cyclic_band_and_its_ratios():
    # width 100, ratio 0.25: start = int(75.0) - 5 = 70; ramp up 70-79, model 2 80-89,
    # ramp down 90-99 (column 90 + i keeps 1 - i / 10 of model 2)
    expected = ([0.0] * 70 + [i / 10 for i in range(10)] + [1.0] * 10
                + [1 - i / 10 for i in range(10)])
    assert share("cyclic", 100, 0.25) == pytest.approx(expected, abs=1e-7)
    # ratio 0.85: start = int(15.000000000000002) - 5 = 10
    assert share("cyclic", 100, 0.85)[10:31] == pytest.approx(
        [i / 10 for i in range(10)] + [1.0] * 10 + [1.0], abs=1e-7)
    assert ratios_for("cyclic", [0.5]) == list(CYCLIC_RATIOS) == [0.25, 0.45, 0.65, 0.85]
    assert ratios_for("slice", [0.5]) == [0.5]


def test_gradient_peaks_at_the_mirrored_position():
    # width 10, ratio 0.5: peak = 5; columns 0-4: 0.9 i / 5; columns 5-9: 0.9 (4 - j) / 5
    expected = [0.0, 0.18, 0.36, 0.54, 0.72, 0.72, 0.54, 0.36, 0.18, 0.0]
    assert share("gradient", 10, 0.5) == pytest.approx(expected, abs=1e-6)
    # ratio 0.2: peak = int(10 * 0.8) = 8, so model 2 is strongest near the end
    assert max(range(10), key=lambda j: share("gradient", 10, 0.2)[j]) in (7, 8)


@pytest.mark.parametrize("method", ["slice", "cyclic", "gradient"])
def test_1d_tensors_stay_model_1s(method: str):
    a, b = torch.randn(16), torch.randn(16)
    assert torch.equal(blend(method, a, b, 0.4), a)


def test_inputs_untouched():
    a, b = torch.randn(4, 40), torch.randn(4, 40)
    a0, b0 = a.clone(), b.clone()
    for m in ("lerp", "slerp", "slice", "cyclic", "gradient"):
        blend(m, a, b, 0.45)
    assert torch.equal(a, a0) and torch.equal(b, b0)


def test_compounding_steps_replay_the_tried_ratios():
    assert steps("lerp", 0.4, "") == [0.4]
    assert steps("lerp", 0.6, "0.2,0.4,0.6,0.8") == [0.2, 0.4, 0.6]
    assert steps("cyclic", 0.45, "0.2,0.4") == [0.25, 0.45]  # cyclic's own ratios
    with pytest.raises(ValueError, match="not among"):
        steps("lerp", 0.5, "0.2,0.4")
    from mergesmith.methods.mergemonster import MergeMonsterParams

    a, b = torch.randn(3, 20), torch.randn(3, 20)
    params = MergeMonsterParams(lerp=[0.4], slerp=[None], slice=[None], cyclic=[None], gradient=[None],
                                ratios="0.2,0.4,0.6")
    want = blend("lerp", blend("lerp", a, b, 0.2), b, 0.4)  # a share of 1 - 0.8 * 0.6 = 0.52
    assert torch.equal(mergemonster([b], a, params, None), want)
    assert torch.allclose(want, 0.48 * a + 0.52 * b, atol=1e-6)


def test_slerp_of_large_tensors_is_the_same_under_any_thread_count():
    """torch splits sums of 32768+ elements over its threads; a monster run (one thread on
    small models) and the merge replaying it (several) must agree to the bit."""
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(300, 200, generator=gen), torch.randn(300, 200, generator=gen)
    old = torch.get_num_threads()
    try:
        outs = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            outs.append(blend("slerp", a, b, 0.3))
    finally:
        torch.set_num_threads(old)
    assert all(torch.equal(outs[0], o) for o in outs[1:])
