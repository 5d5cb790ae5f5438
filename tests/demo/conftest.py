"""The quick demo family, built once per session (shared by tests/demo and tests/evaluate).

Both conftests build into the same directory, so the second fixture finds the first's
family in the cache. MERGESMITH_TEST_DEMO_DIR keeps it across sessions (for development).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mergesmith.demo import Family, build_family
from mergesmith.evaluate import LoadedModel, load_model


@pytest.fixture(scope="session")
def quick_family(tmp_path_factory: pytest.TempPathFactory) -> Family:
    root = os.environ.get("MERGESMITH_TEST_DEMO_DIR")
    workdir = Path(root) if root else tmp_path_factory.getbasetemp() / "demo-family-quick"
    return build_family(workdir, quick=True)


@pytest.fixture(scope="session")
def quick_base(quick_family: Family) -> LoadedModel:
    return load_model(quick_family.base, device="cpu")
