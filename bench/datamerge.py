"""Per-skill accuracy of the data-aware merges (fisher, regmean) next to data-free ones on the
demo family of tiny skill experts.

    python bench/datamerge.py --demo [--write] [--limit N] [--device cpu]
    python bench/datamerge.py --quick            # the quick family (tests' size)

The family is the one `mergesmith demo` builds (cached in ~/.cache/mergesmith/demo/full or
.../quick; built on first use). All four experts are merged into one model by each method,
through `mergesmith.merge` exactly as `mergesmith merge RECIPE OUT` runs it: fisher and regmean
use each expert's calibration text from the demo (`family.calibration[skill]`), with a fresh
statistics cache so their times include computing the statistics. Each merge, the base and the
experts are scored by exact match on every skill's held-out test set. Prints a Markdown table;
--write puts it into bench/RESULTS.md (section `datamerge`).
"""

from __future__ import annotations

import argparse
import platform
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results import write_section  # noqa: E402

from mergesmith.api import merge  # noqa: E402
from mergesmith.cli.cmd_demo import default_workdir  # noqa: E402
from mergesmith.demo import Family, build_family  # noqa: E402
from mergesmith.evaluate import ExactMatchEvaluator  # noqa: E402


def recipes(family: Family) -> dict[str, dict[str, Any]]:
    """name -> recipe over every expert: equal weights; the data-free methods at the values of
    `mergesmith demo --quick` (lambda 1, density 0.5), the data-aware ones at their defaults."""
    experts = [str(family.experts[s]) for s in family.skills]
    base = str(family.base)

    def over_base(method: str, per_model: dict[str, float]) -> dict[str, Any]:
        return {"merge_method": method, "base_model": base,
                "models": [{"model": m, "parameters": dict(per_model)} for m in experts]}

    def calibrated(method: str, **shared: Any) -> dict[str, Any]:
        models = [{"model": str(family.experts[s]), "parameters": {"calibration": str(family.calibration[s])}}
                  for s in family.skills]
        return {"merge_method": method, "models": models, **({"parameters": shared} if shared else {})}

    return {
        "linear": {"merge_method": "linear", "models": [{"model": m, "parameters": {"weight": 1.0}}
                                                         for m in experts]},
        "task_arithmetic λ=1": over_base("task_arithmetic", {"weight": 1.0}),
        "ties λ=1 d=0.5": over_base("ties", {"weight": 1.0, "density": 0.5}),
        "dare_ties λ=1 d=0.5": over_base("dare_ties", {"weight": 1.0, "density": 0.5}),
        "fisher": calibrated("fisher"),
        "regmean α=0.9": calibrated("regmean"),
        "regmean α=1": calibrated("regmean", alpha=1.0),
        "regmean α=0.9, fallback ties": {**calibrated("regmean", fallback="ties"), "base_model": base},
    }


Row = tuple[str, dict[str, float], float]


def run(family: Family, workdir: Path, *, limit: int | None, device: str) -> list[Row]:
    evaluator = ExactMatchEvaluator({s: family.test_sets[s] for s in family.skills}, limit=limit, device=device)
    rows: list[Row] = [("base", evaluator.evaluate(str(family.base)), 0.0)]
    for skill in family.skills:
        rows.append((f"expert:{skill}", evaluator.evaluate(str(family.experts[skill])), 0.0))
    stats = workdir / "stats"
    shutil.rmtree(stats, ignore_errors=True)  # fresh: the times include computing statistics
    for name, recipe in recipes(family).items():
        slug = re.sub(r"[^a-z0-9.]+", "_", name.replace("λ", "lambda").replace("α", "alpha"))
        out = workdir / "merged" / slug
        start = time.perf_counter()
        merge(recipe, out, device=device, overwrite=True, stats_dir=stats)
        seconds = time.perf_counter() - start
        rows.append((name, evaluator.evaluate(str(out)), seconds))
        print(f"{name}: {seconds:.1f} s  " + "  ".join(f"{k} {v:.3f}" for k, v in rows[-1][1].items()), flush=True)
    return rows


def table(rows: list[Row], skills: list[str]) -> str:
    head = "| model | " + " | ".join(skills) + " | mean | merge s (incl. statistics) |"
    lines = [head, "|" + "---|" * (len(skills) + 3)]
    for name, scores, seconds in rows:
        cells = [f"{scores[f'exact_match/{s}']:.3f}" for s in skills]
        timing = f"{seconds:.1f}" if seconds else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {scores['exact_match/mean']:.3f} | {timing} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--demo", action="store_true", help="the full demo family (the default)")
    kind.add_argument("--quick", action="store_true", help="the quick demo family (less accurate experts)")
    parser.add_argument("--family", type=Path, default=None, help="family folder (default: the demo's cache)")
    parser.add_argument("--workdir", type=Path, default=Path("~/.cache/mergesmith/bench-datamerge").expanduser())
    parser.add_argument("--limit", type=int, default=None, help="examples per skill (default: all)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args()
    family_dir = args.family or default_workdir() / ("quick" if args.quick else "full")
    family = build_family(family_dir, quick=args.quick)
    workdir = args.workdir.expanduser().resolve() / ("quick" if args.quick else "full")
    start = time.perf_counter()
    rows = run(family, workdir, limit=args.limit, device=args.device)
    skills = list(family.skills)
    import torch

    note = (f"`python bench/datamerge.py {'--quick' if args.quick else '--demo'}"
            f"{f' --limit {args.limit}' if args.limit else ''}{' --write' if args.write else ''}`; "
            f"{'quick' if args.quick else 'full'} demo family ({family_dir}), all four experts merged "
            f"with equal weights; exact match on the held-out test sets "
            f"({f'first {args.limit}' if args.limit else 'all'} examples per skill); {args.device}, "
            f"{platform.machine()} with 2 cores shared with other jobs, torch {torch.__version__}; "
            f"{time.perf_counter() - start:.0f} s in all.")
    text = table(rows, skills)
    print(note)
    print(text)
    if args.write:
        write_section("datamerge", "Data-aware merges on the demo family (bench/datamerge.py)", f"{note}\n\n{text}\n")


if __name__ == "__main__":
    main()
