"""One resident transformers model that candidate recipes are merged into, in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.evaluate.spec import EvaluatorSpec, build_evaluator
from mergesmith.io.models import open_model


def _read_weights(ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(state dict, config) of a model reference, opened like a recipe's models."""
    ckpt = open_model(ref, None)
    try:
        return {name: ckpt.read_finite(name) for name in ckpt.tensors}, ckpt.config
    finally:
        ckpt.close()


def fit_depth(model: Any, state: dict[str, Any]) -> None:
    """Give the live model as many layers as `state` has (data-flow paths vary in length).

    Extra layers are copies of layer 0 with their own `layer_idx` (the KV cache is indexed
    by it); the config's layer count follows, since generation sizes its cache from it.
    """
    import copy

    from mergesmith.arch import config_layer_count, detect_layout

    layout = detect_layout(state)
    if layout.container is None:
        return
    layers = model.get_submodule(layout.container)
    if len(layers) == layout.num_layers:
        return
    kept = list(layers)[: layout.num_layers]
    for i in range(len(kept), layout.num_layers):
        layer = copy.deepcopy(layers[0])
        for module in layer.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = i
        kept.append(layer)
    model.get_submodule(layout.container.rpartition(".")[0] or "").__setattr__(
        layout.container.rpartition(".")[2], type(layers)(kept))
    config = model.config.get_text_config(decoder=True)
    key = config_layer_count(config.to_dict())
    setattr(config, key[0] if key else "num_hidden_layers", layout.num_layers)
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = [config.layer_types[0]] * layout.num_layers


def _signed(evaluator: Any, scores: dict[str, float], metric: str | None) -> float:
    """The primary (or `metric`) score, signed so that higher is better."""
    from mergesmith.evaluate.base import objective

    if metric is None:
        return objective(evaluator, scores)
    if metric not in scores:
        raise OptionsError(f"evaluator {evaluator.primary!r} has no score {metric!r}",
                           hint=f"one of {sorted(scores)}")
    return scores[metric] if evaluator.higher_is_better else -scores[metric]


class Resident:
    """Input state dicts held once, one live model whose weights each candidate replaces."""

    def __init__(self, paths: list[str], specs: list[EvaluatorSpec], *, device: str = "cpu",
                 dtype: str = "float32") -> None:
        from mergesmith.evaluate.loading import load_model

        self.paths = list(dict.fromkeys(paths))
        weights = {p: _read_weights(p) for p in self.paths}
        self.state_dicts = {p: state for p, (state, _) in weights.items()}
        self.configs = {p: config for p, (_, config) in weights.items()}
        self.loaded = load_model(Path(self.paths[0]), device=device, dtype=dtype)
        self.device = device
        self.specs = specs
        # The live model still holds paths[0] (the base): the calibration reference.
        self.evaluators = [build_evaluator(s, device, self.loaded) for s in specs]

    def load_recipe(self, recipe: dict[str, Any], seed: int = 0) -> None:
        from mergesmith.api import merge_state_dicts

        merged = merge_state_dicts(recipe, self.state_dicts, self.configs, seed=seed)
        fit_depth(self.loaded.model, merged)
        missing, unexpected = self.loaded.model.load_state_dict(merged, strict=False)
        # Tied heads are absent from checkpoints; anything else missing means a bad merge.
        missing = [m for m in missing if "lm_head" not in m]
        if missing or unexpected:
            raise OptionsError(f"merged tensors do not fit the model: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")

    def score(self, recipe: dict[str, Any], seed: int = 0,
              evaluators: list[Any] | None = None,
              specs: list[EvaluatorSpec] | None = None) -> tuple[float, dict[str, float]]:
        """Weighted sum of signed primary scores (higher is better), and all raw scores."""
        self.load_recipe(recipe, seed)
        evaluators = self.evaluators if evaluators is None else evaluators
        specs = self.specs if specs is None else specs
        total, scores = 0.0, {}
        for ev, spec in zip(evaluators, specs):
            s = ev.evaluate(self.loaded.model, self.loaded.tokenizer)
            scores.update(s)
            total += spec.weight * _signed(ev, s, spec.metric)
        return total, scores
