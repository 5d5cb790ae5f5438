"""`mergesmith report DIR [--out report.html]`: a self-contained HTML report with plots."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", type=Path, metavar="DIR",
                   help="a merged model directory (with mergesmith_manifest.json), an inspect output "
                        "directory (with inspect.json), or an inspect JSON file")
    p.add_argument("--out", type=Path, help="where to write the page (default: DIR/report.html)")


def run(args: argparse.Namespace) -> int:
    from mergesmith.io.target import check_output_file
    from mergesmith.report import write_report
    from mergesmith.report.plots import require_matplotlib

    require_matplotlib("mergesmith report")
    if args.out is not None:  # a page of its own: never over a model's or anyone's file
        check_output_file(args.out, what="--out", suffix=".html", make_parents=True)
    path = write_report(args.directory, args.out)
    print(f"wrote {path}")
    return 0
