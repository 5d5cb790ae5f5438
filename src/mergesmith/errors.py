"""One exception hierarchy for mergesmith, and the CLI exit codes it maps to.

A message says what happened, where (file, key, line, model, tensor), why, and how to fix
it. `exit_code` is 2 for a bad recipe or bad options, 1 for a failure on valid input.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_FAILURE = 1
EXIT_USAGE = 2


class MergeError(Exception):
    """Base class of every error mergesmith raises on purpose.

    `problems`: every problem found at once (a config's), listed under the message."""

    exit_code = EXIT_FAILURE
    anchor = "merge-error"

    def __init__(self, message: str, *, hint: str | None = None, problems: list[str] | None = None) -> None:
        self.message = message
        self.hint = hint
        self.problems = problems or []
        super().__init__(self.render())

    def render(self) -> str:
        text = self.message + "".join(f"\n  - {problem}" for problem in self.problems)
        if self.hint:
            text += f"\n  fix: {self.hint}"
        return text


class RecipeError(MergeError):
    """The recipe is malformed or inconsistent (exit code 2)."""

    exit_code = EXIT_USAGE
    anchor = "recipe-error"


class OptionsError(MergeError):
    """A command-line option or API argument is invalid (exit code 2)."""

    exit_code = EXIT_USAGE
    anchor = "options-error"


class CheckpointError(MergeError):
    """A checkpoint is missing, unreadable or malformed (exit code 1)."""

    anchor = "checkpoint-error"


class IncompatibleModelsError(MergeError):
    """The inputs cannot be merged as asked: shapes, layers, vocabularies (exit code 2).

    The inputs are valid on their own; the recipe asks for something they cannot give, so
    the fix is in the recipe (exit code 2).
    """

    exit_code = EXIT_USAGE
    anchor = "incompatible-models"


class MethodError(MergeError):
    """A merge method failed on valid input (exit code 1)."""

    anchor = "method-error"


class OutputError(MergeError):
    """The output cannot be written: disk full, permissions, locked target (exit code 1)."""

    anchor = "output-error"


def missing_extra(package: str, extra: str, needed_for: str) -> OptionsError:
    """The error for an optional dependency that is not installed: it names the extra."""
    return OptionsError(f"{needed_for} needs {package}, which is not installed",
                        hint=f"pip install 'mergesmith[{extra}]' (or pip install {package})")


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ' (did you mean "x"?)' for the closest candidate, or '' when none is close."""
    matches = difflib.get_close_matches(str(word), list(candidates), n=1, cutoff=0.6)
    return f' (did you mean "{matches[0]}"?)' if matches else ""
