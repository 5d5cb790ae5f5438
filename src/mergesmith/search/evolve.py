"""CMA-ES over a search space (Akiba et al. 2024), with budget, resume, best recipe and plot."""

from __future__ import annotations

import dataclasses
import json
import math
import os
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

STATE_FILE = "state.json"
STATE_VERSION = 1


def make_space(config: EvolveConfig) -> ParameterSpace | DataFlowSpace:
    models = list(dict.fromkeys([config.base_model, *config.models]))
    if config.space == "dataflow":
        return make_dataflow_space(models, config.repeats, config.dataflow_scale, config.dtype)
    if config.method == "slerp" and len(models) != 2:
        raise OptionsError("slerp merges exactly two models: base_model and one other",
                           hint="list one model under models:, or use method: linear")
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
    """The CMA-ES loop; `state.json` in the output folder lets `--resume` continue.

    The state is plain JSON (no pickle: a planted file must not run code). CMA-ES itself is
    not stored: its state is a function of the seed and of what it was told, so `--resume`
    rebuilds it by replaying every generation (numpy's random state before each `ask`, the
    population and its fitness), which gives back the very same strategy.
    """

    def __init__(self, config: EvolveConfig, workers: int = 0, ray_address: str | None = None):
        from mergesmith.io.target import prepare_workspace
        from mergesmith.search.checks import check_config

        check_config(config)  # models, evaluator files, output and device: before any model loads
        self.config = config
        self.space = make_space(config)
        models = dict.fromkeys([config.base_model, *config.models])
        self.out = prepare_workspace(Path(config.output), [(m, Path(m)) for m in models], "evolve",
                                     known=("best.yaml", STATE_FILE, "state.pkl", "progress.png", "report.json"))
        self.workers, self.ray_address = workers, ray_address
        self.backend: Any = None  # made once the saved state (if any) is known to be good
        self.state: dict[str, Any] = {}
        self.es: Any = None

    def _new_es(self) -> Any:
        import cma

        x0 = self.space.default_vector()
        popsize = self.config.population or 4 + int(3 * math.log(len(x0)))
        return cma.CMAEvolutionStrategy(x0, self.config.sigma, {
            "seed": self.config.seed + 1, "popsize": popsize, "verbose": -9,
            # Exact-match scores are plateaus: a flat generation is no reason to stop early.
            # The budget (max_evals, timeout) ends the search.
            "tolflatfitness": 10**9, "tolfun": 0, "tolfunhist": 0, "tolstagnation": 10**9})

    def _fresh_state(self) -> dict[str, Any]:
        self.es = self._new_es()
        return {"version": STATE_VERSION, "evals": 0, "history": [], "best": None, "default": None,
                "elapsed": 0.0, "signature": self._signature(), "generations": [], "rng_after": None}

    def _signature(self) -> dict[str, Any]:
        """What a saved state only makes sense with (budget keys may change on --resume)."""
        keep = self.config.model_dump(mode="json", exclude={"max_evals", "timeout", "final", "output"})
        return json.loads(json.dumps({"config": keep, "size": self.space.size}))

    def _load_state(self, state_file: Path) -> dict[str, Any]:
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
                raise ValueError("not a search state of this version")
            matches = state.get("signature") == self._signature()
            if matches:
                self.es = self._replay(state["generations"], state["rng_after"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise OptionsError(f"{state_file}: not a readable search state ({type(exc).__name__}: {exc})",
                               hint="drop --resume to start afresh") from None
        if not matches:
            raise OptionsError(f"{state_file} was written by a search with another space, models, "
                               "evaluators or seed; --resume continues only the same search",
                               hint="restore the config, or drop --resume to start afresh")
        return state

    def _replay(self, generations: list[dict[str, Any]], rng_after: Any) -> Any:
        import numpy as np

        es = self._new_es()
        for gen in generations:
            np.random.set_state(_rng_from_json(gen["rng"]))
            es.ask()
            if gen["fitness"] is not None:
                es.tell([np.asarray(x, dtype=float) for x in gen["xs"]], [float(f) for f in gen["fitness"]])
        if rng_after is not None:
            np.random.set_state(_rng_from_json(rng_after))
        return es

    def run(self, resume: bool = False) -> SearchResult:
        from mergesmith.io.target import TargetLock, discard_workspace

        with TargetLock(self.out):  # one search per folder; taken before the try: another's folder is never discarded
            try:
                return self._run(resume)
            except BaseException:
                discard_workspace(self.out, "evolve")  # a search that failed before writing anything
                raise

    def _run(self, resume: bool) -> SearchResult:
        state_file = self.out / STATE_FILE
        if resume and state_file.is_file():
            self.state = self._load_state(state_file)
        else:
            if resume and (self.out / "state.pkl").exists():
                raise OptionsError(f"{self.out / 'state.pkl'} is an older mergesmith's pickled state; it is "
                                   "not loaded, since unpickling a file can run code",
                                   hint="drop --resume to start the search afresh")
            self.state = self._fresh_state()
        self.backend = make_backend(self.config, self.workers, self.ray_address)
        # The timeout counts every evaluation, the baseline's and those before a --resume.
        self._start = time.monotonic() - self.state["elapsed"]
        try:
            if self.state["default"] is None:
                # The method's default recipe is the baseline every result is compared with.
                default = self.space.recipe(self.space.default_vector())
                score = self.backend.score([default])[0]
                self.state["default"] = {"recipe": default, "score": score}
                self._consider(default, score)
                self.state["evals"] += 1
            self._loop(state_file)
        except KeyboardInterrupt:
            self.backend.close()
            kept = (f"the search state after {self.state['evals']} evaluations is in {state_file}; "
                    "run the same command with --resume to continue") if state_file.is_file() else \
                "no generation had finished, so there is nothing to resume"
            raise KeyboardInterrupt(kept) from None
        return self._finish()

    def _loop(self, state_file: Path) -> None:
        import numpy as np

        es, cfg = self.es, self.config
        start = self._start
        while self.state["evals"] < cfg.max_evals and not es.stop():
            if cfg.timeout and time.monotonic() - start > cfg.timeout:
                break
            n = min(es.popsize, cfg.max_evals - self.state["evals"])
            rng = _rng_to_json(np.random.get_state())
            xs = es.ask()
            recipes = [self.space.recipe(list(x)) for x in xs[:n]]
            scores = self.backend.score(recipes)
            told = n == es.popsize
            if told:  # CMA-ES needs a full population to update
                es.tell(xs, [-s for s in scores])
            self.state["generations"].append({
                "rng": rng, "xs": [[float(v) for v in x] for x in xs] if told else None,
                "fitness": [-s for s in scores] if told else None})
            for r, s in zip(recipes, scores):
                self._consider(r, s)
            self.state["evals"] += n
            self.state["history"].append({"evals": self.state["evals"], "scores": scores,
                                          "best": self.state["best"]["score"]})
            self.state["elapsed"] = time.monotonic() - start
            self.state["rng_after"] = _rng_to_json(np.random.get_state())
            _write_json(state_file, self.state)
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


def _rng_to_json(state: tuple) -> list[Any]:
    """numpy's legacy random state (MT19937 keys, position, cached Gaussian) as JSON values."""
    name, keys, pos, has_gauss, cached = state
    return [str(name), [int(k) for k in keys], int(pos), int(has_gauss), float(cached)]


def _rng_from_json(value: list[Any]) -> tuple:
    import numpy as np

    name, keys, pos, has_gauss, cached = value
    if name != "MT19937" or len(keys) != 624:
        raise ValueError("not a numpy MT19937 state")
    return (name, np.asarray(keys, dtype=np.uint32), int(pos), int(has_gauss), float(cached))


def _write_json(path: Path, data: Any) -> None:
    """Whole or not at all: a kill while saving leaves the previous state."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
