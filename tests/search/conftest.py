"""Tiny llama family (base, two small fine-tunes, one badly damaged one) and a perplexity text."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def family(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from factory import load_tensors, make_family, make_model

    root = tmp_path_factory.mktemp("search")
    models = make_family(root, "llama", layers=2)
    base = load_tensors(models["base"])
    models["bad"] = root / "llama" / "bad"
    make_model(models["bad"], "llama", layers=2, seed=7, base=base, noise=0.5)
    (root / "search.txt").write_text("the cat sat on the mat. " * 6)
    (root / "final.txt").write_text("a dog ran in the park. " * 6)
    models["root"] = root
    return models
