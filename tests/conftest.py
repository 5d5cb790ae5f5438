"""Session-wide fixtures: tiny checkpoints of several families, generated on the fly."""

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

