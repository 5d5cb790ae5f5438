"""Exact-match accuracy on prompt/answer tasks, with batched greedy decoding.

A task is a JSONL file of `{"prompt": ..., "answer": ...}` lines (or the examples
themselves). The model continues each prompt greedily; the continuation, cut at the first
stop string and stripped of surrounding whitespace, must equal the stripped answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.evaluate.base import Scores, check_limit, eval_mode, padding_side, read_text_file
from mergesmith.evaluate.loading import LoadedModel, ModelSource, loaded_model


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


TaskSource = str | Path | Sequence[Example]


def load_examples(path: str | Path) -> list[Example]:
    """Read a JSONL task file; a malformed line is reported with its number."""
    path = Path(path)
    examples = []
    for number, line in enumerate(read_text_file(path, "task file").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            examples.append(Example(prompt=str(record["prompt"]), answer=str(record["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise OptionsError(
                f"{path}:{number}: not a JSON object with 'prompt' and 'answer' ({exc})",
                hint='one JSON object a line: {"prompt": "2+2=", "answer": "4"}',
            ) from None
    if not examples:
        raise OptionsError(f"task file {path} has no examples",
                           hint='one JSON object a line: {"prompt": "2+2=", "answer": "4"}')
    return examples


def write_examples(path: str | Path, examples: Sequence[Example]) -> None:
    with Path(path).open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps({"prompt": example.prompt, "answer": example.answer}) + "\n")


class ExactMatchEvaluator:
    """Accuracy per task (`<name>/<task>`) and their mean (`<name>/mean`, the primary)."""

    higher_is_better = True

    def __init__(
        self,
        tasks: Mapping[str, TaskSource],
        *,
        name: str = "exact_match",
        batch_size: int = 64,
        stop: Sequence[str] = ("\n",),
        limit: int | None = None,
        device: str | None = None,
    ) -> None:
        if not tasks:
            raise OptionsError("ExactMatchEvaluator needs at least one task")
        if batch_size < 1:
            raise OptionsError(f"batch_size must be >= 1, got {batch_size}")
        check_limit(limit)
        self.tasks = {task: _as_examples(source)[:limit] for task, source in tasks.items()}
        self.name = name
        self.primary = f"{name}/mean"
        self.batch_size = batch_size
        self.stop = tuple(stop)
        self.device = device

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores:
        loaded = loaded_model(model, tokenizer, device=self.device)
        scores = {f"{self.name}/{task}": self.accuracy(loaded, task) for task in self.tasks}
        scores[self.primary] = sum(scores.values()) / len(scores)
        return scores

    def accuracy(self, loaded: LoadedModel, task: str) -> float:
        examples = self.tasks[task]
        outputs = self.predictions(loaded, task)
        hits = sum(out == ex.answer.strip() for out, ex in zip(outputs, examples))
        return hits / len(examples)

    def predictions(self, loaded: LoadedModel, task: str) -> list[str]:
        """The model's normalised answers to `task`, in the task's order."""
        examples = self.tasks[task]
        prompts = [ex.prompt for ex in examples]
        budget = answer_token_budget(loaded.tokenizer, examples)
        texts = greedy_generate(loaded, prompts, max_new_tokens=budget, batch_size=self.batch_size)
        return [_cut(text, self.stop) for text in texts]


def answer_token_budget(tokenizer: Any, examples: Sequence[Example]) -> int:
    """max_new_tokens: the longest answer in tokens, measured in context, plus one.

    The answer is measured as the tokens prompt+answer adds to the prompt, since an answer
    can tokenize differently alone. The extra token lets the model end (EOS, newline); a
    model that runs on past the answer gets it wrong, as it should.
    """
    prompts = [ex.prompt for ex in examples]
    full = [ex.prompt + ex.answer for ex in examples]
    prompt_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    full_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    return max(len(f) - len(p) for f, p in zip(full_ids, prompt_ids)) + 1


def greedy_generate(
    loaded: LoadedModel, prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 64
) -> list[str]:
    """Greedy continuations of `prompts` (special tokens dropped), batched with left padding."""
    from transformers import GenerationConfig

    model, tokenizer = loaded.model, loaded.tokenizer
    # Similar lengths in one batch waste less compute on padding.
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(prompts)
    with padding_side(tokenizer, "left"), eval_mode(model):
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            encoded = tokenizer(
                [prompts[i] for i in chunk],
                return_tensors="pt",
                padding=True,
                return_token_type_ids=False,
            ).to(loaded.device)
            output = model.generate(**encoded, generation_config=config)
            new_tokens = output[:, encoded["input_ids"].shape[1] :]
            for i, text in zip(chunk, tokenizer.batch_decode(new_tokens, skip_special_tokens=True)):
                texts[i] = text
    return texts


def _cut(text: str, stop: Sequence[str]) -> str:
    for marker in stop:
        index = text.find(marker)
        if index >= 0:
            text = text[:index]
    return text.strip()


def _as_examples(source: TaskSource) -> list[Example]:
    if isinstance(source, (str, Path)):
        return load_examples(source)
    examples = [ex if isinstance(ex, Example) else Example(**ex) for ex in source]
    if not examples:
        raise OptionsError("a task has no examples", hint="give a task file with at least one example")
    return examples
