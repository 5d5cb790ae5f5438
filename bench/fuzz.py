"""A longer fuzz run than the test suite's: generated recipes, YAML text and safetensors headers.
Counts the cases tried and any exception that is not one of mergesmith's own errors.

    python bench/fuzz.py [--examples 5000] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "recipe"))

from test_fuzz import ENTRY, VALUES, recipes  # noqa: E402

from mergesmith.errors import MergeError  # noqa: E402
from mergesmith.io.safetensors_format import read_header  # noqa: E402
from mergesmith.recipe import load_recipes  # noqa: E402

counts = {"recipes": 0, "yaml": 0, "headers": 0}
crashes: list[str] = []


def _guard(kind: str, fn, *args) -> None:
    counts[kind] += 1
    try:
        fn(*args)
    except MergeError:
        pass
    except Exception:  # what the fuzzer looks for: anything that is not our own error
        crashes.append(f"{kind}: {args!r}\n{traceback.format_exc()}")


def run(examples: int) -> None:
    opts = settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    tmp = Path(tempfile.mkdtemp())

    @opts
    @given(recipes())
    def fuzz_recipes(recipe: dict) -> None:
        _guard("recipes", load_recipes, recipe)

    @opts
    @given(st.text(max_size=300))
    def fuzz_yaml(text: str) -> None:
        _guard("yaml", load_recipes, text)

    @opts
    @given(st.dictionaries(st.text(min_size=1, max_size=6), st.one_of(ENTRY, VALUES), max_size=5),
           st.binary(max_size=256), st.one_of(st.none(), st.integers(0, 2**64 - 1)))
    def fuzz_headers(header: dict, data: bytes, declared: int | None) -> None:
        raw = json.dumps(header).encode()
        path = tmp / "m.safetensors"
        path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
        _guard("headers", read_header, path)

    fuzz_recipes()
    fuzz_yaml()
    fuzz_headers()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    start = time.perf_counter()
    run(args.examples)
    took = time.perf_counter() - start
    total = sum(counts.values())
    text = (f"{total} cases tried in {took:.0f} s ({counts['recipes']} recipes, {counts['yaml']} YAML texts, "
            f"{counts['headers']} safetensors headers): {len(crashes)} unhandled exceptions.")
    print(text)
    for crash in crashes[:5]:
        print(crash)
    if args.write_results:
        from results import write_section

        write_section("fuzz", "Fuzzing (bench/fuzz.py)", text)

if __name__ == "__main__":
    main()
