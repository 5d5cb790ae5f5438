"""MergeMonster's five blends of a layer tensor `a` (model 1) with `b` (the donor).

Slice, cyclic and gradient vary the mix along a tensor's first dimension (its rows, the
output features): position t = row / (rows - 1) in [0, 1]. A 1-D tensor (norm weights,
biases) is treated the same way along its only dimension; a tensor of one row gets the mix
at t = 0. `mix(t)` is model 2's share; the result is (1 - mix) * a + mix * b.
"""

from __future__ import annotations

import torch

METHODS = ("lerp", "slerp", "slice", "cyclic", "gradient")
# Cyclic ignores the configured ratios and walks this scale (the peak of model 2's band).
CYCLIC_SCALE = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
SLICE_WIDTH = 0.1  # the smooth transition of slice: 10% of the rows
CYCLIC_WIDTH = 0.2  # cyclic's band: 5% ramp over, 10% model 2, 5% ramp back = 15% share
CYCLIC_RAMP = 0.05
GRADIENT_PEAK = 0.9  # gradient's opacity at the ratio; falls linearly to 0 at the far end


def positions(rows: int) -> torch.Tensor:
    return torch.linspace(0.0, 1.0, rows) if rows > 1 else torch.zeros(1)


def slice_mix(t: torch.Tensor, ratio: float) -> torch.Tensor:
    """0 before `ratio`, a linear ramp over 10% of the rows, then 1."""
    return ((t - ratio) / SLICE_WIDTH).clamp(0.0, 1.0)


def cyclic_mix(t: torch.Tensor, ratio: float) -> torch.Tensor:
    """Shift to model 2 and back: a trapezoid over 20% of the rows placed at `ratio` (its
    start at ratio * 0.8), ramps of 5%, so model 2 contributes 15% of the tensor."""
    half = CYCLIC_WIDTH / 2
    centre = ratio * (1 - CYCLIC_WIDTH) + half
    return ((half - (t - centre).abs()) / CYCLIC_RAMP).clamp(0.0, 1.0)


def gradient_mix(t: torch.Tensor, ratio: float) -> torch.Tensor:
    """90% at `ratio`, falling linearly to 0 at both ends (0 and 1); about a 45% blend."""
    left = t / ratio if ratio > 0 else torch.ones_like(t)
    right = (1 - t) / (1 - ratio) if ratio < 1 else torch.ones_like(t)
    return GRADIENT_PEAK * torch.where(t <= ratio, left, right).clamp(0.0, 1.0)


def slerp(a: torch.Tensor, b: torch.Tensor, ratio: float, eps: float = 1e-8) -> torch.Tensor:
    """mergekit's slerp on the flattened tensors; lerp when they are (anti)parallel."""
    fa, fb = a.flatten().double(), b.flatten().double()
    na, nb = fa / (fa.norm() + eps), fb / (fb.norm() + eps)
    dot = float((na * nb).sum().clamp(-1.0, 1.0))
    if abs(dot) > 0.9995:
        return torch.lerp(a.float(), b.float(), ratio).to(a.dtype)
    theta = torch.tensor(dot).acos()
    s0 = torch.sin((1 - ratio) * theta) / torch.sin(theta)
    s1 = torch.sin(ratio * theta) / torch.sin(theta)
    return (s0 * fa + s1 * fb).reshape(a.shape).to(a.dtype)


def blend(method: str, a: torch.Tensor, b: torch.Tensor, ratio: float) -> torch.Tensor:
    """A new tensor; `a` and `b` are never written (the caller keeps them to restore)."""
    if method == "lerp":
        return torch.lerp(a.float(), b.float(), ratio).to(a.dtype)
    if method == "slerp":
        return slerp(a, b, ratio)
    shapes = {"slice": slice_mix, "cyclic": cyclic_mix, "gradient": gradient_mix}
    if method not in shapes:
        raise ValueError(f"unknown blend {method!r}")
    mix = shapes[method](positions(a.shape[0]), ratio)
    mix = mix.reshape(-1, *([1] * (a.dim() - 1))) if a.dim() > 0 else mix
    return (a.float() * (1 - mix) + b.float() * mix).to(a.dtype)


def ratios_for(method: str, ratios: list[float]) -> list[float]:
    return list(CYCLIC_SCALE) if method == "cyclic" else list(ratios)
