"""Adapters extracted from the tiny Llama family (tests/conftest.py's `llama`), imported by the LoRA tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from mergesmith.lora import extract_lora


@pytest.fixture(scope="session", name="full_adapter")
def full_adapter_fixture(llama: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a - base at full rank (32 = the hidden size): exact up to float rounding."""
    out = tmp_path_factory.mktemp("adapters") / "full"
    extract_lora(str(llama["a"]), str(llama["base"]), out, rank=32)
    return out


@pytest.fixture(scope="session", name="rank4_adapter")
def rank4_adapter_fixture(llama: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapters") / "rank4"
    extract_lora(str(llama["a"]), str(llama["base"]), out, rank=4)
    return out
