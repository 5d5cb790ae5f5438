"""The Evaluator protocol shared by every evaluator, and what evaluators share.

An evaluator takes a model - a checkpoint path, or an in-memory transformers model plus its
tokenizer - and returns `Scores`, a flat dict of named floats. Each evaluator names one
`primary` score and whether higher is better, so a search can rank candidates without
knowing which evaluator it holds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from mergesmith.errors import MergeError, OptionsError
from mergesmith.evaluate.loading import ModelSource, loaded_model

Scores = dict[str, float]


@runtime_checkable
class Evaluator(Protocol):
    """Scores a model. `primary` names the score a search optimises."""

    name: str
    primary: str
    higher_is_better: bool

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores: ...


def check_limit(limit: int | None, where: str = "--limit") -> int | None:
    """A limit of examples is a whole number of at least 1 (0 would score nothing, and a
    negative one would silently drop examples from the end)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise OptionsError(f"{where} {limit!r}: must be a whole number of at least 1",
                           hint="leave it out to use every example")
    return limit


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """A UTF-8 text input (task, perplexity or phrase file), with errors that name it."""
    from mergesmith.io.files import check_regular

    path = Path(path)
    if not path.exists():
        raise OptionsError(f"{what} {path} does not exist", hint="check the path")
    try:
        check_regular(path, what)
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise OptionsError(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})",
                           hint="save the file as UTF-8") from None
    except OSError as exc:
        raise OptionsError(f"{what} {path}: cannot read: {exc.strerror or exc}",
                           hint="check that the file exists and is readable") from None
    except MergeError as exc:
        raise OptionsError(exc.message, hint=exc.hint) from None


def objective(evaluator: Evaluator, scores: Scores) -> float:
    """The primary score signed so that higher is always better (for searches)."""
    value = scores[evaluator.primary]
    return value if evaluator.higher_is_better else -value


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode and no autograd for the duration; the caller's training flag is restored."""
    import torch

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


@contextlib.contextmanager
def padding_side(tokenizer: Any, side: str) -> Iterator[None]:
    """Temporarily pad on `side`; a tokenizer without a pad token pads with EOS."""
    old_side, old_pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = side
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise OptionsError("the tokenizer has neither a pad token nor an EOS token")
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield
    finally:
        tokenizer.padding_side = old_side
        if old_pad is None:
            tokenizer.pad_token = None


class CompositeEvaluator:
    """Several evaluators as one: their scores in one dict (names must not clash).

    The primary score is the first evaluator's unless `primary` names another key.
    """

    def __init__(self, evaluators: list[Evaluator], *, primary: str | None = None) -> None:
        if not evaluators:
            raise OptionsError("CompositeEvaluator needs at least one evaluator")
        self.evaluators = list(evaluators)
        self.name = "+".join(e.name for e in evaluators)
        first = evaluators[0]
        self.primary = primary or first.primary
        owner = next((e for e in evaluators if self.primary.startswith(e.name)), first)
        self.higher_is_better = owner.higher_is_better

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores:
        # Load once, so a path is not read from disk by every evaluator.
        loaded = loaded_model(model, tokenizer)
        scores: Scores = {}
        for evaluator in self.evaluators:
            for key, value in evaluator.evaluate(loaded).items():
                if key in scores:
                    raise OptionsError(f"two evaluators both report the score {key!r}")
                scores[key] = value
        return scores
