"""The numpy path (engine/numpy_path.py, methods/arrays.py) writes the bytes the torch path does.

Float32 arithmetic on numpy reproduces torch's, including its fused multiply-add, which rounds
once where numpy's `a + w * x` rounds twice; the float64 emulation is exact but for sums that
land on a float32 halfway point, which are constructed here by hand.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import mergesmith.methods.arrays as arrays
from mergesmith.api import plan
from mergesmith.engine import numpy_path
from mergesmith.engine.executor import Executor
from mergesmith.errors import CheckpointError, MethodError


def _bits(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.numpy()
    return values.view(np.uint32)


def _torch_sum(xs: list[np.ndarray], weights: list[float]) -> np.ndarray:
    out = torch.zeros(xs[0].shape)
    for x, w in zip(xs, weights):
        out.add_(torch.from_numpy(x), alpha=w)
    return out.numpy()


def _halfway_cases() -> tuple[np.ndarray, np.ndarray, float, np.ndarray, np.ndarray, float]:
    """Sums whose float64 rounding lands on a float32 halfway point while the exact sum lies
    just below it: a normal one (1 + 2**-23 + 2**-24 - tiny) and a subnormal one."""
    k = np.arange(1, 300)
    a = np.full(k.size, 1 + 2.0**-23, np.float32)
    x = (1 + k * 2.0**-23).astype(np.float32)
    assert np.all(x == 1 + k * 2.0**-23)
    alpha = 2.0**-24 * (1 - 5 * 2.0**-23)  # with k = 5: product 2**-24 (1 - 25 * 2**-46)
    sub_a = (np.arange(1, 600, 2) * 2.0**-149).astype(np.float32)
    sub_x = np.full(sub_a.size, 2.0**-24 * (1 + 2.0**-23), np.float32)
    sub_alpha = 2.0**-126 * (1 - 2.0**-23)
    return a, x, alpha, sub_a, sub_x, sub_alpha


def test_halfway_sums_are_rounded_once_like_torch() -> None:
    a, x, alpha, sub_a, sub_x, sub_alpha = _halfway_cases()
    for first, second, w in ((a, x, alpha), (sub_a, sub_x, sub_alpha)):
        ours = arrays.weighted_sum([first, second], [1.0, w])
        theirs = _torch_sum([first, second], [1.0, w])
        assert np.array_equal(_bits(ours), _bits(theirs))
        naive = (first.astype(np.float64) + second.astype(np.float64) * float(np.float32(w))).astype(np.float32)
        assert not np.array_equal(_bits(naive), _bits(theirs))  # the cases do hit double rounding


def _awkward(rng: np.random.Generator, n: int) -> np.ndarray:
    """Normal, bfloat16-valued, subnormal, huge, and signed-zero float32 values, shuffled."""
    parts = [rng.standard_normal(n).astype(np.float32),
             (rng.standard_normal(n).astype(np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32),
             (rng.standard_normal(n) * 1e-39).astype(np.float32), np.zeros(n, np.float32), -np.zeros(n, np.float32),
             (rng.standard_normal(n) * 1e37).astype(np.float32)]
    values = np.concatenate(parts)
    rng.shuffle(values)
    return values


@pytest.mark.parametrize("weights", [[0.5, 0.5], [0.3, -0.7, 1.1], [1.0, 1.0], [1e-3, 3.0, 2.0**-140], [-0.2]])
def test_array_operations_match_torch_bit_for_bit(weights: list[float]) -> None:
    rng = np.random.default_rng(len(weights))
    xs = [_awkward(rng, 3000) for _ in weights]
    with np.errstate(all="ignore"):
        ours = arrays.weighted_sum(xs, weights)
        assert np.array_equal(_bits(ours), _bits(_torch_sum(xs, weights)))
        base = xs[0]
        for alpha in (1.0, 0.7, -1.3):
            expected = torch.add(torch.from_numpy(base), torch.from_numpy(ours), alpha=alpha)
            assert np.array_equal(_bits(arrays.add_scaled(base, ours, alpha)), _bits(expected))
        assert np.array_equal(_bits(arrays.div_(ours.copy(), 1.7)), _bits(torch.from_numpy(ours.copy()).div_(1.7)))
        assert np.array_equal(_bits(arrays.sub(xs[0], ours)), _bits(torch.from_numpy(xs[0]) - torch.from_numpy(ours)))
        assert np.array_equal(_bits(xs[0] * 0.37), _bits(torch.from_numpy(xs[0]) * 0.37))


# -- whole merges, numpy path against torch path ----------------------------------------------

HIDDEN, VOCAB = 64, 1100  # the embedding (70,400 entries) spans several chunks and pieces


def _write_model(path: Path, seed: int, dtype: torch.dtype, base: dict[str, torch.Tensor] | None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    shapes = {"model.embed_tokens.weight": (VOCAB, HIDDEN), "model.norm.weight": (HIDDEN,),
              "lm_head.weight": (VOCAB, HIDDEN)}
    for layer in range(2):
        p = f"model.layers.{layer}."
        shapes |= {p + "self_attn.q_proj.weight": (HIDDEN, HIDDEN), p + "mlp.up_proj.weight": (3 * HIDDEN, HIDDEN),
                   p + "input_layernorm.weight": (HIDDEN,)}
    tensors = {}
    for name, shape in shapes.items():
        noise = torch.randn(shape, generator=gen) * 0.02
        tensors[name] = noise if base is None else base[name].float() + noise * 0.1
    path.mkdir(parents=True)
    save_file({k: v.to(dtype) for k, v in tensors.items()}, path / "model.safetensors")
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
              "num_hidden_layers": 2, "vocab_size": VOCAB, "tie_word_embeddings": False}
    (path / "config.json").write_text(json.dumps(config))
    return tensors


@pytest.fixture(scope="module", params=["float32", "bfloat16", "float16"])
def family(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp(f"family-{request.param}")
    dtype = getattr(torch, request.param)
    base = _write_model(root / "base", 0, dtype, None)
    for seed, name in ((1, "a"), (2, "b")):
        _write_model(root / name, seed, dtype, base)
    return {name: root / name for name in ("base", "a", "b")}


RECIPES = {
    "linear": "models:\n  - {{model: {a}, parameters: {{weight: 0.6}}}}\n  - {{model: {b}, parameters: {{weight: 0.3}}}}\n"
              "  - {{model: {base}, parameters: {{weight: 0.2}}}}\nmerge_method: linear\n",
    "linear_sum": "models:\n  - {{model: {a}, parameters: {{weight: 0.7}}}}\n  - {{model: {b}, parameters: {{weight: -0.3}}}}\n"
                  "merge_method: linear\nparameters: {{normalize: false}}\ndtype: bfloat16\nout_dtype: float32\n",
    "task_arithmetic": "models:\n  - {{model: {a}, parameters: {{weight: 0.7}}}}\n  - {{model: {b}, parameters: {{weight: 0.45}}}}\n"
                       "merge_method: task_arithmetic\nbase_model: {base}\nparameters: {{lambda: 0.9, normalize: true}}\n"
                       "dtype: float16\n",
    "passthrough_scale": "slices:\n  - sources: [{{model: {a}, layer_range: [0, 2], parameters: {{scale: 0.3}}}}]\n"
                         "merge_method: passthrough\nout_dtype: bfloat16\n",
    "passthrough_convert": "slices:\n  - sources: [{{model: {b}, layer_range: [0, 2]}}]\nmerge_method: passthrough\n"
                           "out_dtype: float16\n",
}


def _as_bytes(value) -> bytes:
    if isinstance(value, np.ndarray):
        return value.tobytes()
    return value.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_numpy_and_torch_paths_give_the_same_bytes(family: dict[str, Path], recipe: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(numpy_path, "CHUNK", 1000)  # chunk and piece boundaries inside every tensor
    monkeypatch.setattr(numpy_path, "PIECE", 12_345)
    the_plan = plan(RECIPES[recipe].format(**{k: str(v) for k, v in family.items()}))
    assert all(Executor(the_plan).uses_numpy(op) for op in the_plan.ops)
    results = {}
    for use_numpy in (True, False):
        out: dict[str, bytes] = {}
        Executor(the_plan, threads=3, numpy=use_numpy).run(lambda name, value, out=out: out.__setitem__(name, _as_bytes(value)))
        results[use_numpy] = out
    assert results[True].keys() == {op.name for op in the_plan.ops}
    assert results[True] == results[False]


@pytest.mark.parametrize("recipe", ["linear", "task_arithmetic"])
def test_numpy_path_bytes_do_not_depend_on_threads(family: dict[str, Path], recipe: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # Small pieces, so that the pieces of one tensor run on different workers at once.
    monkeypatch.setattr(numpy_path, "CHUNK", 1000)
    monkeypatch.setattr(numpy_path, "PIECE", 4_321)
    the_plan = plan(RECIPES[recipe].format(**{k: str(v) for k, v in family.items()}))
    assert all(Executor(the_plan).uses_numpy(op) for op in the_plan.ops)
    assert max(math.prod(op.shape) for op in the_plan.ops) > 4 * 4_321
    outputs = []
    for threads in (1, 2, 3):
        out: dict[str, bytes] = {}
        Executor(the_plan, threads=threads).run(lambda name, value, out=out: out.__setitem__(name, _as_bytes(value)))
        outputs.append(out)
    assert outputs[0].keys() == {op.name for op in the_plan.ops}
    assert outputs[0] == outputs[1] == outputs[2]


def test_non_finite_results_are_explained_on_the_numpy_path(tmp_path: Path) -> None:
    big = {"model.norm.weight": torch.full((4,), 60000.0), "lm_head.weight": torch.ones(2, 4)}
    for name, scale in (("a", 1.0), ("b", 1.0)):
        (tmp_path / name).mkdir()
        save_file({k: v * scale for k, v in big.items()}, tmp_path / name / "model.safetensors")
        (tmp_path / name / "config.json").write_text(json.dumps({"model_type": "llama"}))
    recipe = (f"models:\n  - {{model: {tmp_path / 'a'}, parameters: {{weight: 1}}}}\n"
              f"  - {{model: {tmp_path / 'b'}, parameters: {{weight: 1}}}}\nmerge_method: linear\n"
              "parameters: {normalize: false}\nout_dtype: float16\n")
    the_plan = plan(recipe)
    assert all(Executor(the_plan).uses_numpy(op) for op in the_plan.ops)
    with pytest.raises(MethodError, match="exceed the range of float16"):
        Executor(the_plan).run(lambda name, value: None)
    broken = dict(big, **{"lm_head.weight": torch.tensor([[1.0, float("nan"), 0, 0], [0, 0, 0, 0]])})
    save_file(broken, tmp_path / "b" / "model.safetensors")
    with pytest.raises(CheckpointError, match="model '.*b': tensor 'lm_head.weight' holds NaN"):
        Executor(plan(recipe.replace("float16", "float32"))).run(lambda name, value: None)


def test_a_cpu_merge_of_elementwise_methods_does_not_import_torch(family: dict[str, Path], tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(RECIPES["task_arithmetic"].format(**{k: str(v) for k, v in family.items()}))
    code = ("import sys\nfrom mergesmith.cli.main import main\n"
            f"assert main(['merge', {str(recipe)!r}, {str(tmp_path / 'out')!r}, '--quiet']) == 0\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out" / "model.safetensors").is_file()
