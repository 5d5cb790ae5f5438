"""`mergesmith map CONFIG`: MonsterMapper, the base model's likely continuations per context."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path,
                   help="MonsterMapper (or MergeMonster) YAML config; default-mapper.yaml runs as it is")
    p.add_argument("--device", help="override the config's device (cpu, cuda, cuda:1...)")


def run(args: argparse.Namespace) -> int:
    from mergesmith.monster.config import load_config
    from mergesmith.monster.mapper import run_mapper

    config = load_config(args.config, command="map", device=args.device)
    log = run_mapper(config)
    print(f"log: {log}")
    return 0
