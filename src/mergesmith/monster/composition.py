"""What each layer is made of, and the mergesmith recipe that reproduces lerp-only results.

A lerp at ratio r maps layer = sum_m w_m * model_m to (1 - r) * layer + r * donor, so a chain of
lerps stays a linear combination of the original checkpoints: one `linear` recipe with a
per-layer gradient list per model reproduces it. slerp/slice/cyclic/gradient steps are not
linear in the checkpoints' weights; a layer that took one is marked and no recipe is written
(see docs/monster.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEADERS = "headers"


@dataclass
class Composition:
    models: list[str]  # model 1 first, then donors in order
    weights: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> model -> weight
    nonlinear: dict[str, list[str]] = field(default_factory=dict)  # part -> ["slice@0.4", ...]

    def part(self, key: str) -> dict[str, float]:
        return self.weights.setdefault(key, {self.models[0]: 1.0})

    def apply(self, key: str, donor: str, method: str, ratio: float) -> None:
        if method != "lerp":
            self.nonlinear.setdefault(key, []).append(f"{method}@{ratio:g}:{donor}")
        weights = self.part(key)
        for name in weights:
            weights[name] *= 1.0 - ratio
        weights[donor] = weights.get(donor, 0.0) + ratio

    def table(self, key: str) -> list[list[Any]]:
        """MergeMonster's [[weight, name], ...], model 1 first."""
        rows = [[round(w, 4), n] for n, w in self.part(key).items()]
        extra = self.nonlinear.get(key)
        return rows + ([["nonlinear", ", ".join(extra)]] if extra else [])

    def to_json(self) -> dict[str, Any]:
        return {"models": self.models, "weights": self.weights, "nonlinear": self.nonlinear}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Composition:
        return cls(data["models"], data["weights"], data["nonlinear"])


def recipe(comp: Composition, paths: dict[str, str], num_layers: int,
           headers: list[str], others: list[str], dtype: str) -> dict[str, Any] | None:
    """A `linear` recipe giving every layer (and the headers) its composed weights, or None
    when a non-linear step was taken. `headers`: embedding/head tensor names; `others`: the
    remaining non-layer tensors (final norm), which stay model 1's."""
    if comp.nonlinear:
        return None
    models = []
    for name in comp.models:
        layer_values = [comp.part(f"layer.{i}").get(name, 0.0) for i in range(num_layers)]
        header_value = comp.part(HEADERS).get(name, 0.0)
        base_value = 1.0 if name == comp.models[0] else 0.0
        rules = [{"filter": t, "value": header_value} for t in headers]
        rules += [{"filter": t, "value": base_value} for t in others]
        rules.append({"value": layer_values})
        models.append({"model": paths[name], "parameters": {"weight": rules}})
    return {"merge_method": "linear", "models": models,
            "parameters": {"normalize": False}, "dtype": dtype}
