"""NearSwap: take the other model's value only where it is already close to the base's.

With base a and the other model b, per entry:

    w = clamp(t / max(|a - b|, 1e-6), 0, 1)
    out = (1 - w) a + w b

Entries closer than t are swapped to b entirely; farther ones move towards b by t / |a - b|,
so the change of any entry is at most t. t = 0 gives the base.
Alchemonaut, https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001 (mergekit's
`nearswap`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec

if TYPE_CHECKING:
    from torch import Generator, Tensor


class NearswapParams(MethodParams):
    t: float = Field(ge=0.0, description="Distance under which the other model's value is taken (>= 0).")


def nearswap(tensors: list[Tensor], base: Tensor | None, params: NearswapParams, rng: Generator | None) -> Tensor:
    assert base is not None
    other = tensors[0]
    weight = torch.sub(base, other).abs_().clamp_(min=1e-6).reciprocal_().mul_(params.t).clamp_(0.0, 1.0)
    return torch.lerp(base, other, weight)


SPEC = MethodSpec(
    name="nearswap",
    func=nearswap,
    params=NearswapParams,
    summary="Take the other model's values where they are within t of the base's.",
    paper="https://huggingface.co/alchemonaut/QuartetAnemoi-70B-t0.0001",
    base="required",
    min_models=1,
    max_models=1,
    passthrough_singletons=True,
)
