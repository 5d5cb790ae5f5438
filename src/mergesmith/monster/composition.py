"""What each part of the model is made of, and the recipes that reproduce a run.

A part (`layer.3`, or `headers`: embeddings and LM head together) records the steps it took,
in order: (donor, blend, ratio). Two recipes follow from them:

- `monster_recipe`: one `mergemonster` document (model 1 as base, each donor with, per blend,
  filter rules giving the ratio of the parts that took that step). `mergesmith merge` replays
  every step with the monster's own arithmetic, for every blend: the tensors are identical.
- `linear_recipe` (lerp-only runs): a lerp at ratio r maps a part = sum_m w_m model_m to
  (1 - r) part + r donor, so a chain of lerps is one `linear` merge with per-layer weights.
  mergekit runs it too; equal to the monster's model up to float rounding (~1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

HEADERS = "headers"


@dataclass
class Composition:
    models: list[str]  # model 1 first, then donors in order
    steps: dict[str, list[tuple[str, str, float]]] = field(default_factory=dict)  # part -> steps

    def apply(self, key: str, donor: str, method: str, ratio: float) -> None:
        self.steps.setdefault(key, []).append((donor, method, ratio))

    def weights(self, key: str) -> dict[str, float]:
        """Each model's share, counting every step as a lerp (MergeMonster's bookkeeping)."""
        weights = {self.models[0]: 1.0}
        for donor, _method, ratio in self.steps.get(key, []):
            for name in weights:
                weights[name] *= 1.0 - ratio
            weights[donor] = weights.get(donor, 0.0) + ratio
        return weights

    @property
    def lerp_only(self) -> bool:
        return all(m == "lerp" for steps in self.steps.values() for _, m, _ in steps)

    def table(self, key: str) -> list[list[Any]]:
        """MergeMonster's [[weight, name], ...], model 1 first; then the non-lerp steps."""
        rows: list[list[Any]] = [[round(w, 4), n] for n, w in self.weights(key).items()]
        other = [f"{m}@{r:g}:{d}" for d, m, r in self.steps.get(key, []) if m != "lerp"]
        return rows + ([["nonlinear", ", ".join(other)]] if other else [])

    def to_json(self) -> dict[str, Any]:
        return {"models": self.models, "steps": self.steps}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Composition:
        steps = {k: [tuple(s) for s in v] for k, v in data.get("steps", {}).items()}
        return cls(list(data["models"]), steps)  # type: ignore[arg-type]


def monster_recipe(comp: Composition, paths: dict[str, str], filters: dict[str, list[str]],
                   order: list[str], dtype: str) -> dict[str, Any]:
    """A `mergemonster` recipe. `filters`: part -> the tensor-name filters that select it
    (`model.layers.3.`; the embedding and head names). Parts without steps stay model 1's."""
    base = comp.models[0]
    models: list[dict[str, Any]] = [{"model": paths[base]}]
    for donor in comp.models[1:]:
        params: dict[str, Any] = {}
        for method in order:
            rules = [{"filter": f, "value": ratio}
                     for part, steps in comp.steps.items()
                     for d, m, ratio in steps if d == donor and m == method
                     for f in filters[part]]
            if rules:
                params[method] = rules
        models.append({"model": paths[donor], **({"parameters": params} if params else {})})
    return {"merge_method": "mergemonster", "base_model": paths[base], "models": models,
            "parameters": {"order": ",".join(order)}, "dtype": dtype}


def linear_recipe(comp: Composition, paths: dict[str, str], num_layers: int,
                  headers: list[str], others: list[str], dtype: str) -> dict[str, Any] | None:
    """A `linear` recipe giving every layer (and the headers) its composed weights, or None
    when a non-lerp step was taken. `headers`: embedding/head tensor names; `others`: the
    remaining non-layer tensors (final norm), which stay model 1's."""
    if not comp.lerp_only:
        return None
    models = []
    for name in comp.models:
        layer_values = [comp.weights(f"layer.{i}").get(name, 0.0) for i in range(num_layers)]
        header_value = comp.weights(HEADERS).get(name, 0.0)
        base_value = 1.0 if name == comp.models[0] else 0.0
        rules = [{"filter": t, "value": header_value} for t in headers]
        rules += [{"filter": t, "value": base_value} for t in others]
        rules.append({"value": layer_values})
        models.append({"model": paths[name], "parameters": {"weight": rules}})
    return {"merge_method": "linear", "models": models,
            "parameters": {"normalize": False}, "dtype": dtype}
