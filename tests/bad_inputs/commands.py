"""Bad inputs of every command that reads a config or writes a model (the merge recipe cases
are in corpus.py). Each case builds its inputs in a fresh directory, which is also the
working directory, and says what the CLI must answer."""

from __future__ import annotations

import json
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
    Cmd("soup-missing-model", 2, ("models.1", "no such model folder"), lambda r: ["soup", "c.yaml"],
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

COMMANDS = OUTPUT_PATHS + SEARCHES + OTHERS + READERS
