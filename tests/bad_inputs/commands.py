"""Bad inputs of every command that reads a config or writes a model (the merge recipe cases
are in corpus.py). Each case builds its inputs in a fresh directory, which is also the
working directory, and says what the CLI must answer."""

from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .corpus import LINEAR, tiny_model


@dataclass
class Cmd:
    name: str
    code: int
    needles: tuple[str, ...]
    argv: Callable[[Path], list[str]]
    setup: Callable[[Path], None]


def _pair(root: Path) -> None:
    tiny_model(root / "a")
    tiny_model(root / "b", seed=1)


def _mine(path: Path) -> None:
    """A folder that an earlier mergesmith command wrote (its manifest says so)."""
    path.mkdir(parents=True)
    (path / "model.safetensors").write_bytes(b"old")
    (path / "mergesmith_manifest.json").write_text(json.dumps({"versions": {"mergesmith": "0.1.0"}}))


def _recipe(text: str = LINEAR) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        _pair(root)
        (root / "r.yaml").write_text(text)
    return setup


def _then(first: Callable[[Path], None], then: Callable[[Path], object]) -> Callable[[Path], None]:
    def setup(root: Path) -> None:
        first(root)
        then(root)
    return setup


def _merge(out: str, *extra: str) -> Callable[[Path], list[str]]:
    return lambda root: ["merge", "r.yaml", out, "--quiet", *extra]


TWO_STEPS = ("name: first\nmodels:\n  - model: ./a\n    parameters: {weight: 1}\n  - model: ./b\n"
             "    parameters: {weight: 1}\nmerge_method: linear\n---\nmodels:\n  - model: first\n"
             "    parameters: {weight: 1}\n  - model: ./b\n    parameters: {weight: 1}\nmerge_method: linear\n")

OUTPUT_PATHS = [
    Cmd("merge-out-empty-string", 2, ("current directory",), _merge("", "--overwrite"), _recipe()),
    Cmd("merge-out-dot-overwrite", 2, ("current directory",), _merge(".", "--overwrite"), _recipe()),
    Cmd("merge-out-parent-of-cwd", 2, ("contains the current directory",), _merge("..", "--overwrite"), _recipe()),
    Cmd("merge-out-is-input", 2, ("is input model", "./a"), _merge("a", "--overwrite"), _recipe()),
    Cmd("merge-out-inside-input-overwrite", 2, ("inside input model",), _merge("a/sub", "--overwrite"),
        _then(_recipe(), lambda r: (r / "a" / "sub").mkdir())),
    Cmd("merge-overwrite-foreign-dir", 2, ("not written by mergesmith", "mergesmith_manifest.json"),
        _merge("mine", "--overwrite"), _then(_recipe(), lambda r: ((r / "mine").mkdir(), (r / "mine" / "notes.txt").write_text("x")))),
    Cmd("merge-out-links-to-input", 2, ("is input model",), _merge("link", "--overwrite"),
        _then(_recipe(), lambda r: (r / "link").symlink_to(r / "a"))),
    Cmd("merge-out-is-symlink", 2, ("symbolic link",), _merge("link", "--overwrite"),
        _then(_recipe(), lambda r: ((r / "else").mkdir(), (r / "else" / "x").write_text("x"),
                                    (r / "link").symlink_to(r / "else")))),
    Cmd("merge-intermediate-inside-output", 2, ("--intermediate-dir", "overlap"),
        _merge("out", "--intermediate-dir", "out/steps"), _recipe(TWO_STEPS)),
    Cmd("merge-intermediate-inside-input", 2, ("--intermediate-dir", "inside input model"),
        _merge("out", "--intermediate-dir", "a/steps"), _recipe(TWO_STEPS)),
    Cmd("moe-out-is-base", 2, ("is input model",), lambda r: ["moe", "m.yaml", "a", "--overwrite"],
        _then(_pair, lambda r: (r / "m.yaml").write_text(
            "base_model: ./a\ngate_mode: random\nexperts:\n  - source_model: ./b\n  - source_model: ./a\n"))),
    Cmd("moe-out-empty-string", 2, ("current directory",), lambda r: ["moe", "m.yaml", "", "--overwrite"],
        _then(_pair, lambda r: (r / "m.yaml").write_text(
            "base_model: ./a\ngate_mode: random\nexperts:\n  - source_model: ./b\n  - source_model: ./a\n"))),
    Cmd("extract-lora-into-finetune", 2, ("inside input model",),
        lambda r: ["extract-lora", "a/adapter", "--model", "a", "--base", "b", "--rank", "2"], _pair),
    Cmd("extract-lora-out-is-base", 2, ("is input model",),
        lambda r: ["extract-lora", "b", "--model", "a", "--base", "b", "--rank", "2", "--overwrite"], _pair),
    Cmd("extract-lora-overwrite-foreign", 2, ("not written by mergesmith",),
        lambda r: ["extract-lora", "x", "--model", "a", "--base", "b", "--rank", "2", "--overwrite"],
        _then(_pair, lambda r: ((r / "x").mkdir(), (r / "x" / "keep.txt").write_text("k")))),
]


