"""Parameter names some merge method knows: what a recipe may carry for a method that ignores it.

mergekit reads, for each tensor, only the parameters its method declares and ignores every
other name; its own test recipes give every model `weight: 0.5` whatever the method. A recipe
written for mergekit therefore runs here too: a name some method knows (a mergekit 0.1.5
method, or a mergesmith one) that this recipe's method does not use is a one-line warning;
a name no method knows is a typo, refused with a did-you-mean.
"""

from __future__ import annotations

from functools import cache

# Every parameter of mergekit 0.1.5's merge methods (shared and per-input ones).
MERGEKIT_PARAMETERS = frozenset({
    "weight", "density", "gamma", "epsilon", "lambda", "normalize", "rescale", "int8_mask",
    "t", "max_iter", "tol", "filter_wise", "normalize_weights", "eps", "nuslerp_row_wise",
    "nuslerp_flatten", "scale", "r", "alpha", "select_topk",
})


@cache
def known_parameter_names() -> frozenset[str]:
    """mergekit's parameter names and every name a registered mergesmith method takes."""
    from mergesmith.methods import REGISTRY

    ours = {info.name for spec in REGISTRY.values() for info in spec.param_infos}
    return MERGEKIT_PARAMETERS | ours
