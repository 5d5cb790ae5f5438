"""`mergesmith demo`: build the tiny demo family (cached), merge its experts with every
applicable method, evaluate each merge on every skill, print the table and write report.html."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def default_workdir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "mergesmith" / "demo"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the family is built and cached (default ~/.cache/mergesmith/demo)")
    p.add_argument("--quick", action="store_true", help="a smaller family and grid (for tests)")
    p.add_argument("--build-only", action="store_true", help="build the family and print its paths")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="evaluate at most this many examples per skill")
    p.add_argument("--report", type=Path, default=None, help="where to write report.html (default WORKDIR/report.html)")


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from mergesmith.demo import build_family
    from mergesmith.report.plots import require_matplotlib

    if not args.build_only:  # the demo ends in report.html: fail before hours of work, not after
        require_matplotlib("mergesmith demo (its report.html)")
    from mergesmith.io.target import check_output_file, check_output_location

    workdir = args.workdir or default_workdir() / ("quick" if args.quick else "full")
    check_output_location(workdir, what="--workdir")  # never the folder you are in, nor one above it
    if args.report is not None:
        check_output_file(args.report, what="--report", suffix=".html", make_parents=True)
    demo_log = logging.getLogger("mergesmith.demo")
    demo_log.setLevel(logging.INFO)
    if not demo_log.handlers:  # the build's progress, on stderr beside the evaluation's
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("  %(message)s"))
        demo_log.addHandler(handler)
        demo_log.propagate = False  # not again through the CLI's own handler
    start = time.perf_counter()
    print(f"building (or loading) the demo family in {workdir} ...", flush=True)
    family = build_family(workdir, quick=args.quick, seed=args.seed)
    print(f"family ready in {time.perf_counter() - start:.0f} s", flush=True)
    if args.build_only:
        print(f"base: {family.base}")
        for skill, path in family.experts.items():
            print(f"expert {skill}: {path}")
        for skill, path in family.test_sets.items():
            print(f"test set {skill}: {path}   search set: {family.search_sets[skill]}")
        return 0
    from mergesmith.demo.grid import run_demo, write_report

    def progress(line: str) -> None:
        print(f"  evaluated {line}", file=sys.stderr, flush=True)

    result = run_demo(family, quick=args.quick, seed=args.seed, limit=args.limit,
                      recipes_dir=workdir / "recipes", log=progress)
    print()
    print(result.table())
    build_seconds = family.manifest().get("timings", {}).get("total_s")
    results = workdir / "results.json"
    write_json_atomic(results, result.to_json(family.digest, build_seconds))
    report = write_report(result, args.report or workdir / "report.html")
    best = result.best_merge()
    if best is not None:
        print(f"\nbest merge: {best} (normalised {result.normalised(best):.2f}); to build it:\n"
              f"  mergesmith merge {result.recipes[best]} ./merged --seed {args.seed}")
    print(f"\nresults: {results}\nreport: {report}   ({time.perf_counter() - start:.0f} s in all)")
    return 0


def write_json_atomic(path: Path, data: object) -> None:
    import json

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
