"""Fuzzing: generated recipes and safetensors headers only ever raise mergesmith's own errors.
A longer run lives in bench/fuzz.py."""

from __future__ import annotations

import contextlib
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mergesmith.errors import MergeError
from mergesmith.io.safetensors_format import read_header
from mergesmith.recipe import load_recipes

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=8))
KEYS = st.sampled_from(["models", "slices", "merge_method", "base_model", "parameters", "dtype", "out_dtype",
                        "tokenizer_source", "tokenizer", "modules", "text_decoder", "chat_template", "name", "sources", "layer_range", "model",
                        "weight", "density", "t", "filter", "value", "lambda", "normalize", "wieght", "bogus"])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(KEYS, inner, max_size=4)), max_leaves=12)
METHODS = st.sampled_from(["linear", "slerp", "ties", "task_arithmetic", "passthrough", "dare_ties", "nope"])


@st.composite
def recipes(draw: st.DrawFn) -> dict:
    recipe = draw(st.dictionaries(KEYS, VALUES, max_size=6))
    if draw(st.booleans()):
        recipe["merge_method"] = draw(METHODS)
    if draw(st.booleans()):
        recipe["models"] = draw(st.lists(st.fixed_dictionaries(
            {"model": st.sampled_from(["a", "b", "c"])},
            optional={"parameters": st.dictionaries(KEYS, VALUES, max_size=3)}), max_size=3))
    return recipe


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(recipes())
def test_generated_recipes_raise_only_our_errors(recipe: dict) -> None:
    with contextlib.suppress(MergeError):
        load_recipes(recipe)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_yaml_text_raises_only_our_errors(text: str) -> None:
    with contextlib.suppress(MergeError):
        load_recipes(text)


ENTRY = st.fixed_dictionaries({
    "dtype": st.one_of(st.sampled_from(["F32", "BF16", "F16", "I8", "Q4"]), st.integers()),
    "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=3), st.text(max_size=3)),
    "data_offsets": st.one_of(st.lists(st.integers(-10, 200), min_size=0, max_size=3), st.none()),
})


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(header=st.dictionaries(st.text(min_size=1, max_size=6), st.one_of(ENTRY, VALUES), max_size=4),
       data=st.binary(max_size=128), declared=st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_generated_headers_raise_only_our_errors(tmp_path_factory: pytest.TempPathFactory, header: dict,
                                                 data: bytes, declared: int | None) -> None:
    raw = json.dumps(header).encode()
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if declared is None else declared) + raw + data)
    try:
        tensors, _ = read_header(path)
    except MergeError:
        return
    size = path.stat().st_size
    for meta in tensors.values():  # what is accepted is consistent
        assert 0 <= meta.start <= meta.end <= size


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_merge_runs_without_a_network(llama: dict[str, Path], tmp_path: Path) -> None:
    """Local merges never touch the network: run one in a network namespace with no interfaces."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot create a network namespace here (needs root or user namespaces)")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"models:\n  - model: {llama['a']}\n    parameters: {{weight: 1}}\n"
                      f"  - model: {llama['b']}\n    parameters: {{weight: 1}}\nmerge_method: linear\n")
    proc = subprocess.run(["unshare", "-n", sys.executable, "-m", "mergesmith", "merge", str(recipe),
                           str(tmp_path / "out"), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.safetensors").exists()
