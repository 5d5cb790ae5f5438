"""`mergesmith soup CONFIG`: uniform and greedy model soups (docs/search.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="soup YAML config")
    p.add_argument("--uniform", action="store_true", help="uniform soup (every model)")


def run(args: argparse.Namespace) -> int:
    from mergesmith.search.config import load_soup_config
    from mergesmith.search.soup import run_soup

    config = load_soup_config(args.config)
    if args.uniform:
        config.mode = "uniform"
    report = run_soup(config)
    print(f"uniform soup {report.uniform_search:.5f}, {config.mode} soup "
          f"{report.soup_search:.5f} (search data); ingredients: {len(report.ingredients)}")
    for name, scores in report.final.items():
        print(f"held-out {name}: " + ", ".join(f"{k}={v:.4f}" for k, v in scores.items()))
    print(f"recipe: {Path(config.output) / 'recipe.yaml'}\nmodel: {Path(config.output) / 'model'}")
    return 0
