"""`mergesmith eval MODEL... --task NAME=FILE.jsonl --perplexity FILE --phrases FILE.yaml
--lm-eval TASK`: score models with the built-in evaluators and print their scores; --json writes
them to a file, --save writes each model's scores to its own eval.json (read by `mergesmith
report`)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "models",
        nargs="+",
        type=Path,
        help="model directories (Hugging Face checkpoints), or BASE+ADAPTER (a LoRA adapter applied to BASE)",
    )
    p.add_argument("--task", action="append", default=[], metavar="NAME=FILE",
                   help='exact-match task: JSONL of {"prompt", "answer"} (repeatable)')
    p.add_argument("--perplexity", type=Path, action="append", default=[], metavar="FILE",
                   help="text file for sliding-window perplexity (repeatable)")
    p.add_argument("--per-line", action="store_true",
                   help="perplexity: score each line of the file as a document of its own")
    p.add_argument("--phrases", type=Path, default=None, metavar="FILE.yaml",
                   help="MergeMonster-style bad_phrases/good_phrases (score: lower is better)")
    p.add_argument("--lm-eval", action="append", default=[], metavar="TASK",
                   help="lm-evaluation-harness task (repeatable; needs the lm-eval extra)")
    p.add_argument("--lm-eval-include", type=Path, default=None, metavar="DIR",
                   help="folder of extra lm-eval task YAMLs")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples per task")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=None, help="write all scores to this JSON file")
    p.add_argument("--save", action="store_true",
                   help="write each model's scores into MODEL/eval.json (shown by `mergesmith report`)")


def _tasks(specs: list[str]) -> dict[str, Path]:
    from mergesmith.errors import OptionsError

    tasks = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise OptionsError(f"--task {spec!r}: expected NAME=FILE.jsonl", hint="e.g. --task add=add.jsonl")
        if not Path(path).is_file():
            raise OptionsError(f"--task {spec!r}: {path} {_not_a_file(Path(path))}",
                               hint="give a JSONL file of prompts and answers")
        tasks[name] = Path(path)
    return tasks


def _not_a_file(path: Path) -> str:
    """Why `path` is no file to read: absent, a folder, or a FIFO or device (which would block)."""
    if not path.exists():
        return "does not exist"
    return "is a directory" if path.is_dir() else "is not a regular file (a FIFO or device)"


def _specs(args: argparse.Namespace) -> list:
    """The options as evaluator specs, built like a search config's (mergesmith.evaluate.spec)."""
    from mergesmith.errors import OptionsError
    from mergesmith.evaluate.spec import EvaluatorSpec

    tasks = _tasks(args.task)
    if not (tasks or args.perplexity or args.phrases or args.lm_eval):
        raise OptionsError("nothing to evaluate",
                           hint="give --task NAME=FILE.jsonl, --perplexity FILE, --phrases FILE or --lm-eval TASK")
    for path in args.perplexity:
        if not path.is_file():
            raise OptionsError(f"--perplexity {path}: {_not_a_file(path)}", hint="give a UTF-8 text file")
    if args.phrases is not None and not args.phrases.is_file():
        raise OptionsError(f"--phrases {args.phrases}: {_not_a_file(args.phrases)}",
                           hint="give a YAML file with bad_phrases and/or good_phrases")
    specs = [EvaluatorSpec(type="exact_match", tasks={k: str(v) for k, v in tasks.items()}, limit=args.limit)]
    specs = specs if tasks else []
    specs += [EvaluatorSpec(type="perplexity", path=str(p), name=f"perplexity/{p.stem}", per_line=args.per_line)
              for p in args.perplexity]
    if args.phrases is not None:
        specs.append(EvaluatorSpec(type="phrases", path=str(args.phrases)))
    if args.lm_eval:
        include = str(args.lm_eval_include) if args.lm_eval_include else None
        specs.append(EvaluatorSpec(type="lm_eval", tasks=list(args.lm_eval), include_path=include, limit=args.limit))
    return specs


def _check_before_loading(args: argparse.Namespace) -> None:
    """Everything that can fail without a model fails before the first one is loaded."""
    from mergesmith.engine.executor import check_device
    from mergesmith.errors import CheckpointError, OptionsError
    from mergesmith.evaluate.base import check_limit
    from mergesmith.io.resolve import close_matches
    from mergesmith.io.target import check_output_file

    check_limit(args.limit)
    check_device(args.device)
    for model in args.models:
        adapter = "+" in str(model) and not model.is_dir()
        if not adapter and not (model / "config.json").is_file():
            raise CheckpointError(f"{model} is not a checkpoint directory (no config.json)"
                                  + close_matches(str(model), [model]),
                                  hint="give the directory written by save_pretrained or by `mergesmith merge`")
        if args.save and adapter:
            raise OptionsError(f"--save writes MODEL/eval.json, but {model} is a base with an adapter, "
                               "not a folder", hint="use --json FILE for its scores")
        if args.save and not os.access(model, os.W_OK):
            raise OptionsError(f"--save cannot write into {model} (no permission)", hint="use --json FILE instead")
    if args.json is not None:
        check_output_file(args.json, _inputs(args), what="--json", suffix=".json")


def _inputs(args: argparse.Namespace) -> list[tuple[str, Path]]:
    """Every file and folder eval reads: --json may overwrite none of them."""
    models = [(str(m), Path(part)) for m in args.models for part in str(m).split("+")]
    files = [spec.partition("=")[2] for spec in args.task] + [str(p) for p in args.perplexity]
    files += [str(p) for p in (args.phrases, args.lm_eval_include) if p is not None]
    return models + [(f, Path(f)) for f in files if f]


def run(args: argparse.Namespace) -> int:
    from mergesmith.evaluate import load_model
    from mergesmith.evaluate.spec import build_evaluator
    from mergesmith.io.target import write_file_atomic
    from mergesmith.report.evals import save_eval

    _check_before_loading(args)
    evaluators = [build_evaluator(spec, args.device) for spec in _specs(args)]
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        loaded = load_model(model, device=args.device)
        scores: dict[str, float] = {}
        for evaluator in evaluators:
            scores.update(evaluator.evaluate(loaded.model, loaded.tokenizer))
        results[str(model)] = scores
        print(f"{model}: " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
        if args.save:
            print(f"  saved {_written(save_eval, model, scores)}")
    if args.json:
        write_file_atomic(args.json, json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0


def _written(write, where: Path, content):
    """write(where, content), with a disk error as a message that names the file."""
    from mergesmith.io.target import output_error

    try:
        return write(where, content)
    except OSError as exc:
        raise output_error(exc, where) from None
