"""`mergesmith merge RECIPE OUT`: run a recipe and write the merged checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from mergesmith.cli.output_options import add_output_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML (mergekit format)")
    add_output_options(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                   help="tensors processed at once (default: min(4, cores))")
    p.add_argument("--seed", type=int, default=0, help="seed for random methods (DARE, DELLA)")
    p.add_argument("--allow-crimes", action="store_true",
                   help="merge models of different architectures anyway (as mergekit's option): the output "
                        "takes the first model's (or base's) config.json")
    p.add_argument("--truncate-embeddings", action="store_true",
                   help="merge models with different vocabulary sizes by keeping the common prefix of rows")
    p.add_argument("--intermediate-dir", type=Path, default=None,
                   help="multi-step recipes: where named steps' outputs are written")
    p.add_argument("--lazy", action="store_true",
                   help="multi-step recipes: skip steps whose output in --intermediate-dir is already complete")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted merge into OUT, reusing its verified tensors")
    p.add_argument("--report", action="store_true",
                   help="also write report.html (per-layer plots of what the merge did) into OUT")
    p.add_argument("--stats-dir", type=Path, default=None,
                   help="fisher/regmean: cache of calibration statistics (default "
                        "$MERGESMITH_STATS_DIR or ~/.cache/mergesmith/stats)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def run(args: argparse.Namespace) -> int:
    from mergesmith.api import merge
    from mergesmith.errors import OptionsError

    if args.threads < 1:
        raise OptionsError(f"--threads {args.threads}: must be at least 1", hint="use --threads 1 or more")
    if args.report:  # before the merge, not after it
        from mergesmith.report.plots import require_matplotlib

        require_matplotlib("merge --report")
    start = time.perf_counter()
    result = merge(args.recipe, args.out, shard_size=args.shard_size, overwrite=args.overwrite,
                   device=args.device, threads=args.threads, seed=args.seed,
                   allow_pickle=args.allow_pickle, truncate_embeddings=args.truncate_embeddings,
                   intermediate_dir=args.intermediate_dir, lazy=args.lazy, resume=args.resume,
                   stats_dir=args.stats_dir, progress=None if not args.quiet else False,
                   allow_crimes=args.allow_crimes)
    if args.report:
        from mergesmith.report import write_report

        print(f"report: {write_report(result.out_dir)}", file=sys.stderr)
    if not args.quiet:
        took = time.perf_counter() - start
        print(f"merged {result.tensors} tensors ({result.bytes_written / 1e6:,.1f} MB) with "
              f"{result.plan.method.name} into {result.out_dir} in {took:.1f} s", file=sys.stderr)
    return 0
