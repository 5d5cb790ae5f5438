"""Uniform and greedy model soups (Wortsman et al. 2022), as linear recipes."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mergesmith.evaluate.spec import build_evaluator
from mergesmith.search.config import SoupConfig
from mergesmith.search.resident import Resident


def soup_recipe(models: list[str], dtype: str = "float32") -> dict[str, Any]:
    """A uniform soup is a linear merge with equal weights."""
    return {"merge_method": "linear", "dtype": dtype,
            "models": [{"model": m, "parameters": {"weight": 1.0}} for m in models]}


def greedy_soup(resident: Resident, models: list[str], dtype: str,
                log: list[dict[str, Any]]) -> list[str]:
    """Rank by own score; add an ingredient only if the soup's score strictly improves."""
    single = {m: resident.score(soup_recipe([m], dtype))[0] for m in models}
    ranked = sorted(models, key=lambda m: -single[m])
    for m in ranked:
        _note(log, {"step": "rank", "model": m, "score": single[m]})
    chosen, best = [ranked[0]], single[ranked[0]]
    _note(log, {"step": "add", "model": ranked[0], "score": best})
    for m in ranked[1:]:
        score = resident.score(soup_recipe([*chosen, m], dtype))[0]
        keep = score > best
        _note(log, {"step": "add" if keep else "skip", "model": m, "score": score, "best": best})
        if keep:
            chosen, best = [*chosen, m], score
    return chosen


def _note(log: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    log.append(entry)
    print(json.dumps(entry))


@dataclass(frozen=True)
class SoupResult:
    """Search objectives of the uniform and the chosen soup, its ingredients, held-out scores
    (report.json holds the same)."""

    uniform_search: float
    soup_search: float
    ingredients: list[str]
    final: dict[str, dict[str, float]]  # "uniform"/"soup" -> the `final:` evaluators' scores


def run_soup(config: SoupConfig) -> SoupResult:
    from mergesmith.io.target import TargetLock, discard_workspace, prepare_workspace
    from mergesmith.search.checks import check_config

    check_config(config)  # models, evaluator files, output and device: before any model loads
    out = prepare_workspace(Path(config.output), [(m, Path(m)) for m in config.models], "soup",
                            known=("recipe.yaml", "log.jsonl", "model", "report.json"))
    with TargetLock(out):  # one search per folder; taken before the try: another's folder is never discarded
        try:
            return _run(config, out)
        except BaseException:
            discard_workspace(out, "soup")  # failed before writing anything: leave nothing behind
            raise


def _run(config: SoupConfig, out: Path) -> SoupResult:
    from mergesmith.api import merge

    resident = Resident(config.models, config.search, device=config.device, dtype=config.dtype)
    log: list[dict[str, Any]] = []
    uniform = soup_recipe(config.models, config.dtype)
    uniform_score = resident.score(uniform)[0]
    _note(log, {"step": "uniform", "score": uniform_score})
    chosen = config.models if config.mode == "uniform" else greedy_soup(
        resident, config.models, config.dtype, log)
    recipe = soup_recipe(chosen, config.dtype)
    search_score = resident.score(recipe)[0]
    final = _final_scores(resident, config, {"uniform": uniform, "soup": recipe})
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    (out / "log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in log))
    merge(out / "recipe.yaml", out / "model", overwrite=True)
    result = SoupResult(uniform_score, search_score, chosen, final)
    (out / "report.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
    return result


def _final_scores(resident: Resident, config: Any, recipes: dict[str, Any]) -> dict[str, Any]:
    """Held-out scores, from data the search never saw."""
    if not config.final:
        return {}
    reference = config.models[0]  # as the resident's evaluators (its first model)
    evaluators = [build_evaluator(s, config.device, reference) for s in config.final]
    return {name: resident.score(r, evaluators=evaluators, specs=config.final)[1]
            for name, r in recipes.items()}
