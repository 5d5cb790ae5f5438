"""`python -m mergesmith.datamerge RECIPE OUT [--cache-dir DIR] [--device cpu|cuda]`."""

from __future__ import annotations

import argparse
import sys

from mergesmith.errors import MergeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mergesmith.datamerge",
                                     description="compute calibration statistics, then merge (fisher, regmean)")
    parser.add_argument("recipe")
    parser.add_argument("out")
    parser.add_argument("--cache-dir", default=None, help="statistics cache (default: OUT/../.mergesmith-stats)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-examples", type=int, default=256)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    from mergesmith.datamerge.prepare import merge_with_stats

    try:
        result = merge_with_stats(args.recipe, args.out, cache_dir=args.cache_dir, device=args.device,
                                  overwrite=args.overwrite, max_examples=args.max_examples,
                                  max_tokens=args.max_tokens)
    except MergeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if type(exc).__name__ in ("RecipeError", "OptionsError") else 1
    print(f"merged {result.tensors} tensors into {result.out_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
