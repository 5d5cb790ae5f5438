"""The shape of every `parameters:` setting, checked before pydantic sees the recipe.

A setting is a scalar, a gradient (a list of scalars) or filter rules ({filter, value}). Left
to pydantic, one mistake in a gradient or a rule fails every member of that union and
comes back as 8 to 20 lines; here each mistake is one line at its own `file:line` with the
fix, and the faulty setting is dropped so the other checks still run. A structural key
written under `parameters:` (`layer_range`, `merge_method`...) is named as such: the fix is
to move it up, not to add it.
"""

from __future__ import annotations

import copy
from typing import Any

from mergesmith.errors import did_you_mean
from mergesmith.recipe.yamlloc import Loc, YamlDoc

RULE_KEYS = ("filter", "value")
# The keys of the mapping that holds each kind of `parameters:`.
_LEVEL_KEYS = {
    "recipe": {"merge_method", "base_model", "models", "slices", "dtype", "out_dtype", "tokenizer_source",
               "tokenizer", "chat_template", "name"},
    "model": {"model"},
    "slice": {"sources", "base_model"},
    "source": {"model", "layer_range"},
}


def _scopes(data: dict[str, Any]) -> list[tuple[Loc, str]]:
    """(location of a `parameters:` mapping, the kind of its parent) in a raw recipe."""
    scopes: list[tuple[Loc, str]] = [(("parameters",), "recipe")]
    for i, entry in enumerate(data.get("models") or [] if isinstance(data.get("models"), list) else []):
        if isinstance(entry, dict):
            scopes.append((("models", i, "parameters"), "model"))
    slices = data.get("slices") if isinstance(data.get("slices"), list) else []
    for s, slc in enumerate(slices):
        if not isinstance(slc, dict):
            continue
        scopes.append((("slices", s, "parameters"), "slice"))
        for i, src in enumerate(slc.get("sources") if isinstance(slc.get("sources"), list) else []):
            if isinstance(src, dict):
                scopes.append((("slices", s, "sources", i, "parameters"), "source"))
    return scopes


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data or isinstance(data, list) and isinstance(part, int):
            data = data[part]
        else:
            return None
    return data


def setting_problems(doc: YamlDoc) -> tuple[list[str], dict[str, Any], set[Loc]]:
    """(one line per faulty setting, the data without them, keys misplaced under parameters:)."""
    data = copy.deepcopy(doc.data)
    problems: list[str] = []
    misplaced: set[Loc] = set()
    for loc, level in _scopes(doc.data):
        params = _get(data, loc)
        if not isinstance(params, dict):
            continue  # pydantic says "a valid dictionary", once
        for name in list(params):
            where = doc.where((*loc, name))
            owner = _owner(str(name), level)
            if owner is not None:
                problems.append(_misplaced(where, str(name), level, owner))
                misplaced.add((*loc[:-1], name) if owner == level else (name,) if owner == "recipe" else ())
                del params[name]
                continue
            problem = _setting_problem(params[name], (*loc, name), doc)
            if problem:
                problems.append(problem)
                del params[name]
    return problems, data, misplaced


def _owner(name: str, level: str) -> str | None:
    """The level a key written under `parameters:` belongs to, if it is a structural key."""
    if name in _LEVEL_KEYS[level]:
        return level
    return next((other for other in ("recipe", "source", "slice", "model") if name in _LEVEL_KEYS[other]), None)


def _misplaced(where: str, name: str, level: str, owner: str) -> str:
    if owner == level:
        return (f"{where}: \"{name}\" is found under parameters:, but it belongs to the {level} itself; "
                "move it up one level, out of parameters:")
    place = "the top level of the recipe" if owner == "recipe" else f"a {owner} entry"
    return f"{where}: \"{name}\" is found under parameters:, but it is a key of {place}; move it there"


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (bool, int, float, str))


def _setting_problem(value: Any, loc: Loc, doc: YamlDoc) -> str | None:
    name = loc[-1]
    if _is_scalar(value):
        return None
    if isinstance(value, dict):
        return _rule_problem(value, loc, doc)
    if not isinstance(value, list):
        return f"{doc.where(loc)}: \"{name}\" has no value; give a number, a gradient [0.2, 0.8] or filter rules"
    rules = [isinstance(v, dict) for v in value]
    if any(rules) and not all(rules):
        return (f"{doc.where(loc)}: \"{name}\" mixes filter rules and plain values; give either a gradient "
                "like [0.2, 0.8] or a list of {filter, value} rules (the last one without filter)")
    if all(rules) and value:
        return next((p for i, rule in enumerate(value) if (p := _rule_problem(rule, (*loc, i), doc))), None)
    return _gradient_problem(value, loc, doc)


def _gradient_problem(values: list[Any], loc: Loc, doc: YamlDoc) -> str | None:
    for i, v in enumerate(values):
        if not _is_scalar(v):
            return (f"{doc.where((*loc, i))}: \"{_param(loc)}\" gradient item {i} is {v!r}; a gradient is a "
                    "flat list of numbers, e.g. [0.2, 0.5, 0.8]")
    return None


def _param(loc: Loc) -> str:
    """The parameter a location is in: the key right after the last `parameters`."""
    cut = max(i for i, part in enumerate(loc[:-1]) if part == "parameters")  # a parameter may be named so
    return str(loc[cut + 1])


def _rule_problem(rule: dict[str, Any], loc: Loc, doc: YamlDoc) -> str | None:
    where = doc.where(loc)
    unknown = [k for k in rule if k not in RULE_KEYS]
    if unknown:
        key = str(unknown[0])
        return (f"{where}: unknown key \"{key}\" in a filter rule{did_you_mean(key, RULE_KEYS)}; "
                "a rule is {filter: NAME, value: V}")
    if "value" not in rule:
        return f"{where}: a filter rule needs `value:`; a rule is {{filter: NAME, value: V}}"
    if rule.get("filter") is not None and not isinstance(rule["filter"], str):
        return f"{where}: filter {rule['filter']!r} must be text (part of a tensor name, e.g. self_attn)"
    value = rule["value"]
    if isinstance(value, list):
        return _gradient_problem(value, (*loc, "value"), doc)
    if not _is_scalar(value):
        return f"{doc.where((*loc, 'value'))}: a rule's value is a number or a gradient, not {value!r}"
    return None
