"""MergeMonster's five blends, and the method that replays a MergeMonster run's choices.

A blend mixes a tensor `a` (model 1, as it stands) with `b` (a donor) at a ratio r:

    lerp      (1 - r) a + r b
    slerp     mergekit's slerp of the flattened tensors (lerp when |cos| > 0.9995)
    slice     m(t) = clamp((t - r) / 0.1, 0, 1)            model 1, a 10% ramp, then model 2
    cyclic    a trapezoid over 20% of the rows starting at 0.8 r (5% ramps): 15% of model 2
    gradient  m = 0.9 at t = r, falling linearly to 0 at t = 0 and t = 1

Slice, cyclic and gradient give model 2's share m(t) per row of the tensor's first dimension
(t = row / (rows - 1); a 1-D tensor along its only dimension; one row: t = 0) and return
(1 - m) a + m b. Gryphe's MergeMonster, https://github.com/Gryphe/MergeMonster.

The `mergemonster` method applies a chain of such blends: for each donor in recipe order, for
each blend in `order`, the donor's per-model value of that blend is the ratio, and a blend a
donor has no value for (for this tensor) is not applied. `mergesmith monster` writes its
per-layer choices in this form, so `mergesmith merge` replays them with the same arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor

BLENDS = ("lerp", "slerp", "slice", "cyclic", "gradient")
# Cyclic ignores the configured ratios and walks this scale (the position of model 2's band).
CYCLIC_SCALE = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SLICE_WIDTH = 0.1  # the smooth transition of slice: 10% of the rows
CYCLIC_WIDTH = 0.2  # cyclic's band: 5% ramp over, 10% model 2, 5% ramp back = 15% share
CYCLIC_RAMP = 0.05
GRADIENT_PEAK = 0.9  # gradient's opacity at the ratio; falls linearly to 0 at the far end


def positions(rows: int) -> Tensor:
    return torch.linspace(0.0, 1.0, rows) if rows > 1 else torch.zeros(1)


def slice_mix(t: Tensor, ratio: float) -> Tensor:
    """0 before `ratio`, a linear ramp over 10% of the rows, then 1."""
    return ((t - ratio) / SLICE_WIDTH).clamp(0.0, 1.0)


def cyclic_mix(t: Tensor, ratio: float) -> Tensor:
    """Shift to model 2 and back: a trapezoid over 20% of the rows placed at `ratio` (its
    start at ratio * 0.8), ramps of 5%, so model 2 contributes 15% of the tensor."""
    half = CYCLIC_WIDTH / 2
    centre = ratio * (1 - CYCLIC_WIDTH) + half
    return ((half - (t - centre).abs()) / CYCLIC_RAMP).clamp(0.0, 1.0)


def gradient_mix(t: Tensor, ratio: float) -> Tensor:
    """90% at `ratio`, falling linearly to 0 at both ends (0 and 1); about a 45% blend."""
    left = t / ratio if ratio > 0 else torch.ones_like(t)
    right = (1 - t) / (1 - ratio) if ratio < 1 else torch.ones_like(t)
    return GRADIENT_PEAK * torch.where(t <= ratio, left, right).clamp(0.0, 1.0)


def slerp(a: Tensor, b: Tensor, ratio: float, eps: float = 1e-8) -> Tensor:
    """mergekit's slerp on the flattened tensors (in float64); lerp when (anti)parallel."""
    fa, fb = a.flatten().double(), b.flatten().double()
    na, nb = fa / (fa.norm() + eps), fb / (fb.norm() + eps)
    dot = float((na * nb).sum().clamp(-1.0, 1.0))
    if abs(dot) > 0.9995:
        return torch.lerp(a.float(), b.float(), ratio).to(a.dtype)
    theta = torch.tensor(dot).acos()
    s0 = torch.sin((1 - ratio) * theta) / torch.sin(theta)
    s1 = torch.sin(ratio * theta) / torch.sin(theta)
    return (s0 * fa + s1 * fb).reshape(a.shape).to(a.dtype)


_SHAPES = {"slice": slice_mix, "cyclic": cyclic_mix, "gradient": gradient_mix}


def blend(method: str, a: Tensor, b: Tensor, ratio: float) -> Tensor:
    """A new tensor of a's dtype; `a` and `b` are never written."""
    if method == "lerp":
        return torch.lerp(a.float(), b.float(), ratio).to(a.dtype)
    if method == "slerp":
        return slerp(a, b, ratio)
    if method not in _SHAPES:
        raise ValueError(f"unknown blend {method!r}")
    mix = _SHAPES[method](positions(a.shape[0]) if a.dim() else torch.zeros(()), ratio)
    mix = mix.reshape(-1, *([1] * (a.dim() - 1))) if a.dim() > 0 else mix
    return (a.float() * (1 - mix) + b.float() * mix).to(a.dtype)


def ratios_for(method: str, ratios: list[float]) -> list[float]:
    return list(CYCLIC_SCALE) if method == "cyclic" else list(ratios)


Ratio = Annotated[float, Field(ge=0.0, le=1.0)]


class MergeMonsterParams(MethodParams):
    lerp: list[Ratio | None] = per_model(default=None, description="Ratio of this donor's lerp step; none: no step.")
    slerp: list[Ratio | None] = per_model(default=None, description="Ratio of this donor's slerp step; none: no step.")
    slice: list[Ratio | None] = per_model(default=None, description="Ratio of this donor's slice step; none: no step.")
    cyclic: list[Ratio | None] = per_model(default=None, description="Ratio of this donor's cyclic step; none: no step.")
    gradient: list[Ratio | None] = per_model(default=None,
                                             description="Ratio of this donor's gradient step; none: no step.")
    order: str = Field(",".join(BLENDS), description="Order of the blends within one donor, comma-separated.")

    @field_validator("order")
    @classmethod
    def _known_blends(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in BLENDS]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"order must name distinct blends among {', '.join(BLENDS)}")
        return ",".join(names)


def mergemonster(tensors: list[Tensor], base: Tensor | None, params: MergeMonsterParams,
                 rng: Generator | None) -> Tensor:
    assert base is not None  # guaranteed by the contract (base required)
    out = base
    for i, donor in enumerate(tensors):
        for method in params.order.split(","):
            ratio = getattr(params, method)[i]
            if ratio is not None:
                out = blend(method, out, donor, ratio)
    return out.clone() if out is base else out


SPEC = MethodSpec(
    name="mergemonster",
    func=mergemonster,
    params=MergeMonsterParams,
    summary="MergeMonster's blends (lerp, slerp, slice, cyclic, gradient) applied donor by donor.",
    paper="https://github.com/Gryphe/MergeMonster",
    base="required",
    min_models=1,
)
