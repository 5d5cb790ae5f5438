"""Method kernels side by side with mergekit's (``mergekit.merge_methods.api.merge_tensors``).

Inputs from numpy's PCG64 (bit-identical everywhere). Small cases keep mergekit's whole output
in the goldens; the "big" cases (above mergesmith's exact-selection size, so its sampled
brackets run) keep a fingerprint instead: float64 row and column sums plus 4096 sampled entries.
A selection that differs anywhere moves a row sum and a column sum by a whole delta.
Random methods (DARE, DELLA) keep per-seed statistics of mergekit's masks.
Only numpy and torch are imported here (the generator runs it in mergekit's venv).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

SMALL, BIG, RAND = (64, 48), (364, 362), (256, 256)  # BIG: 131,768 entries > 2**17
SAMPLE = 4096
W3 = [0.5, 0.3, 0.7]
D3 = [0.5, 0.3, 0.9]
BASE3 = (["base", "m0", "m1", "m2"], 0)
BIG3 = (["big_base", "big0", "big1", "big2"], 0)
# (id, method, input names, base index, parameters)
CASES: list[tuple[str, str, list[str], int | None, dict[str, Any]]] = [
    ("task_arithmetic", "task_arithmetic", *BASE3, {"weight": W3}),
    ("task_arithmetic_norm", "task_arithmetic", *BASE3, {"weight": W3, "normalize": True, "lambda": 0.8}),
    ("ties", "ties", *BASE3, {"weight": W3, "density": D3}),
    ("ties_negative_weight", "ties", *BASE3, {"weight": [0.5, -0.3, 0.7], "density": D3}),
    ("ties_rescale_lambda", "ties", *BASE3, {"weight": W3, "density": D3, "rescale": True, "lambda": 1.3}),
    ("ties_big", "ties", *BIG3, {"weight": W3, "density": [0.2, 0.5, 0.97]}),
    ("ties_big_rescale", "ties", *BIG3, {"weight": W3, "density": [0.2, 0.5, 0.97], "rescale": True}),
    ("breadcrumbs", "breadcrumbs", *BASE3, {"weight": W3, "density": D3, "gamma": [0.01, 0.05, 0.2]}),
    ("breadcrumbs_ties", "breadcrumbs_ties", *BASE3,
     {"weight": W3, "density": D3, "gamma": [0.01, 0.05, 0.2], "rescale": True, "normalize": True}),
    ("breadcrumbs_big", "breadcrumbs", *BIG3, {"weight": W3, "density": [0.3, 0.8, 0.9], "gamma": 0.05}),
    ("breadcrumbs_small_gamma", "breadcrumbs", ["v0", "v1", "v2"], 0, {"weight": [1.0, 1.0], "density": 0.5}),
    ("nuslerp_base", "nuslerp", ["base", "m0", "m1"], 0, {"weight": [0.3, 0.7]}),
    ("nuslerp_no_base", "nuslerp", ["m0", "m1"], None, {"weight": [0.3, 0.7]}),
    ("nuslerp_row_wise", "nuslerp", ["base", "m0", "m1"], 0,
     {"weight": [0.3, 0.7], "nuslerp_flatten": False, "nuslerp_row_wise": True}),
    ("nuslerp_last_dim", "nuslerp", ["m0", "m1"], None, {"weight": [1.0, 2.0], "nuslerp_flatten": False}),
    ("multislerp_base", "multislerp", *BASE3, {"weight": W3}),
    ("multislerp_no_base", "multislerp", ["m0", "m1", "m2"], None, {"weight": W3}),
    ("karcher", "karcher", ["m0", "m1", "m2"], None, {}),
    ("karcher_vectors", "karcher", ["v0", "v1", "v2"], None, {"max_iter": 50, "tol": 1e-7}),
    ("model_stock", "model_stock", *BASE3, {}),
    ("model_stock_filter_wise", "model_stock", *BASE3, {"filter_wise": True}),
    ("sce", "sce", *BASE3, {}),
    ("sce_topk", "sce", *BASE3, {"select_topk": 0.3}),
    ("sce_big_topk", "sce", *BIG3, {"select_topk": 0.6}),
    ("nearswap", "nearswap", ["base", "m0"], 0, {"t": 0.5}),
    ("arcee_fusion", "arcee_fusion", ["base", "m0"], 0, {}),
    ("arcee_fusion_big", "arcee_fusion", ["big_base", "big0"], 0, {}),
    ("ram", "ram", *BASE3, {"epsilon": 0.3}),
    ("ramplus_tl", "ramplus_tl", *BASE3, {"epsilon": 0.3}),
    ("ramplus_tl_strong", "ramplus_tl", *BASE3, {"epsilon": 0.8, "r": 0.5, "alpha": 0.9}),
    ("linear", "linear", ["m0", "m1", "m2"], None, {"weight": W3}),
    ("slerp", "slerp", ["base", "m0"], 0, {"t": 0.3}),
]
SEEDS = [1, 2, 3, 4]
# Random methods: one model, weight 1, so out - base is the sparsified delta.
RANDOM_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("dare_linear", "dare_linear", {"weight": [1.0], "density": [0.3], "rescale": False}),
    ("dare_linear_l1", "dare_linear", {"weight": [1.0], "density": [0.3]}),
    ("dare_ties", "dare_ties", {"weight": [1.0], "density": [0.6]}),
    ("della_linear", "della_linear", {"weight": [1.0], "density": [0.4], "epsilon": [0.3], "rescale": False}),
    ("della", "della", {"weight": [1.0], "density": [0.5], "epsilon": [0.2]}),
]


def kernel_inputs() -> dict[str, torch.Tensor]:
    rng = np.random.Generator(np.random.PCG64(1234))

    def normal(shape: tuple[int, ...]) -> np.ndarray:
        return rng.standard_normal(shape, dtype=np.float64).astype(np.float32)

    arrays = {"base": normal(SMALL), "big_base": normal(BIG), "rand_base": normal(RAND)}
    for i, scale in enumerate((0.5, 1.0, 0.8)):
        arrays[f"m{i}"] = arrays["base"] + np.float32(scale) * normal(SMALL)
        arrays[f"big{i}"] = arrays["big_base"] + np.float32(scale) * normal(BIG)
        arrays[f"v{i}"] = normal((60,))  # gamma * 60 < 1: breadcrumbs keeps its target
    arrays["rand_m"] = arrays["rand_base"] + normal(RAND)
    return {name: torch.from_numpy(array) for name, array in arrays.items()}


def is_big(names: list[str]) -> bool:
    return names[0].startswith("big")


def fingerprint(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """Row sums, column sums (float64) and SAMPLE entries at fixed positions of a 2-D output."""
    positions = torch.from_numpy(np.random.Generator(np.random.PCG64(99)).choice(out.numel(), SAMPLE, replace=False))
    return {"rows": out.double().sum(1), "cols": out.double().sum(0), "sample": out.reshape(-1)[positions]}


def _deciles(delta: torch.Tensor) -> torch.Tensor:
    """Each entry's within-row magnitude decile (0..9) of the delta."""
    ranks = delta.abs().argsort(dim=1).argsort(dim=1)
    return (ranks * 10) // delta.shape[1]


def random_stats(out: torch.Tensor, base: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """[kept entries, sum of |out - base| over them, kept per magnitude decile (10)] as float64."""
    kept = (out - base) != 0
    deciles = _deciles(delta)
    per_decile = [float((kept & (deciles == d)).sum()) for d in range(10)]
    return torch.tensor([float(kept.sum()), float((out - base).abs().double().sum()), *per_decile],
                        dtype=torch.float64)
