"""The bad-input corpus: each case builds its inputs in a fresh directory and says what the
CLI must answer (exit code and words the message must contain)."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

LINEAR = "models:\n  - model: ./a\n    parameters: {weight: 1}\n  - model: ./b\n    parameters: {weight: 1}\nmerge_method: linear\n"


def tiny_model(path: Path, *, vocab: int = 32, hidden: int = 8, layers: int = 2, seed: int = 0,
               drop: str | None = None) -> None:
    gen = torch.Generator().manual_seed(seed)
    state = {"model.embed_tokens.weight": torch.randn(vocab, hidden, generator=gen),
             "model.norm.weight": torch.ones(hidden), "lm_head.weight": torch.randn(vocab, hidden, generator=gen)}
    for i in range(layers):
        state[f"model.layers.{i}.mlp.up_proj.weight"] = torch.randn(16, hidden, generator=gen)
        state[f"model.layers.{i}.input_layernorm.weight"] = torch.ones(hidden)
    state.pop(drop or "", None)
    path.mkdir(parents=True)
    save_file(state, path / "model.safetensors")
    (path / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": layers, "vocab_size": vocab}))


def header_file(path: Path, header: object, data: bytes = b"") -> None:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


@dataclass
class Case:
    name: str
    code: int
    needles: tuple[str, ...]
    recipe: str = LINEAR
    setup: Callable[[Path], None] | None = None
    args: tuple[str, ...] = ()
    out: str = "out"
    keep: tuple[str, ...] = field(default=())  # extra paths a case leaves on purpose (inputs it made)
    recipe_arg: str = "recipe.yaml"  # what is given as the recipe (a folder, a weights file...)
    raw: bytes | None = None  # the recipe file's bytes, when they are not text


def _pair(root: Path) -> None:
    tiny_model(root / "a")
    tiny_model(root / "b", seed=1)


def _with(fn: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        _pair(root)
        fn(root)
    return setup


def _weights(root: Path) -> Path:
    return root / "a" / "model.safetensors"


def _truncate(root: Path) -> None:
    data = _weights(root).read_bytes()
    _weights(root).write_bytes(data[: len(data) // 2])


def _shard_index(root: Path, shard: str) -> None:
    _weights(root).rename(root / "a" / "part-1.safetensors")
    names = ["model.embed_tokens.weight"]
    (root / "a" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {n: shard for n in names}}))


def _replace_model(root: Path, **kwargs) -> None:
    shutil.rmtree(root / "b")
    tiny_model(root / "b", seed=1, **kwargs)


RECIPE_CASES = [
    Case("yaml-syntax", 2, ("not valid YAML", "recipe.yaml:")  , recipe="models: [{model: ./a\nmerge_method: linear\n"),
    Case("unknown-top-key", 2, ("dtpye", "did you mean", "recipe.yaml:7"), recipe=LINEAR + "dtpye: float16\n"),
    Case("unknown-param", 2, ("wieght", 'did you mean "weight"', "recipe.yaml:3"), recipe=LINEAR.replace("{weight: 1}", "{wieght: 1}", 1)),
    Case("wrong-type", 2, ("weight", "'heavy'", "recipe.yaml:3"), recipe=LINEAR.replace("{weight: 1}", "{weight: heavy}", 1)),
    Case("density-range", 2, ("density", "1.5", "less than or equal to 1"),
         recipe="models:\n  - model: ./a\n    parameters: {weight: 1, density: 1.5}\nmerge_method: ties\nbase_model: ./b\n"),
    Case("t-range", 2, ('"t" = -0.5', "greater than or equal to 0"),
         recipe="models: [{model: ./a}, {model: ./b}]\nmerge_method: slerp\nbase_model: ./a\nparameters: {t: -0.5}\n"),
    Case("unknown-method", 2, ('"linaer"', 'did you mean "linear"'), recipe=LINEAR.replace("linear", "linaer")),
    Case("missing-base", 2, ("slerp needs a base_model",), recipe="models: [{model: ./a}, {model: ./b}]\nmerge_method: slerp\nparameters: {t: 0.5}\n"),
    Case("model-count", 2, ("exactly 1 models besides the base", "./c"),
         recipe="models: [{model: ./a}, {model: ./b}, {model: ./c}]\nmerge_method: slerp\nbase_model: ./a\nparameters: {t: 0.5}\n"),
    Case("layer-range-beyond", 2, ("layer_range [0, 5]", "2 layers"),
         recipe="slices:\n  - sources: [{model: ./a, layer_range: [0, 5]}]\nmerge_method: passthrough\n"),
    Case("layer-range-empty", 2, ("layer_range [1, 1] is empty",),
         recipe="slices:\n  - sources: [{model: ./a, layer_range: [1, 1]}]\nmerge_method: passthrough\n"),
    Case("layer-range-negative", 2, ("layer_range", "greater than or equal to 0"),
         recipe="slices:\n  - sources: [{model: ./a, layer_range: [-1, 1]}]\nmerge_method: passthrough\n"),
    Case("gradient-empty", 2, ('"weight" is an empty list',), recipe=LINEAR.replace("{weight: 1}", "{weight: []}", 1)),
    Case("filter-matches-nothing", 2, ("'sefl_attn'", "match no tensor"),
         recipe=LINEAR.replace("{weight: 1}", "{weight: [{filter: sefl_attn, value: 2}, {value: 1}]}", 1)),
    Case("duplicate-model", 2, ('"./a" is listed 2 times',), recipe=LINEAR.replace("./b", "./a")),
    Case("models-and-slices", 2, ("exactly one of 'models:' or 'slices:'",),
         recipe=LINEAR + "slices:\n  - sources: [{model: ./a, layer_range: [0, 1]}]\n"),
    Case("neither-models-nor-slices", 2, ("exactly one of 'models:' or 'slices:'",), recipe="merge_method: linear\n"),
    Case("slices-unequal", 2, ("same number of layers",),
         recipe="slices:\n  - sources:\n      - {model: ./a, layer_range: [0, 1]}\n      - {model: ./b, layer_range: [0, 2]}\n"
                "merge_method: linear\nparameters: {weight: 1}\n"),
    Case("missing-required", 2, ('has no "weight"',), recipe="models: [{model: ./a}, {model: ./b}]\nmerge_method: linear\n"),
    Case("duplicate-yaml-key", 2, ('"merge_method" appears twice',), recipe=LINEAR + "merge_method: slerp\n"),
    Case("not-a-mapping", 2, ("must be a YAML mapping",), recipe="- model: ./a\n- model: ./b\n"),
    Case("empty-recipe", 2, ("the recipe is empty",), recipe="# nothing here\n"),
    Case("tokenizer-both", 2, ("either 'tokenizer_source' or 'tokenizer:'",),
         recipe=LINEAR + "tokenizer_source: base\ntokenizer: {source: union}\n"),
    Case("lambda-wrong-type", 2, ('"lambda"', "'big'"),
         recipe="models: [{model: ./a, parameters: {weight: 1}}]\nmerge_method: task_arithmetic\nbase_model: ./b\nparameters: {lambda: big}\n"),
]

CHECKPOINT_CASES = [
    Case("model-dir-missing", 1, ("./b", "no such model folder"), setup=lambda r: tiny_model(r / "a")),
    Case("no-config", 1, ("no config.json",), setup=_with(lambda r: (r / "a" / "config.json").unlink())),
    Case("config-not-json", 1, ("config.json", "not valid JSON"), setup=_with(lambda r: (r / "a" / "config.json").write_text("{nope"))),
    Case("truncated-safetensors", 1, ("model.safetensors", "do not fit"), setup=_with(_truncate)),
    Case("corrupt-header-json", 1, ("not JSON",), setup=_with(lambda r: _weights(r).write_bytes(struct.pack("<Q", 4) + b"{{{{"))),
    Case("header-beyond-file", 1, ("beyond the file size",), setup=_with(lambda r: _weights(r).write_bytes(struct.pack("<Q", 10**9) + b"{}"))),
    Case("unknown-dtype", 1, ("unknown dtype 'Q4'",),
         setup=_with(lambda r: header_file(_weights(r), {"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 2]}}, b"\0\0"))),
    Case("offsets-out-of-range", 1, ("'x'", "do not fit"),
         setup=_with(lambda r: header_file(_weights(r), {"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8))),
    Case("offsets-overlap", 1, ("overlap",),
         setup=_with(lambda r: header_file(_weights(r), {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                         "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12))),
    Case("index-missing-shard", 1, ("'part-2.safetensors'", "missing"), setup=_with(lambda r: _shard_index(r, "part-2.safetensors"))),
    Case("index-path-traversal", 1, ("'../evil.safetensors'", "plain file name"), setup=_with(lambda r: _shard_index(r, "../evil.safetensors"))),
    Case("config-layers-inconsistent", 1, ("num_hidden_layers = 7", "2 layers"),
         setup=_with(lambda r: (r / "a" / "config.json").write_text(json.dumps({"num_hidden_layers": 7})))),
    Case("pickle-not-allowed", 1, ("pytorch_model.bin", "--allow-pickle"),
         setup=_with(lambda r: (_weights(r).unlink(), torch.save({"x": torch.zeros(2)}, r / "a" / "pytorch_model.bin")))),
    Case("no-weights", 1, ("no *.safetensors",), setup=_with(lambda r: _weights(r).unlink())),
    Case("tensor-missing-in-one", 2, ("'model.layers.1.input_layernorm.weight'", "'./b'"),
         setup=lambda r: (tiny_model(r / "a"), tiny_model(r / "b", drop="model.layers.1.input_layernorm.weight"))),
    Case("shape-mismatch", 2, ("shapes differ", "model.embed_tokens.weight", "[32, 12]"),
         setup=_with(lambda r: _replace_model(r, hidden=12))),
    Case("vocab-size-mismatch", 2, ("vocabulary", "32", "40", "tokenizer_source", "--truncate-embeddings"),
         setup=_with(lambda r: _replace_model(r, vocab=40))),
    Case("layer-count-mismatch", 2, ("different numbers of layers", "slices"), setup=_with(lambda r: _replace_model(r, layers=3))),
]

OPTION_CASES = [
    Case("output-inside-input", 2, ("inside input model",), setup=_pair, out="a/merged"),
    Case("output-exists", 2, ("not empty", "--overwrite"),
         setup=lambda r: (_pair(r), (r / "out").mkdir(), (r / "out" / "x").write_text("x")), keep=("out",)),
    Case("output-is-a-file", 2, ("is a file",), setup=lambda r: (_pair(r), (r / "out").write_text("x")), keep=("out",)),
    Case("bad-shard-size", 2, ("'lots'", "shard size"), setup=_pair, args=("--shard-size", "lots")),
    Case("bad-device", 2, ("'tpu'", "cpu or cuda"), setup=_pair, args=("--device", "tpu")),
    Case("cuda-without-cuda", 2, ("cuda", "no CUDA device"), setup=_pair, args=("--device", "cuda")),
    Case("threads-zero", 2, ("--threads 0",), setup=_pair, args=("--threads", "0")),
    Case("output-contains-input", 2, ("contains input model",), setup=lambda r: (tiny_model(r / "o" / "a"), tiny_model(r / "o" / "b", seed=1)),
         recipe=LINEAR.replace("./a", "./o/a").replace("./b", "./o/b"), out="o"),
]

def _config(model: str, **changes: object) -> Callable[[Path], None]:
    """Edit one model's config.json."""
    def edit(root: Path) -> None:
        config = json.loads((root / model / "config.json").read_text())
        config.update(changes)
        (root / model / "config.json").write_text(json.dumps(config))
    return edit