def _search(kind: str, **changes: object) -> Callable[[Path], None]:
    """A soup or evolve config over ./a and ./b (tiny models), with `changes` applied."""
    def setup(root: Path) -> None:
        _pair(root)
        (root / "text.txt").write_text("the cat sat on the mat. " * 4)
        data: dict = {"models": ["./a", "./b"], "output": "out",
                      "search": [{"type": "perplexity", "path": "text.txt"}]}
        if kind == "evolve":
            data["base_model"] = "./a"
        data.update(changes)
        (root / "c.yaml").write_text(yaml.safe_dump(data))
    return setup


SEARCHES = [
    Cmd("soup-output-is-input", 2, ("output:", "is input model"), lambda r: ["soup", "c.yaml"], _search("soup", output="./a")),
    Cmd("soup-output-is-cwd", 2, ("current directory",), lambda r: ["soup", "c.yaml"], _search("soup", output=".")),
    Cmd("soup-output-foreign", 2, ("not written by mergesmith soup",), lambda r: ["soup", "c.yaml"],
        _then(_search("soup"), lambda r: ((r / "out").mkdir(), (r / "out" / "mine.txt").write_text("x")))),
    Cmd("soup-limit-zero", 2, ("limit", "greater than or equal to 1", "c.yaml:"), lambda r: ["soup", "c.yaml"],
        _search("soup", search=[{"type": "perplexity", "path": "text.txt", "limit": 0}])),
    Cmd("soup-missing-text", 2, ("search.0 (perplexity)", "nope.txt", "does not exist"), lambda r: ["soup", "c.yaml"],
        _search("soup", search=[{"type": "perplexity", "path": "nope.txt"}])),
    Cmd("soup-missing-model", 2, ("models.1", "no such model folder", "did you mean", "/b'"), lambda r: ["soup", "c.yaml"],
        _search("soup", models=["./a", "./bb"])),
    Cmd("soup-same-model-twice", 2, ("models.1", "same model as models.0"), lambda r: ["soup", "c.yaml"],
        _search("soup", models=["./a", "a"])),
    Cmd("soup-bad-dtype", 2, ("dtype", "float99"), lambda r: ["soup", "c.yaml"], _search("soup", dtype="float99")),
    Cmd("soup-cuda-without-cuda", 2, ("device", "no CUDA"), lambda r: ["soup", "c.yaml"], _search("soup", device="cuda")),
    Cmd("evolve-sigma-inf", 2, ("sigma", "finite"), lambda r: ["evolve", "c.yaml"], _search("evolve", sigma=float("inf"))),
    Cmd("evolve-weight-nan", 2, ("search.0.weight", "finite"), lambda r: ["evolve", "c.yaml"],
        _search("evolve", search=[{"type": "perplexity", "path": "text.txt", "weight": float("nan")}])),
    Cmd("evolve-max-evals-zero", 2, ("max_evals", "greater than or equal to 1"), lambda r: ["evolve", "c.yaml"],
        _search("evolve", max_evals=0)),
    Cmd("evolve-max-evals-option-zero", 2, ("--max-evals 0",), lambda r: ["evolve", "c.yaml", "--max-evals", "0"],
        _search("evolve")),
    Cmd("evolve-output-inside-input", 2, ("inside input model",), lambda r: ["evolve", "c.yaml"],
        _search("evolve", output="./b/search")),
    Cmd("evolve-phrases-bad-weight", 2, ("phrases", "weight", "not a finite number"), lambda r: ["evolve", "c.yaml"],
        _then(_search("evolve", search=[{"type": "phrases", "path": "p.yaml"}]), lambda r: (r / "p.yaml").write_text(
            "bad_phrases:\n  - phrase: x\n    weight: heavy\n    contexts: [a]\n"))),
    Cmd("evolve-resume-pickle", 2, ("state.pkl", "not loaded"), lambda r: ["evolve", "c.yaml", "--resume"],
        _then(_search("evolve"), lambda r: ((r / "out").mkdir(), (r / "out" / ".mergesmith_evolve").write_text("{}"),
                                            (r / "out" / "state.pkl").write_bytes(b"\x80\x04K\x01.")))),
    Cmd("evolve-resume-garbage-state", 2, ("state.json", "not a readable search state"),
        lambda r: ["evolve", "c.yaml", "--resume"],
        _then(_search("evolve"), lambda r: ((r / "out").mkdir(), (r / "out" / ".mergesmith_evolve").write_text("{}"),
                                            (r / "out" / "state.json").write_text('{"version": 1, "x": [')))),
    Cmd("search-config-not-utf8", 2, ("c.yaml",), lambda r: ["soup", "c.yaml"],
        _then(_pair, lambda r: (r / "c.yaml").write_bytes(b"models: [\xff\xfe]\n"))),
    Cmd("search-config-is-a-directory", 2, ("c.yaml",), lambda r: ["evolve", "c.yaml"],
        _then(_pair, lambda r: (r / "c.yaml").mkdir())),
]

