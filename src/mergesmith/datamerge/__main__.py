"""`python -m mergesmith.datamerge RECIPE OUT [--cache-dir DIR] [--device cpu|cuda]`.

An alias kept for older scripts: `mergesmith merge RECIPE OUT [--stats-dir DIR]` does the same
(statistics first, then the merge). --max-examples/--max-tokens override the recipe's
`max_examples`/`max_tokens` parameters.
"""

from __future__ import annotations

import argparse
import sys

from mergesmith.errors import MergeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mergesmith.datamerge",
                                     description="compute calibration statistics, then merge (fisher, regmean); "
                                                 "same as `mergesmith merge RECIPE OUT`")
    parser.add_argument("recipe")
    parser.add_argument("out")
    parser.add_argument("--cache-dir", default=None,
                        help="statistics cache (default $MERGESMITH_STATS_DIR or ~/.cache/mergesmith/stats)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-examples", type=int, default=None)
    parser.add_argument("--max-tokens", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    from mergesmith.datamerge.prepare import merge_with_stats

    settings = {k: v for k, v in (("max_examples", args.max_examples), ("max_tokens", args.max_tokens))
                if v is not None}
    try:
        result = merge_with_stats(args.recipe, args.out, cache_dir=args.cache_dir, device=args.device,
                                  overwrite=args.overwrite, **settings)
    except MergeError as exc:
        print(f"error: {exc.render()}", file=sys.stderr)
        return exc.exit_code
    print(f"merged {result.tensors} tensors into {result.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
