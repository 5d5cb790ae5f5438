"""MergeMonster's five blends, and the method that replays a MergeMonster run's choices.

A blend mixes a tensor `a` (model 1, as it stands) with `b` (a donor) at a ratio r, with the
arithmetic of Gryphe's MergeMonster (`modules/merging.py`,
https://github.com/Gryphe/MergeMonster), operation for operation, so results agree to the bit:

    lerp      (1 - r) a + r b                              any r (outside [0, 1] extrapolates)
    slerp     slerp of the whole tensors, in their dtype; lerp for 1-D tensors and when
              |cos| > 0.9995
    slice     along the columns (dim 1): a up to column c = int(W (1 - r)), a ramp over
              2 int(0.05 W) columns centred on c, then b: model 2 takes the last r of the columns
    cyclic    a, a ramp up, int(0.1 W) columns of b, a ramp down, a again: the band starts at
              int(W (1 - r)) - int(0.05 W); about 15% of model 2 at any r
    gradient  model 2's share rises along the columns from 0 at column 0 towards 0.9 at
              column p = int(W (1 - r)) (0.9 i / p), then falls back to 0 at the last
              column: about 45% of model 2

Slice, cyclic and gradient change 2-D tensors only; other tensors (norms, biases) stay a's.
Ratios in [0, 1] for them. Where MergeMonster's slice would index outside the tensor (a
ratio within about 5% of 0 or 1), the ramp is cut at the tensor's edge.

The `mergemonster` method applies a chain of such blends: for each donor in recipe order, for
each blend in `order`, the donor's per-model value of that blend is the ratio, and a blend a
donor has no value for (for this tensor) is not applied. With `ratios` (the ratios a
MergeMonster run tried, comma-separated), a step at ratio r replays the blend at every ratio
of that list up to r in turn, each on the result of the one before: MergeMonster's candidates
compound so (cyclic uses its own ratios). `mergesmith monster` writes its choices in this
form, so `mergesmith merge` replays them with the same arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, field_validator

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import Fraction, MethodParams, MethodSpec, per_model

if TYPE_CHECKING:
    from torch import Generator, Tensor

BLENDS = ("lerp", "slerp", "slice", "cyclic", "gradient")
# Cyclic ignores the configured ratios and tries these band positions (MergeMonster's list).
CYCLIC_RATIOS = (0.25, 0.45, 0.65, 0.85)
# MergeMonster books cyclic and gradient in a layer's composition at these nominal shares.
NOMINAL_SHARE = {"cyclic": 0.15, "gradient": 0.45}
POSITIONAL = ("slice", "cyclic", "gradient")  # ratios must lie in [0, 1]
DOT_THRESHOLD = 0.9995


def lerp(a: Tensor, b: Tensor, ratio: float) -> Tensor:
    return ((1 - ratio) * a) + (ratio * b)


# torch sums a tensor of fewer elements than its grain size (32768) on one thread; a larger
# one is split over the threads, so its sum depends on their number. Summing such tensors in
# fixed chunks makes a slerp the same under any thread count (a monster run and the merge
# that replays it), and leaves smaller tensors' sums exactly torch's (MergeMonster's).
_SERIAL = 32767
_CHUNK = 16384


def _sum(x: Tensor) -> Tensor:
    flat = x.reshape(-1)
    if flat.numel() <= _SERIAL:
        return flat.sum()
    return _sum(torch.stack([chunk.sum() for chunk in flat.split(_CHUNK)]))


def _norm(x: Tensor) -> Tensor:
    return x.norm() if x.numel() <= _SERIAL else torch.sqrt(_sum(x * x))


def _normalized(x: Tensor, eps: float) -> Tensor:
    norm = _norm(x)
    return x / norm if norm > eps else x


def slerp(a: Tensor, b: Tensor, ratio: float, eps: float = 1e-8) -> Tensor:
    """mergekit's slerp over all elements at once, as MergeMonster computes it (in the tensors'
    dtype, no clamping); 1-D tensors and nearly (anti)parallel ones are lerped."""
    if a.dim() == 1 and b.dim() == 1:
        return lerp(a, b, ratio)
    dot = _sum(_normalized(a, eps) * _normalized(b, eps))
    if abs(dot) > DOT_THRESHOLD:
        return lerp(a, b, ratio)
    theta_0 = torch.acos(dot)
    sin_theta_0 = torch.sin(theta_0)
    theta_t = theta_0 * ratio
    s0 = torch.sin(theta_0 - theta_t) / sin_theta_0
    s1 = torch.sin(theta_t) / sin_theta_0
    return s0 * a + s1 * b


def _splice(a: Tensor, b: Tensor, segments: list[tuple[int | None, str]]) -> Tensor:
    """Columns of a and b, left to right: (length, kind) with kind "a", "b", "up" (a ramp from
    a to b: column i of n takes b * i/n + a * (1 - i/n)) or "down" (from b back to a). The
    last length may be None (to the end). Columns outside the tensor are dropped."""
    width = a.shape[1]
    kind = torch.zeros(width, dtype=torch.int8)  # 0: a, 1: b, 2: ramp
    share_b = torch.zeros(width, dtype=torch.float64)
    share_a = torch.zeros(width, dtype=torch.float64)
    pos = 0
    for length, what in segments:
        stop = width if length is None else pos + length
        lo, hi = max(pos, 0), min(stop, width)
        if lo < hi and what == "b":
            kind[lo:hi] = 1
        elif lo < hi and what in ("up", "down"):
            # MergeMonster's blend_ratio i / n in double, each factor rounded once to the dtype
            r = torch.arange(lo - pos, hi - pos, dtype=torch.float64) / (stop - pos)
            kind[lo:hi] = 2
            share_b[lo:hi], share_a[lo:hi] = (r, 1 - r) if what == "up" else (1 - r, r)
        pos = stop
    kind = kind.to(a.device)
    mixed = b * share_b.to(a.device, a.dtype) + a * share_a.to(a.device, a.dtype)
    return torch.where(kind == 2, mixed, torch.where(kind == 1, b, a))


def slice_blend(a: Tensor, b: Tensor, ratio: float) -> Tensor:
    """Model 1 > 10% ramp > model 2, along the columns."""
    if a.dim() != 2:
        return a
    width = a.shape[1]
    cut, half = int(width * (1 - ratio)), int(width * 0.05)
    return _splice(a, b, [(cut - half, "a"), (2 * half, "up"), (None, "b")])


def cyclic_blend(a: Tensor, b: Tensor, ratio: float) -> Tensor:
    """Model 1 > ramp > 10% of model 2 > ramp > model 1, along the columns."""
    if a.dim() != 2:
        return a
    width = a.shape[1]
    half, band = int(width * 0.05), int(width * 0.10)
    start = int(width * (1 - ratio)) - half
    return _splice(a, b, [(start, "a"), (2 * half, "up"), (band, "b"), (2 * half, "down"), (None, "a")])


def gradient_blend(a: Tensor, b: Tensor, ratio: float) -> Tensor:
    """Model 2's share climbs towards 0.9 at column int(W (1 - ratio)) and falls back to 0."""
    if a.dim() != 2:
        return a
    width = a.shape[1]
    peak = int(width * (1 - ratio))
    index = torch.arange(width, device=a.device).float()
    share = torch.zeros_like(index)
    share[:peak] = (index[:peak] / peak) * 0.9
    share[peak:] = torch.flip(index[: width - peak], dims=[0]) / (width - peak) * 0.9
    return (b * share.unsqueeze(0)) + (a * (1 - share).unsqueeze(0))


