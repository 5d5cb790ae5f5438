"""Search spaces: a real vector <-> a plain mergesmith recipe.

Parameter space: one gradient (`layer_groups` points, interpolated smoothly along the layers)
per per-model parameter and tensor filter. The data-flow space is in `dataflow.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HAS_DENSITY = {"ties", "dare_ties", "dare_linear"}
DEFAULTS = {"weight": 1.0, "density": 0.5, "t": 0.5}


@dataclass
class ParameterSpace:
    method: str
    base_model: str
    models: list[str]
    layer_groups: int = 1
    filters: tuple[str, ...] = ()
    allow_negative_weights: bool = False
    dtype: str = "float32"

    def slots(self) -> list[tuple[str | None, str]]:
        """(model or None for shared, parameter name), each with one value per filter."""
        if self.method == "slerp":
            return [(None, "t")]
        members = self.models if self.method == "linear" else self.members()
        names = ["weight", "density"] if self.method in HAS_DENSITY else ["weight"]
        return [(m, n) for m in members for n in names]

    def members(self) -> list[str]:
        return [m for m in self.models if m != self.base_model]

    @property
    def size(self) -> int:
        return len(self.slots()) * (len(self.filters) + 1) * self.layer_groups

    def default_vector(self) -> list[float]:
        return [DEFAULTS[n] for _, n in self.slots()
                for _ in range((len(self.filters) + 1) * self.layer_groups)]

    def _bounds(self, name: str) -> tuple[float, float]:
        if name == "density":
            return 0.05, 1.0
        if name == "weight":
            return (-1.0 if self.allow_negative_weights else 0.0), 1.5
        return 0.0, 1.0

    def _value(self, xs: list[float], name: str) -> Any:
        lo, hi = self._bounds(name)
        vals = [round(min(hi, max(lo, float(x))), 6) for x in xs]
        # linear with all-zero weights is undefined; keep it a tiny positive mix.
        if name == "weight" and self.method == "linear" and lo == 0:
            vals = [max(v, 1e-3) for v in vals]
        return vals[0] if len(vals) == 1 else vals

    def _setting(self, xs: list[float], name: str) -> Any:
        g = self.layer_groups
        if not self.filters:
            return self._value(xs, name)
        rules = [{"filter": f, "value": self._value(xs[i * g:(i + 1) * g], name)}
                 for i, f in enumerate(self.filters)]
        return [*rules, {"value": self._value(xs[-g:], name)}]

    def recipe(self, x: list[float]) -> dict[str, Any]:
        per = (len(self.filters) + 1) * self.layer_groups
        params: dict[str, dict[str, Any]] = {}
        for i, (model, name) in enumerate(self.slots()):
            params.setdefault(model or "", {})[name] = self._setting(list(x[i * per:(i + 1) * per]),
                                                                     name)
        recipe: dict[str, Any] = {"merge_method": self.method, "dtype": self.dtype,
                                  "models": [{"model": m, "parameters": params.get(m, {})}
                                             for m in self.models]}
        if self.method != "linear":
            recipe["base_model"] = self.base_model
        if "" in params:
            recipe["parameters"] = params[""]
        return recipe
