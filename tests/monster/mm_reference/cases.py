"""The MergeMonster reference cases: configs run by MergeMonster's own code (record.py) and by
mergesmith (test_mm_reference.py) on the tiny models of mm_models.py.

Each config is MergeMonster YAML; MODEL_PATH1, MODEL_DIRECTORY and OUTPUT stand for paths
filled in by whoever runs it. Phrases: contexts ending in a space, as MergeMonster's
examples, and two without one ("w20", "w3 w4 w1"), where MergeMonster's rule scores the
phrase's own tokens at the end of the joined text (docs/monster.md, "Phrase scoring").
"""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

PHRASES: dict[str, Any] = {
    "bad_phrases": [
        {"phrase": "w5 w6", "weight": 10, "contexts": ["w1 w2 ", "w3 w4 w1"]},
        {"phrase": "w7", "weight": 1, "contexts": ["w9 w10 w11 "]},
        {"phrase": "w30", "weight": 3, "contexts": ["w8 w8 "]},
    ],
    "good_phrases": [
        {"phrase": "w12 w13 w14",
         "contexts": [{"context": "w1 w2 w3 ", "weight": 2}, {"context": "w20", "weight": 1}]},
        {"phrase": "w40", "weight": 1, "contexts": ["w41 w42 "]},
    ],
}

BASE: dict[str, Any] = {
    "device": "cuda",
    "random_seed": 42,
    "directories": {"model_path1": "MODEL_PATH1", "model_directory": "MODEL_DIRECTORY",
                    "output_directory": "OUTPUT"},
    # not sorted: MergeMonster sorts the list (a-donor first)
    "models_to_merge": ["MODEL_DIRECTORY/b-donor", "MODEL_DIRECTORY/a-donor"],
    "merge_ratios": [0.2, 0.4, 0.6, 0.8],
    "merge_method": "lerp",
    "merge_headers": True,
    "strategy": "cumulative",
    "strategy_threshold": 0.6,
    "auto_weights": False,
    **PHRASES,
}

MONSTER_CASES: dict[str, dict[str, Any]] = {
    "lerp": {},
    "slerp": {"merge_method": "slerp"},
    "slice": {"merge_method": "slice"},
    "cyclic": {"merge_method": "cyclic"},  # the headers then use cyclic's ratios too
    "gradient": {"merge_method": "gradient", "merge_headers": False},
    "multi": {"merge_method": ["lerp", "cyclic", "gradient", "slice", "slerp"]},
    "all_phrases": {"strategy": "all_phrases", "merge_ratios": [0.1, 0.3, 0.5, 0.7, 0.9]},
    "quantitive": {"strategy": "quantitive", "strategy_threshold": 0.5,
                   "merge_method": ["lerp", "gradient"]},
    "auto_weights": {"auto_weights": True, "merge_method": ["slice", "lerp"]},
    # models_to_merge empty: every model folder of model_directory, sorted; "narrow" and
    # "wide" have other vocabulary sizes (headers resized)
    "directory": {"models_to_merge": [], "merge_ratios": [0.3, 0.7]},
    "outside_unit": {"merge_ratios": [-0.2, 0.5, 1.3], "merge_method": ["lerp", "slerp"]},
}

MAPPER_BASE: dict[str, Any] = {
    "device": "cuda",
    "random_seed": 42,
    "directories": {"model_path1": "MODEL_PATH1"},
    **PHRASES,
}

MAPPER_CASES: dict[str, dict[str, Any]] = {
    # default-mapper.yaml's prob_min and top_k, shallower (its max_depth 5 and 20 extra
    # tokens take minutes in MonsterMapper's code on a loaded CPU)
    "percent": {"mapper": {"prob_min": 10, "top_k": 3, "max_depth": 2, "additional_length": 4}},
    "wide": {"mapper": {"prob_min": 2, "top_k": 4, "max_depth": 1, "additional_length": 3}},
    "deep": {"mapper": {"prob_min": 6, "top_k": 2, "max_depth": 4, "additional_length": 0}},
}


def _fill(value: Any, paths: dict[str, str]) -> Any:
    if isinstance(value, str):
        for key, path in paths.items():
            value = value.replace(key, path)
        return value
    if isinstance(value, list):
        return [_fill(v, paths) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, paths) for k, v in value.items()}
    return value


def monster_config(name: str, paths: dict[str, str]) -> dict[str, Any]:
    """The case's config with MODEL_PATH1, MODEL_DIRECTORY and OUTPUT replaced by `paths`."""
    config = copy.deepcopy(BASE)
    config.update(copy.deepcopy(MONSTER_CASES[name]))
    return _fill(config, paths)


def mapper_config(name: str, paths: dict[str, str]) -> dict[str, Any]:
    config = copy.deepcopy(MAPPER_BASE)
    config.update(copy.deepcopy(MAPPER_CASES[name]))
    return _fill(config, paths)


def digest(tensor: Any) -> list[float]:
    """Three numbers that pin a tensor down (sum, sum of squares, a position-weighted sum: a
    column moved elsewhere changes the last one)."""
    import torch

    flat = tensor.detach().double().flatten()
    probe = torch.sin(torch.arange(flat.numel(), dtype=torch.float64) * 0.37 + 0.1)
    return [float(flat.sum()), float((flat * flat).sum()), float((flat * probe).sum())]


DECISION = re.compile(r" - (Layer \d+/\d+|Header) - (CHANGED|RETAINED) - ")


def decisions(log: str) -> list[dict]:
    """The decisions of a run's printout: MergeMonster prints the layer's merge list, then
    `time - Layer i/N - CHANGED ...` (mergesmith's log too)."""
    out, origins = [], None
    for line in log.splitlines():
        if line.startswith("[["):
            origins = ast.literal_eval(line)
        match = DECISION.search(line)
        if match:
            out.append({"part": match.group(1), "label": match.group(2), "origins": origins})
    return out
