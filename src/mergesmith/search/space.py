"""Search spaces: a real vector <-> a plain mergesmith recipe.

Parameter space: one gradient (`layer_groups` points, interpolated smoothly along the layers)
per per-model parameter and tensor filter. Data-flow space (Akiba et al. 2024): for each
layer position, which model's layer (any layer, so repetition is allowed) is used, and a
scale; emitted as passthrough slices. The depth is kept fixed so one resident model holds
every candidate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

TASK_VECTOR = {"task_arithmetic", "ties", "dare_ties", "dare_linear"}
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


@dataclass
class DataFlowSpace:
    """x holds, per layer position, [model choice, layer choice, scale]."""

    models: list[str]
    num_layers: int
    scale: bool = True
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return self.num_layers * 3

    def default_vector(self) -> list[float]:
        # The first model's own layers in order, unscaled: the starting point is a copy.
        return [v for i in range(self.num_layers) for v in (0.0, float(i), 1.0)]

    def recipe(self, x: list[float]) -> dict[str, Any]:
        x = [float(v) for v in x]  # numpy scalars would not serialise to YAML
        slices = []
        n, depth = len(self.models), self.num_layers
        for i in range(depth):
            m = self.models[min(n - 1, max(0, round(x[3 * i])))]
            layer = min(depth - 1, max(0, round(x[3 * i + 1])))
            source: dict[str, Any] = {"model": m, "layer_range": [layer, layer + 1]}
            if self.scale:
                source["parameters"] = {"scale": round(min(2.0, max(0.0, x[3 * i + 2])), 6)}
            slices.append({"sources": [source]})
        return {"merge_method": "passthrough", "dtype": self.dtype, "slices": slices}
