"""Model Stock: interpolate between the base and the average of N fine-tuned models by a
ratio read from the angle between their task vectors.

With the base w_0 and N >= 2 models w_i, per tensor (or per row, with filter_wise: vectors
along the last dimension; a 1-D tensor is one vector):

    d_i = w_i - w_0
    cos(theta) = mean over pairs i < j of <d_i, d_j> / max(|d_i| |d_j|, 1e-6), each in [-1, 1]
    t = N cos(theta) / (1 + (N - 1) cos(theta))          (t = 0 where |1 + (N-1) cos| < 1e-6)
    t <- clamp(t, 0, 1)                                   (only with clamp_ratio: true)
    out = t * mean_i(w_i) + (1 - t) * w_0

Jang et al. 2024, "Model Stock: All we need is just a few fine-tuned models",
https://arxiv.org/abs/2403.19522. For orthogonal task vectors (cos 0) the result is the
base; for identical ones (cos 1) it is their average. Negative cosines give t < 0 or t > 1,
which extrapolates; `clamp_ratio` (not in mergekit, off by default) prevents it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from mergesmith.lazy_torch import torch
from mergesmith.methods.base import MethodParams, MethodSpec

if TYPE_CHECKING:
    from torch import Generator, Tensor


class ModelStockParams(MethodParams):
    filter_wise: bool = Field(False, description="One ratio per row (vectors along the last dimension) "
                              "instead of one per tensor.")
    clamp_ratio: bool = Field(False, description="Clamp the ratio t to [0, 1] (not in mergekit).")


def stock_ratio(cos: Tensor, n_models: int, clamp: bool = False) -> Tensor:
    """t = N cos / (1 + (N - 1) cos), 0 where the denominator vanishes."""
    denominator = 1 + (n_models - 1) * cos
    singular = denominator.abs() < 1e-6
    t = torch.where(singular, torch.zeros_like(cos), n_models * cos / torch.where(singular, 1.0, denominator))
    return t.clamp_(0.0, 1.0) if clamp else t


def mean_pair_cosine(deltas: Tensor) -> Tensor:
    """Mean cosine over pairs of the stacked vectors [N, rows, d]: one value per row."""
    n = deltas.shape[0]
    rows = deltas.transpose(0, 1)  # [rows, N, d]
    gram = torch.bmm(rows, rows.transpose(1, 2))  # [rows, N, N]
    norms = torch.linalg.vector_norm(deltas, dim=-1).transpose(0, 1)  # [rows, N]
    i, j = torch.triu_indices(n, n, offset=1, device=deltas.device)
    products = (norms[:, i] * norms[:, j]).clamp_(min=1e-6)
    return (gram[:, i, j] / products).clamp_(-1.0, 1.0).mean(dim=1)


def model_stock(tensors: list[Tensor], base: Tensor | None, params: ModelStockParams, rng: Generator | None) -> Tensor:
    assert base is not None
    shape = base.shape
    if base.numel() == 0:
        return base.clone()
    width = shape[-1] if params.filter_wise and base.dim() > 1 else base.numel()
    flat_base = base.reshape(-1, width)
    deltas = torch.stack([x.reshape(-1, width) - flat_base for x in tensors])
    t = stock_ratio(mean_pair_cosine(deltas), len(tensors), params.clamp_ratio).unsqueeze(-1)
    average = deltas.mean(dim=0).add_(flat_base)  # mean_i w_i
    return torch.lerp(flat_base, average, t).reshape(shape)


SPEC = MethodSpec(
    name="model_stock",
    func=model_stock,
    params=ModelStockParams,
    summary="Move from the base towards the models' average by a ratio set by their task vectors' angle.",
    paper="https://arxiv.org/abs/2403.19522",
    base="required",
    min_models=2,
    passthrough_singletons=True,
)
