"""`mergesmith evolve CONFIG`: CMA-ES evolutionary merging (docs/search.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="evolve YAML config")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/state.json")
    p.add_argument("--workers", type=int, default=0, help="Ray workers (0: in-process)")
    p.add_argument("--ray-address", help="join an existing Ray cluster")
    p.add_argument("--max-evals", type=int, help="override the config's max_evals")
    p.add_argument("--seed", type=int, help="override the config's seed")


def run(args: argparse.Namespace) -> int:
    from mergesmith.errors import OptionsError, missing_extra
    from mergesmith.report.plots import require_matplotlib
    from mergesmith.search.config import load_evolve_config

    if args.workers < 0:
        raise OptionsError(f"--workers {args.workers}: must be 0 (in-process) or more", hint="e.g. --workers 2")
    if args.max_evals is not None and args.max_evals < 1:
        raise OptionsError(f"--max-evals {args.max_evals}: must be at least 1", hint="e.g. --max-evals 40")
    if args.seed is not None and not 0 <= args.seed < 2**32 - 1:
        raise OptionsError(f"--seed {args.seed}: must be between 0 and 2**32 - 2", hint="e.g. --seed 0")
    try:
        import cma  # noqa: F401
    except ImportError:
        raise missing_extra("cma", "search", "evolve") from None
    require_matplotlib("evolve (its progress.png)")
    config = load_evolve_config(args.config)
    if args.max_evals is not None:
        config.max_evals = args.max_evals
    if args.seed is not None:
        config.seed = args.seed
    from mergesmith.search.evolve import Search

    report = Search(config, args.workers, args.ray_address).run(resume=args.resume)
    print(f"{report.evals} evaluations; search objective: default "
          f"{report.default_search:.5f} -> best {report.best_search:.5f}")
    for which, final in (("default", report.default_final), ("best", report.best_final)):
        for data in ("search", "final"):
            scores = final[data]
            label = "search data" if data == "search" else "held-out data"
            if scores:
                print(f"{which} recipe, {label}: "
                      + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    if not report.best_final["final"]:
        print("no `final` evaluators: no held-out scores (search-data scores overestimate)")
    print(f"best recipe: {report.best_recipe}")
    return 0
