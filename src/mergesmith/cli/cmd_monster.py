"""`mergesmith monster CONFIG`: MergeMonster's objective-driven layer merging (docs/monster.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="MergeMonster YAML config (its default.yaml runs as it is)")
    p.add_argument("--resume", action="store_true", help="continue from the state saved by Ctrl-C")
    p.add_argument("--device", help="override the config's device (cpu, cuda, cuda:1...)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: 1 for models under 10M parameters, else torch's)")


def run(args: argparse.Namespace) -> int:
    from mergesmith.errors import OptionsError
    from mergesmith.monster.config import load_config
    from mergesmith.monster.run import run_monster

    if args.threads is not None and args.threads < 1:
        raise OptionsError(f"--threads {args.threads}: must be at least 1", hint="e.g. --threads 2")
    config = load_config(args.config, device=args.device)
    result = run_monster(config, resume=args.resume, progress=not args.no_progress,
                         threads=args.threads)
    print(f"score {result.start:.5f} -> {result.end:.5f}; "
          f"{result.rate:.1f} candidates/s")
    print(f"model: {result.output}\nlog: {result.log}")
    if result.recipe:
        print(f"recipe: {result.recipe}")
    return 0