def _tensor(model: str, name: str, value: float, scale: float = 1.0) -> Callable[[Path], None]:
    """Put `value` into one entry of a tensor (and scale it)."""
    def edit(root: Path) -> None:
        from safetensors.torch import load_file

        state = load_file(root / model / "model.safetensors")
        state[name] = state[name] * scale
        state[name][0, 0] = value
        save_file(state, root / model / "model.safetensors")
    return edit


PASSTHROUGH = ("slices:\n  - sources: [{model: ./a, layer_range: [0, 1]}]\n"
               "  - sources: [{model: ./b, layer_range: [1, 2]}]\nmerge_method: passthrough\n")
UP = "model.layers.1.mlp.up_proj.weight"

# The classes of issue 18: each fails before any tensor is read (exit 2), or names the input.
MORE_CASES = [
    Case("recipe-not-utf8", 2, ("recipe.yaml", "not UTF-8", "0xff"), raw=b"models: [\xff\xfe]\nmerge_method: linear\n"),
    Case("recipe-is-a-directory", 2, ("is a directory",), recipe_arg="a"),
    Case("recipe-is-a-weights-file", 2, ("weights file", "not a YAML recipe"), recipe_arg="a/model.safetensors"),
    Case("mergekit-moe-config-as-recipe", 2, ("mixture-of-experts config", "mergesmith moe"),
         recipe="base_model: ./a\ngate_mode: random\nexperts:\n  - source_model: ./b\n"),
    Case("layer-range-under-parameters", 2, ('"layer_range" is found under parameters:', "move it up"),
         recipe="slices:\n  - sources:\n      - model: ./a\n        parameters: {layer_range: [0, 2]}\n"
                "merge_method: passthrough\n"),
    Case("merge-method-under-parameters", 2, ('"merge_method" is found under parameters:', "top level"),
         recipe=LINEAR.replace("merge_method: linear\n", "").replace("{weight: 1}", "{weight: 1, merge_method: linear}", 1)),
    Case("filter-rule-typo-is-one-line", 2, ('unknown key "filtr"', 'did you mean "filter"'),
         recipe=LINEAR.replace("{weight: 1}", "\n      weight:\n        - {filtr: self_attn, value: 2}\n        - {value: 1}", 1)),
    Case("gradient-with-a-list-inside", 2, ('"weight" gradient item 1', "flat list"),
         recipe=LINEAR.replace("{weight: 1}", "{weight: [1, [2, 3]]}", 1)),
    Case("gradient-of-booleans", 2, ('"weight" = true', "not true/false"), recipe=LINEAR.replace("{weight: 1}", "{weight: [true, false]}", 1)),
    Case("boolean-gradient-for-a-flag", 2, ('"normalize" is true or false, not a gradient',),
         recipe=LINEAR + "parameters: {normalize: [true, false]}\n"),
    Case("weight-nan", 2, ('"weight" = nan', "finite"), recipe=LINEAR.replace("{weight: 1}", "{weight: .nan}", 1)),
    Case("lambda-inf", 2, ('"lambda" = inf', "finite"),
         recipe="models: [{model: ./a, parameters: {weight: 1}}]\nmerge_method: task_arithmetic\nbase_model: ./b\nparameters: {lambda: .inf}\n"),
    Case("weights-sum-to-zero", 2, ("sum to 0", "normalize: false"), recipe=LINEAR.replace("{weight: 1}", "{weight: -1}", 1)),
    Case("same-model-two-spellings", 2, ("'./a'", "'a'", "same folder"), recipe=LINEAR.replace("./b", "a")),
    Case("base-and-model-two-spellings", 2, ("same folder",),
         recipe="models:\n  - model: a\n    parameters: {weight: 1}\n  - model: ./b\n    parameters: {weight: 1}\n"
                "merge_method: task_arithmetic\nbase_model: ./a\n"),
    Case("architectures-differ", 2, ("different architectures", "mistral", "--allow-crimes"),
         setup=_with(_config("b", model_type="mistral"))),
    Case("passthrough-architectures-differ", 2, ("different architectures", "--allow-crimes"), recipe=PASSTHROUGH,
         setup=_with(_config("b", model_type="qwen2", architectures=["Qwen2ForCausalLM"]))),
    Case("passthrough-widths-differ", 2, ("'./b' has hidden size 12", "8", "layer 1"), recipe=PASSTHROUGH,
         setup=_with(lambda r: _replace_model(r, hidden=12))),
    Case("config-vocab-size-disagrees", 1, ("vocab_size = 40", "32 rows", "config.json"),
         setup=_with(_config("a", vocab_size=40))),
    Case("input-tensor-nan", 1, ("model './b'", UP, "NaN"), setup=_with(_tensor("b", UP, float("nan")))),
    Case("fp16-overflow", 1, ("float16", "infinity", "out_dtype"), recipe=LINEAR + "out_dtype: float16\n",
         setup=_with(_tensor("b", UP, 1e6, scale=1e5))),
]

CASES = RECIPE_CASES + CHECKPOINT_CASES + OPTION_CASES + MORE_CASES
