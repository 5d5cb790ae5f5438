from __future__ import annotations

from pathlib import Path

from mergesmith.search.config import load_evolve_config, load_soup_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "search"


def test_example_configs_validate():
    soup = load_soup_config(EXAMPLES / "soup.yaml")
    evolve = load_evolve_config(EXAMPLES / "evolve.yaml")
    assert soup.mode == "greedy" and len(soup.models) == 3
    assert evolve.method == "ties" and evolve.filters == ["self_attn", "mlp"]
    assert evolve.final and evolve.search  # held-out data is a separate input


def test_help_imports_no_heavy_modules():
    import subprocess
    import sys

    code = ("import sys; from mergesmith.cli.main import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'cma', 'ray') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().endswith("[]")
