"""Per-skill accuracy of data-aware merges (fisher, regmean) next to linear and TIES on the
demo family of tiny skill experts.

    python bench/datamerge.py [--quick] [--workdir DIR] [--limit N] [--device cpu]

Every expert is merged into one model by each method (fisher and regmean use each expert's
calibration text from the demo); each merge, the base and the experts are scored by exact
match on every skill's held-out test set. Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path
from typing import Any

from mergesmith.api import merge
from mergesmith.datamerge.prepare import merge_with_stats
from mergesmith.demo import Family, build_family
from mergesmith.evaluate import ExactMatchEvaluator


def recipes(family: Family) -> dict[str, dict[str, Any]]:
    """One recipe per method over every expert (equal weights, the methods' defaults)."""
    experts = [str(family.experts[s]) for s in family.skills]
    n = len(experts)
    return {
        "linear": {"merge_method": "linear", "models": [{"model": m, "parameters": {"weight": 1.0 / n}}
                                                         for m in experts]},
        "ties": {"merge_method": "ties", "base_model": str(family.base),
                 "models": [{"model": m, "parameters": {"weight": 1.0, "density": 0.5}} for m in experts]},
        "fisher": {"merge_method": "fisher", "models": _calibrated(family)},
        "regmean": {"merge_method": "regmean", "models": _calibrated(family)},
    }


def _calibrated(family: Family) -> list[dict[str, Any]]:
    return [{"model": str(family.experts[s]), "parameters": {"calibration": str(family.calibration[s])}}
            for s in family.skills]


def run(workdir: Path, *, quick: bool, limit: int | None, device: str) -> list[tuple[str, dict[str, float], float]]:
    family = build_family(workdir / "family", quick=quick)
    evaluator = ExactMatchEvaluator({s: family.test_sets[s] for s in family.skills}, limit=limit, device=device)
    rows = [("base", evaluator.evaluate(str(family.base)), 0.0)]
    for skill in family.skills:
        rows.append((f"expert:{skill}", evaluator.evaluate(str(family.experts[skill])), 0.0))
    for method, recipe in recipes(family).items():
        out = workdir / "merged" / method
        start = time.perf_counter()
        if method in ("fisher", "regmean"):
            merge_with_stats(recipe, out, base_dir=workdir, device=device, overwrite=True,
                             cache_dir=workdir / "merged" / ".mergesmith-stats")
        else:
            merge(recipe, out, base_dir=workdir, device=device, overwrite=True)
        rows.append((method, evaluator.evaluate(str(out)), time.perf_counter() - start))
    return rows


def table(rows: list[tuple[str, dict[str, float], float]], skills: list[str]) -> str:
    head = "| model | " + " | ".join(skills) + " | mean | merge s (incl. statistics) |"
    lines = [head, "|" + "---|" * (len(skills) + 3)]
    for name, scores, seconds in rows:
        cells = [f"{scores[f'exact_match/{s}']:.3f}" for s in skills]
        timing = f"{seconds:.1f}" if seconds else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {scores['exact_match/mean']:.3f} | {timing} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("~/.cache/mergesmith/bench-datamerge").expanduser())
    parser.add_argument("--quick", action="store_true", help="the quick demo family (less accurate experts)")
    parser.add_argument("--limit", type=int, default=None, help="examples per skill")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    workdir = args.workdir.expanduser().resolve()
    rows = run(workdir, quick=args.quick, limit=args.limit, device=args.device)
    skills = [k.split("/", 1)[1] for k in rows[0][1] if not k.endswith("/mean")]
    print(f"demo family ({'quick' if args.quick else 'full'}), {platform.processor() or platform.machine()}, "
          f"exact match on held-out test sets{f' (first {args.limit} per skill)' if args.limit else ''}")
    print(table(rows, skills))


if __name__ == "__main__":
    main()
