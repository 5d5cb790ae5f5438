"""pydantic validation errors -> located messages: `file:line: key.path: problem`.

One formatter for every YAML config mergesmith reads (recipes, MoE, search and MergeMonster
configs): all problems at once, each at its line, with a did-you-mean for a misspelled key
(the keys of the model the misspelled one sits in).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from mergesmith.errors import did_you_mean
from mergesmith.recipe.yamlloc import Loc, YamlDoc

# pydantic puts the member of a union it tried into error locations ("str", "list[...]",
# a model's class name): not keys of the YAML, so they are dropped.
_TYPE_TAGS = {"str", "bool", "int", "float", "none", "dict", "list"}


def clean_loc(loc: tuple[Any, ...], tags: set[str] = frozenset()) -> Loc:
    """An error location with pydantic's union tags removed: the YAML key path."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p in _TYPE_TAGS or p in tags)))


def model_at(root: type[BaseModel], nested: Mapping[str, type[BaseModel]], loc: Loc) -> type[BaseModel] | None:
    """The model reached by following `loc` from `root` (`nested`: field name -> its model)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if isinstance(part, int):
            continue
        model = nested.get(str(part))
        if model is None:
            return None
    return model


def located_problems(exc: ValidationError | list[Any], doc: YamlDoc, root: type[BaseModel],
                     nested: Mapping[str, type[BaseModel]] | None = None, *,
                     union_members: tuple[type[BaseModel], ...] = ()) -> list[str]:
    """Every error of `exc` as one line, in order, without repeats.

    `nested` maps a field name to the model its value is (for did-you-mean inside it);
    `union_members` are models that appear only as members of a union (their names are tags).
    """
    nested = nested or {}
    tags = {m.__name__ for m in (root, *nested.values(), *union_members)}
    errors = exc.errors() if isinstance(exc, ValidationError) else exc
    return list(dict.fromkeys(_line(err, doc, root, nested, tags) for err in errors))


def _line(err: Any, doc: YamlDoc, root: type[BaseModel], nested: Mapping[str, type[BaseModel]],
          tags: set[str]) -> str:
    loc = clean_loc(err["loc"], tags)
    where = doc.where(loc)
    path = ".".join(str(p) for p in loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        parent = model_at(root, nested, loc[:-1])
        return f"{where}: {path}: unknown key{did_you_mean(str(loc[-1]), parent.model_fields if parent else [])}"
    if err["type"] == "missing":
        return f"{where}: {path}: required key is missing"
    return f"{where}: {path}: {err['msg']} (got {err.get('input')!r})"
