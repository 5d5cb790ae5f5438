"""What each part of the model is made of, and the recipes that reproduce a run.

Two records of one run:

- `origins`: MergeMonster's `layer_origins`, printed after every decision: per layer (and
  999 for the headers) `[[1.0, model 1], [ratio, donor], ...]`, cyclic booked at 0.15 and
  gradient at 0.45 whatever their ratio, and its composition arithmetic
  (`modules/composition.py`);
- `steps`: per part (`layer.3`, `embed`, `head`) the steps kept, (donor, blend, ratio,
  share as a lerp), from which two recipes follow:
  - `monster_recipe`: one `mergemonster` document (model 1 as base, each donor with, per
    blend, filter rules giving the ratio of the parts that took that step). `mergesmith
    merge` replays every step with the monster's own arithmetic: the tensors are identical.
  - `linear_recipe` (lerp-only runs): a lerp at ratio r maps a part = sum_m w_m model_m to
    (1 - r) part + r donor, so a chain of lerps is one `linear` merge with per-layer weights.
    mergekit runs it too; equal to the monster's model up to float rounding (~1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mergesmith.methods.mergemonster import NOMINAL_SHARE

HEADERS = 999  # MergeMonster's key of the header stage in layer_origins
PARTS = ("embed", "head")


@dataclass
class Composition:
    models: list[str]  # model 1 first, then donors in order
    # part -> steps (donor, blend, ratio, share): share = the step as one lerp (lerp steps)
    steps: dict[str, list[tuple[str, str, float, float]]] = field(default_factory=dict)
    origins: dict[int, list[list[Any]]] = field(default_factory=dict)  # MergeMonster's record

    def apply(self, part: str, donor: str, method: str, ratio: float, share: float) -> None:
        self.steps.setdefault(part, []).append((donor, method, ratio, share))

    def book(self, key: int, donor: str, method: str, ratio: float) -> None:
        """MergeMonster's `layer_origins[key].append([ratio, donor])`."""
        self.origin(key).append([NOMINAL_SHARE.get(method, ratio), donor])

    def origin(self, key: int) -> list[list[Any]]:
        return self.origins.setdefault(key, [[1.0, self.models[0]]])

    def shares(self, key: int) -> dict[str, float]:
        """MergeMonster's calculate_final_composition for one layer: every booked merge as a
        lerp at its (nominal) ratio, normalised."""
        current: dict[str, float] = {}
        for ratio, name in self.origin(key):
            for existing in current:
                current[existing] *= 1 - ratio
            current[name] = current.get(name, 0.0) + ratio
        total = sum(current.values())
        return {k: v / total for k, v in current.items()} if total else current

    def aggregate(self, keys: list[int]) -> dict[str, float]:
        """MergeMonster's aggregate_composition: the layers' shares summed, normalised, sorted."""
        summed: dict[str, float] = {}
        for key in keys:
            for name, share in self.shares(key).items():
                summed[name] = summed.get(name, 0.0) + share
        total = sum(summed.values())
        return dict(sorted(((k, v / total) for k, v in summed.items()), key=lambda kv: -kv[1]))

    def weights(self, part: str) -> dict[str, float]:
        """Each model's share of a part of a lerp-only run (exact up to rounding)."""
        weights = {self.models[0]: 1.0}
        for donor, _method, _ratio, share in self.steps.get(part, []):
            for name in weights:
                weights[name] *= 1.0 - share
            weights[donor] = weights.get(donor, 0.0) + share
        return weights

    @property
    def lerp_only(self) -> bool:
        return all(m == "lerp" for steps in self.steps.values() for _, m, _, _ in steps)

    def to_json(self) -> dict[str, Any]:
        return {"models": self.models, "steps": self.steps,
                "origins": {str(k): v for k, v in self.origins.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Composition:
        steps = {k: [tuple(s) for s in v] for k, v in data.get("steps", {}).items()}
        origins = {int(k): v for k, v in data.get("origins", {}).items()}
        return cls(list(data["models"]), steps, origins)  # type: ignore[arg-type]


def monster_recipe(comp: Composition, paths: dict[str, str], filters: dict[str, list[str]],
                   order: list[str], dtype: str, ratios: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A `mergemonster` recipe. `filters`: part -> the tensor-name filters that select it
    (`model.layers.3.`; the embedding and head names). Parts without steps stay model 1's.
    It merges in float32, as the monster does, and writes `dtype` (`out_dtype`).
    `ratios`: the filter rules of the method's `ratios` (compounding candidates), or None."""
    base = comp.models[0]
    models: list[dict[str, Any]] = [{"model": paths[base]}]
    order = list(dict.fromkeys([*order, "lerp"]))  # the header steps are lerps
    for donor in comp.models[1:]:
        params: dict[str, Any] = {}
        for method in order:
            rules = [{"filter": f, "value": ratio}
                     for part, steps in comp.steps.items()
                     for d, m, ratio, _ in steps if d == donor and m == method
                     for f in filters.get(part, [])]
            if rules:
                params[method] = rules
        models.append({"model": paths[donor], **({"parameters": params} if params else {})})
    shared: dict[str, Any] = {"order": ",".join(order)}
    if ratios:
        shared["ratios"] = ratios
    return {"merge_method": "mergemonster", "base_model": paths[base], "models": models,
            "parameters": shared, "dtype": "float32", "out_dtype": dtype}


def linear_recipe(comp: Composition, paths: dict[str, str], num_layers: int,
                  parts: dict[str, list[str]], others: list[str], dtype: str) -> dict[str, Any] | None:
    """A `linear` recipe giving every layer (and embed/head) its composed weights, or None
    when a non-lerp step was taken. `parts`: "embed"/"head" -> tensor names; `others`: the
    remaining non-layer tensors (final norm), which stay model 1's."""
    if not comp.lerp_only:
        return None
    models = []
    for name in comp.models:
        layer_values = [comp.weights(f"layer.{i}").get(name, 0.0) for i in range(num_layers)]
        base_value = 1.0 if name == comp.models[0] else 0.0
        rules = [{"filter": t, "value": comp.weights(part).get(name, 0.0)}
                 for part, tensors in parts.items() for t in tensors]
        rules += [{"filter": t, "value": base_value} for t in others]
        rules.append({"value": layer_values})
        models.append({"model": paths[name], "parameters": {"weight": rules}})
    return {"merge_method": "linear", "models": models,
            "parameters": {"normalize": False}, "dtype": "float32", "out_dtype": dtype}
