from __future__ import annotations

from pathlib import Path

from mergesmith.search.config import load_evolve_config, load_soup_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "search"


def test_example_configs_validate():
    soup = load_soup_config(EXAMPLES / "soup.yaml")
    evolve = load_evolve_config(EXAMPLES / "evolve.yaml")
    dataflow = load_evolve_config(EXAMPLES / "evolve-dataflow.yaml")
    assert soup.mode == "greedy" and len(soup.models) == 4
    assert evolve.method == "ties" and dataflow.space == "dataflow"
    # `~` is expanded: the paths are where `mergesmith demo --build-only` puts the family.
    home = str(Path.home())
    assert soup.models[0] == f"{home}/.cache/mergesmith/demo/full/experts/add"
    assert dataflow.search[0].tasks["count"].startswith(home)
    for config in (soup, evolve, dataflow):  # held-out data is a separate input
        assert config.final and config.search


def test_help_imports_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys; from mergesmith.cli.main import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'cma', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("[]")