MOE = "base_model: ./a\ngate_mode: random\nexperts:\n  - source_model: ./b\n  - source_model: ./a\n"

OTHERS = [
    Cmd("moe-noise-inf", 2, ("noise_scale", "finite"), lambda r: ["moe", "m.yaml", "out"],
        _then(_pair, lambda r: (r / "m.yaml").write_text(MOE.replace("./b\n", "./b\n    noise_scale: .inf\n", 1)))),
    Cmd("moe-residual-nan", 2, ("residual_scale", "finite"), lambda r: ["moe", "m.yaml", "out"],
        _then(_pair, lambda r: (r / "m.yaml").write_text(MOE.replace("./b\n", "./b\n    residual_scale: .nan\n", 1)))),
    Cmd("extract-lora-bad-include-regex", 2, ("--include", "'self_attn('", "not a valid regular expression"),
        lambda r: ["extract-lora", "out", "--model", "a", "--base", "b", "--rank", "2", "--include", "self_attn("], _pair),
    Cmd("eval-limit-zero", 2, ("--limit 0", "at least 1"),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--limit", "0"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-limit-negative", 2, ("--limit -3",),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--limit", "-3"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-cuda-without-cuda", 2, ("cuda", "no CUDA device"),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--device", "cuda"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-json-into-missing-folder", 2, ("--json", "does not exist"),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--json", "nodir/s.json"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-save-adapter", 2, ("--save", "not a folder"),
        lambda r: ["eval", "a+b", "--perplexity", "t.txt", "--save"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-second-model-missing", 1, ("nope is not a checkpoint directory", "no config.json"),
        lambda r: ["eval", "a", "./nope", "--perplexity", "t.txt"], _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-model-typo-gets-a-suggestion", 1, ("models/bsae", "did you mean 'models/base'"),
        lambda r: ["eval", "models/bsae", "--perplexity", "t.txt"],
        _then(lambda r: tiny_model(r / "models" / "base"), lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-task-not-utf8", 2, ("t.jsonl", "not UTF-8"),
        lambda r: ["eval", "a", "--task", "x=t.jsonl"], _then(_pair, lambda r: (r / "t.jsonl").write_bytes(b'{"prompt": "\xff"}'))),
    Cmd("merge-shard-size-inf", 2, ("'inf'", "finite size"), _merge("out", "--shard-size", "inf"), _recipe()),
    Cmd("merge-weight-map-list", 1, ("weight_map", "list"), _merge("out"),
        _then(_recipe(), lambda r: ((r / "a" / "model.safetensors").rename(r / "a" / "m1.safetensors"),
                                    (r / "a" / "model.safetensors.index.json").write_text('{"weight_map": ["m1.safetensors"]}')))),
    Cmd("merge-typo-path-is-not-a-hub-id", 1, ("models/llama-bsae", "no such model folder", "did you mean 'models/llama-base'"),
        _merge("out"), _then(lambda r: (tiny_model(r / "models" / "llama-base"), tiny_model(r / "b")), lambda r: (r / "r.yaml").write_text(
            LINEAR.replace("./a", "models/llama-bsae")))),
]

def _mistral(root: Path) -> None:
    config = json.loads((root / "b" / "config.json").read_text())
    (root / "b" / "config.json").write_text(json.dumps({**config, "model_type": "mistral"}))


READERS = [  # plan and validate read recipes with the same loader and planner as merge
    Cmd("validate-recipe-is-a-directory", 2, ("is a directory",), lambda r: ["validate", "a"], _pair),
    Cmd("validate-recipe-not-utf8", 2, ("not UTF-8",), lambda r: ["validate", "r.yaml"],
        _then(_pair, lambda r: (r / "r.yaml").write_bytes(b"merge_method: linear\nmodels: [\xe9]\n"))),
    Cmd("plan-weights-file-as-recipe", 2, ("weights file",), lambda r: ["plan", "a/model.safetensors"], _pair),
    Cmd("plan-architectures-differ", 2, ("different architectures", "--allow-crimes"), lambda r: ["plan", "r.yaml"],
        _then(_recipe(), _mistral)),
    Cmd("validate-models-same-folder", 2, ("same folder",), lambda r: ["validate", "r.yaml", "--models"],
        _recipe(LINEAR.replace("./b", "a"))),
    Cmd("plan-merge-method-under-parameters", 2, ("belongs to the recipe itself", "move it up"), lambda r: ["plan", "r.yaml"],
        _recipe(LINEAR.replace("merge_method: linear\n", "parameters: {merge_method: linear}\n"))),
]


@functools.cache
def _real_family_source() -> Path:
    """base, a and b that transformers loads (with a tokenizer): built once, copied per case."""
    from factory import make_family

    return make_family(Path(tempfile.mkdtemp(prefix="bad-inputs-family-")), "llama", layers=1)["base"].parent


def _real(root: Path) -> None:
    for name in ("base", "a", "b"):
        shutil.copytree(_real_family_source() / name, root / name)
    (root / "t.txt").write_text("w1 w2 w3 w4 w5 w6\nw7 w8 w9\n")


def _damage(model: str, value: float, scale: float = 1.0, name: str = "model.layers.0.mlp.up_proj.weight"):
    """Put `value` into one entry of a tensor of `model` (after scaling the tensor)."""
    def edit(root: Path) -> None:
        from safetensors.torch import load_file, save_file

        state = load_file(root / model / "model.safetensors")
        state[name] = state[name] * scale
        state[name].view(-1)[0] = value
        save_file(state, root / model / "model.safetensors", metadata={"format": "pt"})
    return edit


def _monster(out: str = "out", **changes: object) -> Callable[[Path], None]:
    """A MergeMonster config over ./base (model 1) and ./a (donor), with `changes` applied."""
    def write(root: Path) -> None:
        data: dict = {"device": "cpu", "directories": {"model_path1": "./base", "output_directory": out},
                      "models_to_merge": ["./a"], "merge_ratios": [0.5],
                      "good_phrases": [{"phrase": "w5", "contexts": ["w1 w2"]}],
                      "bad_phrases": [{"phrase": "w9", "contexts": ["w1 w2"]}]}
        data.update(changes)
        (root / "m.yaml").write_text(yaml.safe_dump(data))
    return write


def _tiny_trio(root: Path) -> None:
    tiny_model(root / "base")
    _pair(root)


def _mistral_b(root: Path) -> None:
    config = json.loads((root / "b" / "config.json").read_text())
    config.update(model_type="mistral", architectures=["MistralForCausalLM"])
    (root / "b" / "config.json").write_text(json.dumps(config))


UP0 = "model.layers.0.mlp.up_proj.weight"
MOE_REAL = "base_model: ./base\ngate_mode: random\nexperts:\n  - source_model: ./a\n  - source_model: ./b\n"

# A second pass over the classes of issue 18, command by command (cases of their own).
SECOND_PASS = [
    # side files never overwrite an input (--json, --report, --out)
    Cmd("eval-json-over-a-model-config", 2, ("--json", "inside input 'a'"),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--json", "a/config.json"],
        _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("eval-json-over-its-own-text", 2, ("--json", "is input 't.txt'"),
        lambda r: ["eval", "a", "--perplexity", "t.txt", "--json", "t.txt"],
        _then(_pair, lambda r: (r / "t.txt").write_text("hi"))),
    Cmd("extract-lora-report-into-base", 2, ("--report", "inside input 'b'"),
        lambda r: ["extract-lora", "out", "--model", "a", "--base", "b", "--rank", "2", "--report", "b/r.json"], _pair),
    Cmd("extract-lora-report-is-a-folder", 2, ("--report", "is a directory"),
        lambda r: ["extract-lora", "out", "--model", "a", "--base", "b", "--rank", "2", "--report", "b"], _pair),
    Cmd("inspect-json-into-a-model", 2, ("--json", "inside input"),
        lambda r: ["inspect", "a", "--base", "b", "--json", "b", "--quiet"], _pair),
    Cmd("report-out-over-a-config", 2, ("--out", "not .html"),
        lambda r: ["report", "a", "--out", "b/config.json"], _pair),
    # monster: its output folder, numbers, options, architectures
    Cmd("monster-out-foreign-folder", 2, ("keep", "not written by mergesmith monster"),
        lambda r: ["monster", "m.yaml", "--no-progress"],
        _then(_then(_tiny_trio, _monster("keep")), lambda r: ((r / "keep").mkdir(), (r / "keep" / "n.txt").write_text("x")))),
    Cmd("monster-out-is-the-donor", 2, ("output_directory", "is input model"),
        lambda r: ["monster", "m.yaml", "--no-progress"], _then(_tiny_trio, _monster("./a"))),
    Cmd("monster-ratio-inf", 2, ("merge_ratios.1", "finite", "m.yaml:"),
        lambda r: ["monster", "m.yaml"], _then(_tiny_trio, _monster(merge_ratios=[0.3, float("inf")]))),
    Cmd("monster-threshold-nan", 2, ("strategy_threshold", "finite"),
        lambda r: ["monster", "m.yaml"], _then(_tiny_trio, _monster(strategy_threshold=float("nan")))),
    Cmd("monster-seed-not-a-number", 2, ("random_seed", "'lucky'"),
        lambda r: ["monster", "m.yaml"], _then(_tiny_trio, _monster(random_seed="lucky"))),
    Cmd("map-top-k-not-a-number", 2, ("mapper.top_k", "'many'"),
        lambda r: ["map", "m.yaml"], _then(_tiny_trio, _monster(mapper={"top_k": "many"}))),
    Cmd("monster-threads-zero", 2, ("--threads 0",), lambda r: ["monster", "m.yaml", "--threads", "0"],
        _then(_tiny_trio, _monster())),
    Cmd("monster-cuda-without-cuda", 2, ("device", "CUDA is not available"),
        lambda r: ["monster", "m.yaml", "--device", "cuda"], _then(_tiny_trio, _monster())),
    Cmd("monster-architectures-differ", 2, ("different architectures", "MistralForCausalLM", "model 1's architecture"),
        lambda r: ["monster", "m.yaml"], _then(_then(_tiny_trio, _mistral_b), _monster(models_to_merge=["./b"]))),
    # architectures, before any model is loaded
    Cmd("soup-architectures-differ", 2, ("different architectures", "soup merges models of one architecture"),
        lambda r: ["soup", "c.yaml"], _then(_search("soup"), _mistral_b)),
    Cmd("evolve-architectures-differ", 2, ("different architectures", "evolve merges"),
        lambda r: ["evolve", "c.yaml"], _then(_search("evolve"), _mistral_b)),
    Cmd("extract-lora-architectures-differ", 2, ("different architectures", "fine-tune of this base"),
        lambda r: ["extract-lora", "out", "--model", "b", "--base", "a", "--rank", "2"], _then(_pair, _mistral_b)),
    # non-finite inputs are named with their model; no output holds NaN or infinity
    Cmd("moe-expert-holds-nan", 1, ("model './b'", UP0, "NaN"), lambda r: ["moe", "m.yaml", "out", "--quiet"],
        _then(_then(_real, _damage("b", float("nan"))), lambda r: (r / "m.yaml").write_text(MOE_REAL))),
    Cmd("moe-float16-overflow", 1, ("float16", "infinity", "dtype: float32"), lambda r: ["moe", "m.yaml", "out", "--quiet"],
        _then(_then(_real, _damage("a", 7e4, scale=1e6)), lambda r: (r / "m.yaml").write_text(MOE_REAL + "dtype: float16\n"))),
    Cmd("extract-lora-base-holds-inf", 1, ("model 'base'", UP0, "infinite"),
        lambda r: ["extract-lora", "out", "--model", "a", "--base", "base", "--rank", "2"],
        _then(_real, _damage("base", float("-inf")))),
    Cmd("monster-donor-holds-nan", 1, ("model 'a'", UP0, "NaN"), lambda r: ["monster", "m.yaml", "--no-progress"],
        _then(_then(_real, _damage("a", float("nan"))), _monster())),
    Cmd("monster-float16-overflow", 1, ("float16", "infinity", "out_dtype: float32"),
        lambda r: ["monster", "m.yaml", "--no-progress"],
        _then(_then(_real, _damage("base", 1e6)), _monster())),  # 1e6 stays above 65504, kept or blended
    Cmd("demo-workdir-is-the-current-folder", 2, ("--workdir", "current directory"),
        lambda r: ["demo", "--workdir", ".", "--build-only"], _pair),
    Cmd("demo-report-over-a-config", 2, ("--report", "not .html"),
        lambda r: ["demo", "--workdir", "fam", "--quick", "--report", "a/config.json"], _pair),
    # nothing hangs: a FIFO where a file goes is refused at once
    Cmd("eval-task-file-is-a-fifo", 2, ("--task", "q.jsonl", "FIFO"), lambda r: ["eval", "a", "--task", "x=q.jsonl"],
        _then(_pair, lambda r: os.mkfifo(r / "q.jsonl"))),
    Cmd("eval-perplexity-text-is-a-folder", 2, ("--perplexity", "is a directory"),
        lambda r: ["eval", "a", "--perplexity", "b"], _pair),
    Cmd("monster-config-is-a-fifo", 2, ("m.yaml", "not a regular file"), lambda r: ["monster", "m.yaml"],
        _then(_tiny_trio, lambda r: os.mkfifo(r / "m.yaml"))),
    Cmd("map-config-is-a-weights-file", 2, ("weights file",), lambda r: ["map", "a/model.safetensors"], _tiny_trio),
    Cmd("soup-ingredient-holds-inf", 1, ("model", "/a'", UP0, "infinite"), lambda r: ["soup", "c.yaml"],
        _then(_then(_real, _damage("a", float("inf"))), lambda r: (r / "c.yaml").write_text(yaml.safe_dump(
            {"models": ["./a", "./b"], "output": "out", "search": [{"type": "perplexity", "path": "t.txt"}]})))),
]

COMMANDS = OUTPUT_PATHS + SEARCHES + OTHERS + READERS + SECOND_PASS
