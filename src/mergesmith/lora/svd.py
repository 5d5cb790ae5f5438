"""Truncated SVD of a weight delta into LoRA factors, with its exact error.

By Eckart-Young, the rank-r truncation of the SVD is the best rank-r approximation of the
delta in the Frobenius norm; the factors split the singular values evenly (B = U sqrt(S),
A = sqrt(S) Vh) so neither factor is tiny in a half-precision adapter. `lowrank` uses
torch.svd_lowrank (randomised, with oversampling and power iterations for accuracy): much
faster for a small rank of a large matrix, slightly less accurate; the reported error is
measured on the actual factors either way, never assumed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mergesmith.lazy_torch import torch

OVERSAMPLE = 10  # extra random directions for svd_lowrank: its error approaches the exact SVD's
POWER_ITERATIONS = 4


@dataclass
class Factors:
    a: Any  # (rank, in)
    b: Any  # (out, rank)
    rank: int
    rel_error: float  # ||delta - B A||_F / ||delta||_F
    energy_kept: float  # share of ||delta||_F^2 in the kept singular values


def decompose(delta: Any, rank: int, *, energy: float | None = None, method: str = "exact") -> Factors:
    """Rank-`rank` factors of a 2-D float delta (fewer with `energy`: the smallest rank keeping that share)."""
    delta = delta.float()
    full = min(delta.shape)
    if method == "lowrank" and rank + OVERSAMPLE < full:
        u, s, v = torch.svd_lowrank(delta, q=rank + OVERSAMPLE, niter=POWER_ITERATIONS)
        vh = v.T
    else:
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    total = float(delta.pow(2).sum())
    r = min(rank, s.shape[0])
    if energy is not None and total > 0:
        cumulative = torch.cumsum(s.double().pow(2), 0) / total
        r = min(r, int((cumulative < energy).sum()) + 1)
    root = s[:r].sqrt()
    b = u[:, :r] * root
    a = root[:, None] * vh[:r]
    residual = float((delta - b @ a).pow(2).sum())
    kept = float(s[:r].double().pow(2).sum()) / total if total > 0 else 1.0
    rel = (residual / total) ** 0.5 if total > 0 else 0.0
    return Factors(a, b, r, rel, min(kept, 1.0))
