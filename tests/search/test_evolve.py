from __future__ import annotations

import json

import pytest
import torch
from factory import load_tensors
from search_helpers import evaluators, write_config

from mergesmith.api import merge, merge_state_dicts
from mergesmith.cli.main import main
from mergesmith.search.config import load_evolve_config
from mergesmith.search.resident import Resident

pytest.importorskip("cma", reason="evolve needs the cma package")


def _config(family, tmp_path, name, **extra):
    data = {"base_model": str(family["base"]), "models": [str(family["a"]), str(family["b"])],
            "output": str(tmp_path / name), "max_evals": 13, "population": 6, "seed": 3,
            **evaluators(family["root"]), **extra}
    return write_config(tmp_path / f"{name}.yaml", data)


def test_evolve_beats_default_and_reproduces(family, tmp_path, capsys):
    cfg = _config(family, tmp_path, "ta", method="task_arithmetic", layer_groups=2,
                  filters=["self_attn"], allow_negative_weights=True, sigma=0.5)
    assert main(["evolve", str(cfg)]) == 0
    out_dir = tmp_path / "ta"
    report = json.loads((out_dir / "report.json").read_text())
    assert report["evals"] == 13
    assert report["best_search"] > report["default_search"]
    assert "perplexity" in report["best_final"]["final"]  # held-out scores are reported
    assert (out_dir / "progress.png").stat().st_size > 0
    # The written best recipe is plain: `merge` reproduces the tensors the search scored.
    recipe = (out_dir / "best.yaml").read_text()
    merge(out_dir / "best.yaml", tmp_path / "merged", seed=3)
    config = load_evolve_config(cfg)
    res = Resident([config.base_model, *config.models], config.search)
    memory = merge_state_dicts(recipe, res.state_dicts, res.configs, seed=3)
    disk = load_tensors(tmp_path / "merged")
    assert all(torch.equal(memory[k], disk[k]) for k in disk)


def test_resume_continues(family, tmp_path):
    cfg = _config(family, tmp_path, "res", method="ties", max_evals=7)
    assert main(["evolve", str(cfg)]) == 0
    assert main(["evolve", str(cfg), "--resume", "--max-evals", "13"]) == 0
    report = json.loads((tmp_path / "res" / "report.json").read_text())
    assert report["evals"] == 13
    # The state is JSON (no pickle), and replaying it gives the very search never interrupted.
    state = json.loads((tmp_path / "res" / "state.json").read_text())
    assert not list((tmp_path / "res").glob("*.pkl"))
    straight = _config(family, tmp_path, "straight", method="ties", max_evals=13)
    assert main(["evolve", str(straight)]) == 0
    alone = json.loads((tmp_path / "straight" / "state.json").read_text())
    assert [h["scores"] for h in state["history"]] == [h["scores"] for h in alone["history"]]
    assert state["generations"] == alone["generations"]
    assert (tmp_path / "res" / "best.yaml").read_text() == (tmp_path / "straight" / "best.yaml").read_text()
    # A state from another search (here: another seed) is refused, not silently mixed in.
    assert main(["evolve", str(cfg), "--resume", "--seed", "4"]) == 2


def test_ray_two_workers_same_best(family, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (extra: distributed)")
    serial = _config(family, tmp_path, "serial", method="linear", max_evals=7)
    parallel = _config(family, tmp_path, "par", method="linear", max_evals=7)
    assert main(["evolve", str(serial)]) == 0
    assert main(["evolve", str(parallel), "--workers", "2"]) == 0
    a = (tmp_path / "serial" / "best.yaml").read_text()
    b = (tmp_path / "par" / "best.yaml").read_text()
    assert a == b


def test_ray_address_joins_existing_cluster(family, tmp_path):
    """--ray-address: a separate `mergesmith evolve` process joins a cluster this test started."""
    ray = pytest.importorskip("ray", reason="ray is not installed (extra: distributed)")
    import subprocess
    import sys

    cfg = _config(family, tmp_path, "joined", method="linear", max_evals=7)
    serial = _config(family, tmp_path, "alone", method="linear", max_evals=7)
    assert main(["evolve", str(serial)]) == 0
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        address = ray.get_runtime_context().gcs_address
        done = subprocess.run([sys.executable, "-m", "mergesmith", "evolve", str(cfg),
                               "--workers", "2", "--ray-address", address],
                              capture_output=True, text=True, timeout=300)
    finally:
        ray.shutdown()
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "joined" / "best.yaml").read_text() == \
        (tmp_path / "alone" / "best.yaml").read_text()
