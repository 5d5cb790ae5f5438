"""`mergesmith demo`: build the tiny demo family, merge it, evaluate (placeholder until the demo lands)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=None, help="where to build and cache the family")
    p.add_argument("--quick", action="store_true", help="a smaller, faster run")
    p.add_argument("--build-only", action="store_true", help="build the family and print its paths")


def run(args: argparse.Namespace) -> int:
    from mergesmith.errors import MergeError

    raise MergeError("the demo is not built yet")