_BLEND = {"lerp": lerp, "slerp": slerp, "slice": slice_blend, "cyclic": cyclic_blend,
          "gradient": gradient_blend}


def blend(method: str, a: Tensor, b: Tensor, ratio: float) -> Tensor:
    """MergeMonster's `merge_tensors`. `a` and `b` are never written; the result may be `a`
    itself (slice, cyclic and gradient leave tensors that are not 2-D alone)."""
    if method not in _BLEND:
        raise ValueError(f"unknown blend {method!r}")
    return _BLEND[method](a, b, ratio)


def ratios_for(method: str, ratios: list[float]) -> list[float]:
    """The ratios MergeMonster tries for a method: cyclic has its own."""
    return list(CYCLIC_RATIOS) if method == "cyclic" else list(ratios)


Ratio = Annotated[float, Field(allow_inf_nan=False)]


class MergeMonsterParams(MethodParams):
    lerp: list[Ratio | None] = per_model(
        default=None, description="Ratio of this donor's lerp step (outside [0, 1] extrapolates); none: no step.")
    slerp: list[Ratio | None] = per_model(default=None, description="Ratio of this donor's slerp step; none: no step.")
    slice: list[Fraction | None] = per_model(
        default=None, description="Ratio of this donor's slice step (its share of the columns); none: no step.")
    cyclic: list[Fraction | None] = per_model(
        default=None, description="Position of this donor's cyclic band (0.25-0.85 in a monster run); none: no step.")
    gradient: list[Fraction | None] = per_model(
        default=None, description="Ratio of this donor's gradient step (its peak); none: no step.")
    order: str = Field(",".join(BLENDS), description="Order of the blends within one donor, comma-separated.")
    ratios: str = Field("", description="The ratios a MergeMonster run tried, comma-separated: a step at "
                        "ratio r then replays every ratio of the list up to r (its candidates compound); "
                        "empty: one blend per step.")

    @field_validator("order")
    @classmethod
    def _known_blends(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        unknown = [n for n in names if n not in BLENDS]
        if unknown or len(set(names)) != len(names) or not names:
            raise ValueError(f"order must name distinct blends among {', '.join(BLENDS)}")
        return ",".join(names)

    @field_validator("ratios")
    @classmethod
    def _numbers(cls, value: str) -> str:
        try:
            [float(r) for r in value.split(",") if r.strip()]
        except ValueError:
            raise ValueError(f"ratios must be comma-separated numbers, got {value!r}") from None
        return value


def steps(method: str, ratio: float, ratios: str) -> list[float]:
    """The ratios a step replays: the tried ratios up to `ratio` (cyclic: its own list), or
    the one ratio when `ratios` is empty."""
    if not ratios.strip():
        return [ratio]
    tried = list(CYCLIC_RATIOS) if method == "cyclic" else [float(r) for r in ratios.split(",") if r.strip()]
    if ratio not in tried:
        raise ValueError(f"{method} ratio {ratio} is not among the ratios tried ({tried})")
    return tried[: tried.index(ratio) + 1]


def mergemonster(tensors: list[Tensor], base: Tensor | None, params: MergeMonsterParams,
                 rng: Generator | None) -> Tensor:
    assert base is not None  # guaranteed by the contract (base required)
    out = base
    for i, donor in enumerate(tensors):
        for method in params.order.split(","):
            ratio = getattr(params, method)[i]
            for step in steps(method, ratio, params.ratios) if ratio is not None else []:
                out = blend(method, out, donor, step)
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
