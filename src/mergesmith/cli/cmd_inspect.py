"""`mergesmith inspect --base BASE MODEL...`: how the models' task vectors relate, per layer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", type=Path, metavar="MODEL", help="fine-tuned model directories")
    p.add_argument("--base", type=Path, required=True, help="the base model directory the task vectors are taken from")
    p.add_argument("--json", type=Path, metavar="OUT",
                   help="write the statistics as JSON: to OUT if it ends in .json, else to OUT/inspect.json "
                        "(`mergesmith report OUT` then draws them)")
    p.add_argument("--density", default="0.2,0.5",
                   help="densities at which to measure the task-vector energy a magnitude trim keeps (default 0.2,0.5)")
    p.add_argument("--labels", help="comma-separated names for the models (default: their directory names)")
    p.add_argument("--threads", type=int, default=2,
                   help="tensors measured at once (memory: about threads + 1 tensors of every model)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def json_path(out: Path) -> Path:
    """--json OUT: a .json file, or a directory that gets inspect.json."""
    from mergesmith.report.inspect import JSON_NAME

    return out if out.suffix == ".json" else out / JSON_NAME


def run(args: argparse.Namespace) -> int:
    from mergesmith.errors import OptionsError, OutputError
    from mergesmith.io.target import check_output_file
    from mergesmith.report.inspect import inspect_models, summary_text

    if args.threads < 1:
        raise OptionsError(f"--threads {args.threads}: must be at least 1", hint="e.g. --threads 2")
    if args.json:  # before measuring: never into a model folder, never over an input
        inputs = [(str(m), m) for m in [args.base, *args.models]]
        check_output_file(json_path(args.json), inputs, what="--json", suffix=".json", make_parents=True)
    labels = [x.strip() for x in args.labels.split(",")] if args.labels else None
    data = inspect_models(args.base, args.models, labels=labels, densities=args.density,
                          progress=False if args.quiet else None, threads=args.threads)
    print(summary_text(data))
    if args.json:
        path = json_path(args.json)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write the statistics: {exc.strerror or exc}",
                              hint="choose a writable --json location") from None
        print(f"wrote {path}")
    return 0
