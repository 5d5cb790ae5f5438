"""Evaluations per minute of `mergesmith evolve`: in-process vs 2 local Ray workers.

Tiny llama family from tests/factory.py, perplexity objective; same seed and budget for both,
and the best recipes are checked equal. Prints a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from factory import make_family  # noqa: E402

from mergesmith.search.config import EvolveConfig  # noqa: E402
from mergesmith.search.evolve import Search  # noqa: E402


def _config(root: Path, models: dict[str, Path], out: str, evals: int) -> EvolveConfig:
    return EvolveConfig.model_validate({
        "base_model": str(models["base"]), "models": [str(models["a"]), str(models["b"])],
        "method": "ties", "layer_groups": 2, "output": str(root / out), "max_evals": evals,
        "population": 8, "search": [{"type": "perplexity", "path": str(root / "text.txt")}]})


def main(evals: int = 33) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-search-"))
    models = make_family(root, "llama", layers=4)
    (root / "text.txt").write_text("the quick brown fox jumps over the lazy dog. " * 40)
    rows = []
    for label, workers in (("serial (in-process)", 0), ("Ray, 2 workers", 2)):
        search = Search(_config(root, models, label.split()[0].strip(","), evals), workers)
        start = time.perf_counter()  # setup (loading, starting Ray) excluded: steady state
        report = search.run()
        minutes = (time.perf_counter() - start) / 60
        rows.append((label, report.evals, minutes, report.best_search))
    print("| backend | evaluations | wall (s) | evaluations/min | best objective |")
    print("|---|---|---|---|---|")
    for label, n, minutes, best in rows:
        print(f"| {label} | {n} | {minutes * 60:.1f} | {n / minutes:.1f} | {best:.5f} |")
    same = (root / "serial" / "best.yaml").read_text() == (root / "Ray" / "best.yaml").read_text()
    print(f"\nsame best recipe serial and parallel: {same}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 33)
