"""Session-wide fixtures: tiny checkpoints of several families, generated on the fly.

`quick_family` is the demo's quick family (trained on the CPU, about 80 s), built once per
session and shared by every test folder; MERGESMITH_TEST_DEMO_DIR keeps it across sessions
(for development).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from factory import make_family  # noqa: E402


@pytest.fixture(scope="session")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def llama(models_root: Path) -> dict[str, Path]:
    return make_family(models_root, "llama")


@pytest.fixture(scope="session", params=["mistral", "qwen2", "gemma", "phi3", "gpt2"])
def family(request: pytest.FixtureRequest, models_root: Path) -> dict[str, Path]:
    return make_family(models_root, request.param)



@pytest.fixture(scope="session")
def quick_family(tmp_path_factory: pytest.TempPathFactory):
    from mergesmith.demo import build_family

    root = os.environ.get("MERGESMITH_TEST_DEMO_DIR")
    workdir = Path(root) if root else tmp_path_factory.getbasetemp() / "demo-family-quick"
    return build_family(workdir, quick=True)


@pytest.fixture(scope="session")
def quick_base(quick_family):
    from mergesmith.evaluate import load_model

    return load_model(quick_family.base, device="cpu")
