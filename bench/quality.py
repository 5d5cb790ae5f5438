"""The demo's full grid: per-skill accuracy of the base, the experts and every merge, written to
bench/RESULTS.md with the build and run times.

    python bench/quality.py                  # the default family (~/.cache/mergesmith/demo/full)
    python bench/quality.py --workdir DIR    # another (or a fresh) family directory
    python bench/quality.py --fresh          # rebuild in a temporary directory (first-run time)

Run on a quiet machine: both figures are wall times on this machine's 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results import write_section  # noqa: E402


def _timed_demo(workdir: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "mergesmith", "demo", "--workdir", str(workdir)],
                         capture_output=True, text=True, check=True)
    return time.perf_counter() - start, out.stdout


def _family_figures(workdir: Path) -> str:
    """The family's own targets: base / expert per skill, relative task-vector norms."""
    results = json.loads((workdir / "results.json").read_text())
    manifest = json.loads((workdir / "family.json").read_text())
    rows = {m["name"]: m["accuracy"] for m in results["models"]}
    ratios = ", ".join(f"{s} {rows['base'][s] / max(rows[f'expert:{s}'][s], 1e-9):.2f}"
                       for s in results["skills"])
    deltas = ", ".join(f"{s} {e['relative_delta']:.3f}" for s, e in manifest["experts"].items())
    return (f"Base ÷ expert per skill (target 0.10-0.60): {ratios}. Relative task-vector norm "
            f"‖Δ‖/‖base‖ (target ≤ 0.05): {deltas}. Family build: "
            f"{manifest['timings']['total_s']:.0f} s.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--fresh", action="store_true", help="build the family from scratch first")
    args = parser.parse_args()
    from mergesmith.cli.cmd_demo import default_workdir

    lines = [f"Load average before the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."]
    if args.fresh:
        with tempfile.TemporaryDirectory() as tmp:
            first, _ = _timed_demo(Path(tmp) / "family")
            cached, stdout = _timed_demo(Path(tmp) / "family")
            family = _family_figures(Path(tmp) / "family")
        lines.append(f"First run (family built from scratch, then the grid): **{first:.0f} s**; "
                     f"second run (cached family): **{cached:.0f} s** (targets: 360 s and 60 s).")
    else:
        workdir = args.workdir or default_workdir() / "full"
        cached, stdout = _timed_demo(workdir)
        family = _family_figures(workdir)
        lines.append(f"`mergesmith demo` with the family cached: **{cached:.0f} s** (target 60 s).")
    lines.append(family)
    table = stdout[stdout.index("| model |"): stdout.index("\nresults:")].strip()
    body = "\n".join(lines) + (
        "\n\nPer-skill exact-match accuracy on the held-out test sets (200 examples per skill); "
        "normalised = mean over skills of accuracy / that skill's expert accuracy. "
        "Every expert gets weight 1.0; methods not in the lambda/density grid run at the "
        "parameters their docs suggest.\n\n" + table
    )
    write_section("quality", "Demo family: merge quality (bench/quality.py)", body)
    print(body)


if __name__ == "__main__":
    main()
