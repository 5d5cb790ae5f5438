"""The compatibility tests' inputs, built once per session and checked against the goldens' hashes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from compat_compare import GOLDEN, REGENERATE, input_pool
from compat_inputs import build_inputs, input_hashes
from safetensors.torch import load_file


@pytest.fixture(scope="session")
def golden() -> dict:
    return json.loads((GOLDEN / "index.json").read_text())


@pytest.fixture(scope="session")
def compat_models(tmp_path_factory: pytest.TempPathFactory, golden: dict) -> Path:
    """The input models, byte for byte those the goldens were made from (else every test fails)."""
    root = tmp_path_factory.mktemp("compat") / "models"
    build_inputs(root)
    ours, theirs = input_hashes(root), golden["inputs"]
    changed = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if changed:
        pytest.fail(f"the compatibility inputs differ from those the goldens were made from ({len(changed)} files, "
                    f"e.g. {changed[:3]}): if compat_inputs.py changed on purpose, regenerate goldens with {REGENERATE}")
    return root


@pytest.fixture(scope="session")
def golden_pool(compat_models: Path) -> dict[str, torch.Tensor]:
    """mergekit's output tensors by sha256: golden/outputs.safetensors and the inputs."""
    return {**input_pool(compat_models), **load_file(GOLDEN / "outputs.safetensors")}
