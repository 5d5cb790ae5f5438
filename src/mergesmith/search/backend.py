"""Where candidates are scored: in this process, or on Ray actors (one resident model each)."""

from __future__ import annotations

from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.search.config import EvolveConfig


def _paths(config: EvolveConfig) -> list[str]:
    return list(dict.fromkeys([config.base_model, *config.models]))


class LocalBackend:
    def __init__(self, config: EvolveConfig) -> None:
        from mergesmith.evaluate.spec import build_evaluator
        from mergesmith.search.resident import Resident

        self.config = config
        self.resident = Resident(_paths(config), config.search, device=config.device,
                                 dtype=config.dtype)
        self._final = [build_evaluator(s, config.device, config.base_model) for s in config.final]

    def score(self, recipes: list[dict[str, Any]]) -> list[float]:
        return [self.resident.score(r, self.config.seed)[0] for r in recipes]

    def final(self, recipes: list[dict[str, Any]]) -> list[dict[str, float]]:
        """Held-out scores: evaluators the search never optimised."""
        out = []
        for r in recipes:
            _, search_scores = self.resident.score(r, self.config.seed)
            held = ({} if not self._final else self.resident.score(
                r, self.config.seed, self._final, self.config.final)[1])
            out.append({"search": search_scores, "final": held})
        return out

    def close(self) -> None:
        pass


class RayBackend(LocalBackend):
    """`workers` actors score a population in parallel; results come back in order."""

    def __init__(self, config: EvolveConfig, workers: int, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise OptionsError("--workers needs Ray, which is not installed",
                               hint="pip install 'mergesmith[distributed]'") from None
        super().__init__(config)
        self._ray = ray
        self._started = not ray.is_initialized()
        if self._started:
            ray.init(address=address, num_cpus=None if address else workers,
                     include_dashboard=False, logging_level="ERROR")
        actor = ray.remote(num_cpus=1)(_Worker)
        self.actors = [actor.remote(config) for _ in range(workers)]

    def score(self, recipes: list[dict[str, Any]]) -> list[float]:
        from ray.util import ActorPool

        pool = ActorPool(self.actors)
        return list(pool.map(lambda a, r: a.score.remote(r), recipes))

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        if self._started:
            self._ray.shutdown()


class _Worker:
    def __init__(self, config: EvolveConfig) -> None:
        from mergesmith.search.resident import Resident
        from mergesmith.threads import pin

        pin(1)  # one core per actor: Ray owns the parallelism

        self.seed = config.seed
        self.resident = Resident(_paths(config), config.search, device=config.device,
                                 dtype=config.dtype)

    def score(self, recipe: dict[str, Any]) -> float:
        return self.resident.score(recipe, self.seed)[0]


def make_backend(config: EvolveConfig, workers: int, address: str | None) -> LocalBackend:
    if workers and workers > 0 or address:
        return RayBackend(config, max(1, workers), address)
    return LocalBackend(config)
