"""Resolving a recipe's parameter settings for one tensor.

A setting is a scalar, a gradient (list of values, interpolated linearly at position t in
[0, 1] along the layers of a slice: t = j / (L - 1) for the j-th of L layers, restarting in
every slice; non-layer tensors use t = 0, i.e. the first value), or a list of filter rules
(the first rule whose `filter` is a substring of the tensor name wins; a rule without a
filter, or with "*", matches every tensor). This is mergekit's semantics.

Precedence, highest first: the source's parameters (per-model ones only), the slice's
parameters, the top-level parameters, the method's default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mergesmith.recipe.model import FilterRule, Params, ParamSetting

_NO_VALUE = object()


def interpolate(values: Sequence[Any], t: float) -> Any:
    """Value of a gradient at t in [0, 1]; non-numeric gradients pick a discrete entry."""
    if len(values) == 1:
        return values[0]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    scaled = t * (len(values) - 1)
    i0 = int(scaled)
    if not numeric:
        return values[i0]
    i1 = min(len(values) - 1, i0 + 1)
    frac = scaled - i0
    return (1 - frac) * values[i0] + frac * values[i1]


def rule_matches(rule: FilterRule, tensor_name: str) -> bool:
    return rule.filter is None or rule.filter == "*" or rule.filter in tensor_name


def evaluate(setting: ParamSetting, tensor_name: str, t: float) -> Any:
    """The value a setting gives a tensor at gradient position t, or _NO_VALUE."""
    if isinstance(setting, FilterRule):
        setting = [setting]
    if isinstance(setting, list):
        if not setting:
            return _NO_VALUE
        if all(isinstance(rule, FilterRule) for rule in setting):
            for rule in setting:
                if rule_matches(rule, tensor_name):
                    return evaluate(rule.value, tensor_name, t)
            return _NO_VALUE
        return interpolate(setting, t)
    return setting


def resolve(name: str, scopes: Sequence[Params | None], tensor_name: str, t: float) -> Any:
    """The value of parameter `name` from the first scope that gives one, or _NO_VALUE."""
    for scope in scopes:
        if scope and name in scope:
            value = evaluate(scope[name], tensor_name, t)
            if value is not _NO_VALUE:
                return value
    return _NO_VALUE


def is_missing(value: Any) -> bool:
    return value is _NO_VALUE
