"""See what a merge does: task-vector statistics (`mergesmith inspect`) and an HTML report.

    inspect_models(base, models, densities=...) -> dict   # report/inspect.py, the inspect JSON
    write_report(directory, out=None) -> Path              # report/html.py, a self-contained page

Imported lazily: torch is reached only when tensors are read, matplotlib only when a report
is drawn, so `mergesmith --help` loads neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def inspect_models(*args: Any, **kwargs: Any) -> dict[str, Any]:
    from mergesmith.report.inspect import inspect_models as run

    return run(*args, **kwargs)


def write_report(merged_dir: Path, out: Path | None = None) -> Path:
    """Write report.html for a merged output directory (or an inspect output); return its path."""
    from mergesmith.report.html import write_report as run

    return run(Path(merged_dir), out)


__all__ = ["inspect_models", "write_report"]
