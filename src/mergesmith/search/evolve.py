"""CMA-ES over a search space (Akiba et al. 2024), with budget, resume, best recipe and plot."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mergesmith.errors import OptionsError
from mergesmith.report.plots import figure
from mergesmith.search.backend import make_backend
from mergesmith.search.config import EvolveConfig
from mergesmith.search.dataflow import DataFlowSpace, make_dataflow_space
from mergesmith.search.space import ParameterSpace


def make_space(config: EvolveConfig) -> ParameterSpace | DataFlowSpace:
    models = list(dict.fromkeys([config.base_model, *config.models]))
    if config.space == "dataflow":
        return make_dataflow_space(models, config.repeats, config.dataflow_scale, config.dtype)
    if config.method == "slerp" and len(models) != 2:
        raise OptionsError("slerp merges exactly two models: base_model and one other")
    return ParameterSpace(config.method, config.base_model, models, config.layer_groups,
                          tuple(config.filters), config.allow_negative_weights, config.dtype)


@dataclass(frozen=True)
class SearchResult:
    """The method's default recipe against the best found (report.json holds the same)."""

    evals: int
    default_search: float  # search objective, higher is better
    best_search: float
    default_final: dict[str, Any]  # held-out scores of the `final:` evaluators
    best_final: dict[str, Any]
    best_recipe: str  # best.yaml


class Search:
    """The CMA-ES loop; `state.pkl` in the output folder lets `--resume` continue."""

    def __init__(self, config: EvolveConfig, workers: int = 0, ray_address: str | None = None):
        self.config = config
        self.space = make_space(config)
        self.out = Path(config.output)
        self.out.mkdir(parents=True, exist_ok=True)
        self.backend = make_backend(config, workers, ray_address)
        self.state: dict[str, Any] = {}

    def _fresh_state(self) -> dict[str, Any]:
        import cma

        x0 = self.space.default_vector()
        popsize = self.config.population or 4 + int(3 * math.log(len(x0)))
        es = cma.CMAEvolutionStrategy(x0, self.config.sigma, {
            "seed": self.config.seed + 1, "popsize": popsize, "verbose": -9,
            # Exact-match scores are plateaus: a flat generation is no reason to stop early.
            # The budget (max_evals, timeout) ends the search.
            "tolflatfitness": 10**9, "tolfun": 0, "tolfunhist": 0, "tolstagnation": 10**9})
        return {"es": es, "evals": 0, "history": [], "best": None, "default": None,
                "elapsed": 0.0, "signature": self._signature()}

    def _signature(self) -> dict[str, Any]:
        """What a saved state only makes sense with (budget keys may change on --resume)."""
        keep = self.config.model_dump(exclude={"max_evals", "timeout", "final", "output"})
        return {"config": keep, "size": self.space.size}

    def _load_state(self, state_file: Path) -> dict[str, Any]:
        state = pickle.loads(state_file.read_bytes())
        if state.get("signature") != self._signature():
            raise OptionsError(f"{state_file} was written by a search with another space, models, "
                               "evaluators or seed; --resume continues only the same search",
                               hint="restore the config, or drop --resume to start afresh")
        return state

    def run(self, resume: bool = False) -> SearchResult:
        state_file = self.out / "state.pkl"
        if resume and state_file.is_file():
            self.state = self._load_state(state_file)
        else:
            self.state = self._fresh_state()
        # The timeout counts every evaluation, the baseline's and those before a --resume.
        self._start = time.monotonic() - self.state["elapsed"]
        if self.state["default"] is None:
            # The method's default recipe is the baseline every result is compared with.
            default = self.space.recipe(self.space.default_vector())
            score = self.backend.score([default])[0]
            self.state["default"] = {"recipe": default, "score": score}
            self._consider(default, score)
            self.state["evals"] += 1
        self._loop(state_file)
        return self._finish()

    def _loop(self, state_file: Path) -> None:
        es, cfg = self.state["es"], self.config
        start = self._start
        while self.state["evals"] < cfg.max_evals and not es.stop():
            if cfg.timeout and time.monotonic() - start > cfg.timeout:
                break
            n = min(es.popsize, cfg.max_evals - self.state["evals"])
            xs = es.ask()
            recipes = [self.space.recipe(list(x)) for x in xs[:n]]
            scores = self.backend.score(recipes)
            if n == es.popsize:  # CMA-ES needs a full population to update
                es.tell(xs, [-s for s in scores])
            for r, s in zip(recipes, scores):
                self._consider(r, s)
            self.state["evals"] += n
            self.state["history"].append({"evals": self.state["evals"], "scores": scores,
                                          "best": self.state["best"]["score"]})
            self.state["elapsed"] = time.monotonic() - start
            state_file.write_bytes(pickle.dumps(self.state))
            print(json.dumps({"generation": len(self.state["history"]),
                              "evals": self.state["evals"], "best": self.state["best"]["score"],
                              "population_max": max(scores)}))
            _plot(self.state["history"], self.out / "progress.png")

    def _consider(self, recipe: dict[str, Any], score: float) -> None:
        best = self.state["best"]
        # Strict improvement only: ties keep the earlier recipe, so serial and parallel agree.
        if best is None or score > best["score"]:
            self.state["best"] = {"recipe": recipe, "score": score}
            header = (f"# mergesmith evolve: best so far, search objective {score:.6g}\n"
                      f"# reproduce: mergesmith merge best.yaml OUT --seed {self.config.seed}\n")
            (self.out / "best.yaml").write_text(header + yaml.safe_dump(recipe, sort_keys=False))

    def _finish(self) -> SearchResult:
        best, default = self.state["best"], self.state["default"]
        final = self.backend.final([default["recipe"], best["recipe"]])
        result = SearchResult(self.state["evals"], default["score"], best["score"], final[0], final[1],
                              str(self.out / "best.yaml"))
        (self.out / "report.json").write_text(json.dumps(dataclasses.asdict(result), indent=2))
        self.backend.close()
        return result


def _plot(history: list[dict[str, Any]], path: Path) -> None:
    fig = figure(6, 4)
    ax = fig.add_subplot()
    for g, h in enumerate(history, 1):
        ax.scatter([g] * len(h["scores"]), h["scores"], s=8, color="tab:gray", alpha=0.6)
    ax.plot(range(1, len(history) + 1), [h["best"] for h in history], color="tab:red",
            label="best")
    ax.set_xlabel("generation")
    ax.set_ylabel("objective (higher is better)")
    ax.legend()
    fig.savefig(path)
