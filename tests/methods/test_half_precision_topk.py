"""Top-k selections in half precision: exactly mergekit's k entries per model, and where the two
differ, only at exact |delta| ties at the threshold (docs/recipes.md#precision...)."""

from __future__ import annotations

import pytest
import torch
from method_helpers import sparsify_tensor


def _argsort_keep(delta: torch.Tensor, density: float) -> torch.Tensor:
    """mergekit 0.1.5's magnitude selection, as its sparsify.magnitude does it (a reference)."""
    k = max(1, int(density * delta.numel()))
    keep = torch.zeros(delta.numel(), dtype=torch.bool)
    keep[torch.argsort(delta.abs().reshape(-1).float(), descending=True)[:k]] = True
    return keep.reshape(delta.shape)


@pytest.mark.parametrize("density", [0.1, 0.3, 0.55])
def test_bf16_deltas_with_ties_keep_k_entries_and_differ_only_at_the_threshold(density: float) -> None:
    torch.manual_seed(0)
    base = (0.1 * torch.randn(64, 48)).to(torch.bfloat16)
    model = (base.float() + 0.01 * torch.randn(64, 48)).to(torch.bfloat16)
    delta = model.float() - base.float()  # bfloat16 operands: many equal |delta|
    n = delta.numel()
    k = max(1, int(density * n))
    threshold = delta.abs().reshape(-1).sort(descending=True).values[k - 1]
    assert int((delta.abs() == threshold).sum()) > 1  # the case: ties at the threshold
    ours = sparsify_tensor(delta.clone(), "magnitude", density) != 0
    assert int(ours.sum()) == k == int(_argsort_keep(delta, density).sum())
    differ = ours ^ _argsort_keep(delta, density)
    assert bool((delta.abs()[differ] == threshold).all())  # any difference is a tie at the threshold
    # and everything above the threshold is kept by both, everything below by neither
    assert bool(ours[delta.abs() > threshold].all()) and not bool(ours[delta.abs() < threshold].any())

