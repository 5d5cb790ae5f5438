"""The plain-words reading: runs of layers, thresholds, the advised density."""

from __future__ import annotations

from typing import Any

from mergesmith.report.reading import pair_lines, where


def _layer(key: Any, conflicts: float, kept: dict[str, float], cosine: float = 0.0) -> dict[str, Any]:
    model = {"kept_energy": kept}
    return {"layer": key, "models": {"math": model, "code": model},
            "pairs": [{"a": "math", "b": "code", "cosine": cosine, "sign_conflicts": conflicts, "overlap": 1.0}]}


def test_runs_of_layers_with_their_advice() -> None:
    spread = {"0.2": 0.65, "0.5": 0.93}
    layers = [_layer(i, 0.38, spread) for i in range(10, 21)] + [_layer(i, 0.1, spread, 0.9) for i in (21, 22)]
    lines = pair_lines(layers, ["math", "code"], [0.2, 0.5])
    assert lines == [
        "layers 10-20: 38% sign conflicts between math and code, cosine 0.00: consider ties with density 0.5",
        "layers 21-22: 10% sign conflicts between math and code, cosine 0.90: they agree: linear or "
        "task_arithmetic is enough",
    ]


def test_smallest_density_keeping_enough_energy_and_the_fallback() -> None:
    concentrated = [_layer(0, 0.45, {"0.2": 0.85, "0.5": 0.97})]
    assert "consider ties with density 0.2" in pair_lines(concentrated, ["math", "code"], [0.2, 0.5])[0]
    spread = [_layer(0, 0.45, {"0.2": 0.5, "0.5": 0.7})]
    assert ("consider ties with density 0.5 (it keeps only 70% of the energy; try a higher density)"
            in pair_lines(spread, ["math", "code"], [0.2, 0.5])[0])


def test_opposed_and_moderate_classes() -> None:
    kept = {"0.5": 0.9}
    lines = pair_lines([_layer("embed", 0.7, kept, -0.5), _layer(0, 0.25, kept, 0.7)], ["math", "code"], [0.5])
    assert lines[0].startswith("embeddings: 70% sign conflicts") and "opposite directions" in lines[0]
    assert lines[1].startswith("layer 0: 25%") and "task_arithmetic works; ties with density 0.5" in lines[1]


def test_layers_near_a_threshold_stay_in_one_run() -> None:
    kept = {"0.5": 0.9}
    layers = [_layer(0, 0.36, kept), _layer(1, 0.345, kept), _layer(2, 0.37, kept), _layer(3, 0.30, kept)]
    lines = pair_lines(layers, ["math", "code"], [0.5])
    assert [line.split(":")[0] for line in lines] == ["layers 0-2", "layer 3"]


def test_where_names_layer_ranges() -> None:
    assert where(["embed", 0, 1, 2, "head"]) == "embeddings, layers 0-2, final norm/head"
    assert where([7]) == "layer 7"
