"""mergesmith: merge the weights of large language models.

The Python API (imported lazily so `import mergesmith` stays cheap):

    load_recipe(path_or_text_or_dict) -> Recipe
    plan(recipe, ...) -> Plan                  # headers only; every tensor resolved
    merge(recipe, out_dir, ...) -> MergeResult # streaming, atomic, sharded output
    merge_state_dicts(recipe, state_dicts, configs) -> dict[str, Tensor]  # in memory
"""

from __future__ import annotations

from typing import Any

from mergesmith.version import __version__ as __version__

_API = {"load_recipe", "load_recipes", "plan", "merge", "merge_state_dicts", "MergeResult"}


def __getattr__(name: str) -> Any:
    if name in _API:
        from mergesmith import api

        return getattr(api, name)
    raise AttributeError(f"module 'mergesmith' has no attribute {name!r}")


__all__ = sorted(_API)
