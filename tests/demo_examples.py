"""The examples/ configs name the demo family where `mergesmith demo --build-only` puts it;
tests point them at the session's quick family instead (and ./adapters/... at test adapters)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

EXAMPLES = Path(__file__).parents[1] / "examples"
DEMO_DIR = "~/.cache/mergesmith/demo/full"


def pointed(example: Path, family, adapters: Path | None = None) -> str:
    """The example's text with the demo directory replaced by `family.root` (and ./adapters by `adapters`)."""
    text = example.read_text()
    assert DEMO_DIR in text, f"{example} does not name the demo family"
    text = text.replace(DEMO_DIR, str(family.root))
    if adapters is not None:
        text = text.replace("./adapters", str(adapters))
    return text


def pointed_config(example: Path, family, adapters: Path | None = None) -> dict:
    return yaml.safe_load(pointed(example, family, adapters))


def held_out_prompts(family, count: int) -> list[list[str]]:
    """The first `count` test-set prompts of every skill, in the family's skill order."""
    from mergesmith.evaluate.exact_match import load_examples

    return [[ex.prompt for ex in load_examples(family.test_sets[s])[:count]] for s in family.skills]


@pytest.fixture(scope="module", name="one_thread")
def one_thread_fixture():
    """Hundreds of tiny forward passes: on shared cores one torch thread ran them 6-30x faster
    than two (measured: 8 ms against 46 ms per routing pass, load average 3)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
