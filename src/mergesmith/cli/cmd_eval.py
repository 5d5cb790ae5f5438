"""`mergesmith eval MODEL... --task NAME=FILE.jsonl --perplexity FILE`: score models with the
built-in evaluators (exact-match tasks, perplexity) and print a table; --json writes scores."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="+", type=Path, help="model directories (Hugging Face checkpoints)")
    p.add_argument("--task", action="append", default=[], metavar="NAME=FILE",
                   help='exact-match task: JSONL of {"prompt", "answer"} (repeatable)')
    p.add_argument("--perplexity", type=Path, action="append", default=[], metavar="FILE",
                   help="text file for sliding-window perplexity (repeatable)")
    p.add_argument("--limit", type=int, default=None, help="at most this many examples per task")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--json", type=Path, default=None, help="write all scores to this JSON file")


def _tasks(specs: list[str]) -> dict[str, Path]:
    from mergesmith.errors import OptionsError

    tasks = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise OptionsError(f"--task {spec!r}: expected NAME=FILE.jsonl", hint="e.g. --task add=add.jsonl")
        if not Path(path).is_file():
            raise OptionsError(f"--task {spec!r}: {path} does not exist", hint="give a JSONL file of prompts and answers")
        tasks[name] = Path(path)
    return tasks


def run(args: argparse.Namespace) -> int:
    from mergesmith.errors import OptionsError
    from mergesmith.evaluate import ExactMatchEvaluator, PerplexityEvaluator, load_model

    tasks = _tasks(args.task)
    if not tasks and not args.perplexity:
        raise OptionsError("nothing to evaluate", hint="give --task NAME=FILE.jsonl and/or --perplexity FILE")
    for path in args.perplexity:
        if not path.is_file():
            raise OptionsError(f"--perplexity {path}: no such file", hint="give a UTF-8 text file")
    evaluators = [ExactMatchEvaluator(tasks, limit=args.limit, device=args.device)] if tasks else []
    evaluators += [PerplexityEvaluator(p, name=f"perplexity/{p.stem}", device=args.device) for p in args.perplexity]
    results: dict[str, dict[str, float]] = {}
    for model in args.models:
        loaded = load_model(model, device=args.device)
        scores: dict[str, float] = {}
        for evaluator in evaluators:
            scores.update(evaluator.evaluate(loaded.model, loaded.tokenizer))
        results[str(model)] = scores
        print(f"{model}: " + "  ".join(f"{k} {v:.4g}" for k, v in scores.items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.json}")
    return 0
