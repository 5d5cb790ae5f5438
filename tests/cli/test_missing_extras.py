"""A missing optional extra ends in a clear message naming the extra, not an internal error.

Each command runs in a fresh interpreter where the package is hidden (a `None` entry in
sys.modules makes `import` raise ImportError, as when it is not installed).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CODE = """import sys
sys.modules[{package!r}] = None
from mergesmith.cli.main import main
sys.exit(main({argv!r}))
"""


def run_without(package: str, *argv: str) -> subprocess.CompletedProcess:
    code = CODE.format(package=package, argv=[str(a) for a in argv])
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_merge_report_without_matplotlib_fails_before_merging(llama: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"models:\n  - model: {llama['a']}\n    parameters: {{weight: 1}}\n"
                      f"  - model: {llama['b']}\n    parameters: {{weight: 1}}\nmerge_method: linear\n")
    done = run_without("matplotlib", "merge", recipe, tmp_path / "out", "--report")
    assert done.returncode == 2, done.stderr
    assert "merge --report needs matplotlib" in done.stderr
    assert "pip install 'mergesmith[report]'" in done.stderr
    assert "internal error" not in done.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, what", [
    (["demo", "--quick"], "mergesmith demo (its report.html) needs matplotlib"),
    (["evolve", "missing.yaml"], "evolve (its progress.png) needs matplotlib"),
    (["report", "missing"], "mergesmith report needs matplotlib"),
])
def test_plots_without_matplotlib(tmp_path: Path, argv: list[str], what: str) -> None:
    if argv[0] == "demo":
        argv = [*argv, "--workdir", str(tmp_path / "family")]
    done = run_without("matplotlib", *argv)
    assert done.returncode == 2, done.stderr
    assert what in done.stderr and "pip install 'mergesmith[report]'" in done.stderr
    assert "internal error" not in done.stderr
    assert not (tmp_path / "family").exists()  # the demo stops before building anything


def test_evolve_without_cma_names_the_search_extra() -> None:
    done = run_without("cma", "evolve", "missing.yaml")
    assert done.returncode == 2
    assert "evolve needs cma" in done.stderr and "pip install 'mergesmith[search]'" in done.stderr
