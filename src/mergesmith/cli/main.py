"""Entry point: parse arguments, dispatch to a subcommand, map errors to exit codes.

Exit codes: 0 success; 1 a failure on valid input; 2 a bad recipe or bad options.
Tracebacks are shown only with --debug. Subcommand modules import their heavy dependencies
on use, so `mergesmith --help` does not pay for torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from types import ModuleType

from mergesmith.cli import (
    cmd_demo,
    cmd_eval,
    cmd_evolve,
    cmd_extract_lora,
    cmd_inspect,
    cmd_map,
    cmd_merge,
    cmd_methods,
    cmd_moe,
    cmd_monster,
    cmd_plan,
    cmd_report,
    cmd_schema,
    cmd_soup,
    cmd_validate,
)
from mergesmith.errors import EXIT_FAILURE, EXIT_USAGE, MergeError

COMMANDS = {
    "merge": "Merge models as a recipe says and write the result.",
    "plan": "Show what a merge would do, from headers alone (no tensor is read).",
    "validate": "Check a recipe (and, with --models, its models) without merging.",
    "methods": "List the merge methods and their parameters.",
    "schema": "Print the JSON schema of recipes.",
    "eval": "Score models: exact-match tasks (JSONL) and perplexity.",
    "demo": "Build a tiny model family, merge it with several methods, and evaluate.",
    "moe": "Build a mixture of experts from dense models (mergekit-moe configs).",
    "extract-lora": "Extract a PEFT LoRA adapter from a fine-tune and its base (truncated SVD).",
    "inspect": "Measure task vectors against a base: norms, cosines, sign conflicts, density.",
    "report": "Write a self-contained HTML report with plots for a merged (or inspected) model.",
    "monster": "MergeMonster: keep layer merges that lower unwanted phrase probabilities.",
    "map": "MonsterMapper: the base model's most probable continuations of each phrase context.",
    "soup": "Uniform and greedy model soups, ranked by held-out scores.",
    "evolve": "Evolutionary merging: CMA-ES over merge parameters or the layer path.",
}
MODULES: dict[str, ModuleType] = {
    "merge": cmd_merge, "plan": cmd_plan, "validate": cmd_validate, "methods": cmd_methods,
    "schema": cmd_schema, "eval": cmd_eval, "demo": cmd_demo, "moe": cmd_moe,
    "extract-lora": cmd_extract_lora, "inspect": cmd_inspect, "report": cmd_report,
    "monster": cmd_monster, "map": cmd_map, "soup": cmd_soup, "evolve": cmd_evolve,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's own errors: exit code 2, one line
        self.print_usage(sys.stderr)
        sys.stderr.write(f"mergesmith: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    from mergesmith.version import __version__

    parser = _Parser(prog="mergesmith", description="Merge the weights of large language models.")
    parser.add_argument("--version", action="version", version=f"mergesmith {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, help_text in COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--debug", action="store_true", help="show tracebacks on errors")
        MODULES[name].add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    import logging

    # transformers' own bars ("Loading weights", "Writing model shards") would interleave
    # with ours and the tables; a user can still turn them on by setting the variable to 0.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(format="mergesmith: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        return int(MODULES[args.command].run(args) or 0)
    except MergeError as exc:
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"mergesmith: error: {exc.render()}\n  (docs/errors.md#{exc.anchor})\n")
        return exc.exit_code
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        sys.stderr.close()
        return 0
    except KeyboardInterrupt as exc:
        # A command that kept work for --resume says what and how in the exception's message;
        # a bare Ctrl-C (str(exc) == "") got to no such point: every writer cleans up first.
        sys.stderr.write(f"mergesmith: interrupted; {str(exc) or 'no output was left behind'}\n")
        return 130
    except Exception as exc:  # a bug: say so plainly, full trace with --debug
        if args.debug:
            traceback.print_exc()
        sys.stderr.write(f"mergesmith: internal error: {type(exc).__name__}: {exc}\n"
                         "  run again with --debug for the traceback, and please report it\n")
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
