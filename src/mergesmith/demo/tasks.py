"""The demo family's data: the skills, checkable by exact match, and the pre-training corpus.

A skill example is a prompt and an answer: "add 23+48=" -> "71". Prompts start with the
skill's name and end with "=", so a task is never ambiguous. Every generator draws from a
`random.Random` it is handed, so the data depends only on the seed.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass

LETTERS = string.ascii_uppercase
COUNT_ALPHABET = "ABC"  # few letters, so counts spread over 0..6 rather than sitting at 0

Generator = Callable[[random.Random], tuple[str, str]]


def _letters(rng: random.Random, low: int, high: int, alphabet: str = LETTERS) -> str:
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(low, high)))


def add(rng: random.Random) -> tuple[str, str]:
    """Two-digit addition, with carries: "add 23+48=" -> "71"."""
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    return f"add {a}+{b}=", str(a + b)


def reverse(rng: random.Random) -> tuple[str, str]:
    """Reverse 3 to 6 letters: "rev KQXM=" -> "MXQK"."""
    word = _letters(rng, 3, 6)
    return f"rev {word}=", word[::-1]


def sort(rng: random.Random) -> tuple[str, str]:
    """Sort 3 to 6 letters alphabetically: "sort DBAC=" -> "ABCD"."""
    word = _letters(rng, 3, 6)
    return f"sort {word}=", "".join(sorted(word))


def count(rng: random.Random) -> tuple[str, str]:
    """How often a letter occurs in 3 to 8 letters of A-C: "count B in ABBCA=" -> "2"."""
    word = _letters(rng, 3, 8, COUNT_ALPHABET)
    letter = rng.choice(COUNT_ALPHABET)
    return f"count {letter} in {word}=", str(word.count(letter))


@dataclass(frozen=True)
class Skill:
    name: str
    generate: Generator
    description: str


SKILLS: dict[str, Skill] = {
    "add": Skill("add", add, "two-digit addition"),
    "reverse": Skill("reverse", reverse, "reverse 3-6 letters"),
    "sort": Skill("sort", sort, "sort 3-6 letters"),
    "count": Skill("count", count, "count a letter among 3-8 letters of A-C"),
}


def unique_examples(
    generate: Generator, n: int, rng: random.Random, exclude: set[str] = frozenset()
) -> list[tuple[str, str]]:
    """`n` examples with distinct prompts, none of them in `exclude`."""
    seen = set(exclude)
    out: list[tuple[str, str]] = []
    for _ in range(n * 1000):
        prompt, answer = generate(rng)
        if prompt not in seen:
            seen.add(prompt)
            out.append((prompt, answer))
            if len(out) == n:
                return out
    raise RuntimeError(f"could not draw {n} distinct examples")


def training_examples(
    generate: Generator, n: int, rng: random.Random, held_out: set[str]
) -> list[tuple[str, str]]:
    """`n` training examples (repeats allowed), never one of the held-out prompts."""
    out: list[tuple[str, str]] = []
    while len(out) < n:
        prompt, answer = generate(rng)
        if prompt not in held_out:
            out.append((prompt, answer))
    return out


# The pre-training corpus: simple prose, the raw material the skills are built from (letters
# in order, counting, one-digit sums, copying) and solved examples of every skill, so that the
# base half-knows each skill before any expert is fine-tuned, as a pre-trained LLM does.
_SUBJECTS = ("the cat", "the dog", "a bird", "my friend", "the old man", "a small child",
             "the teacher", "her brother", "the farmer", "a red fox")  # fmt: skip
_VERBS = ("sat on", "looked at", "ran to", "walked past", "found", "lost", "painted",
          "cleaned", "jumped over", "slept near")  # fmt: skip
_OBJECTS = ("the mat", "the door", "a box", "the river", "the tall tree", "the garden",
            "a green hat", "the blue car", "the wall", "the bridge")  # fmt: skip
_TAILS = ("today", "at night", "in the morning", "again", "slowly", "with a smile",
          "after lunch", "in the rain")  # fmt: skip


def prose(rng: random.Random) -> str:
    sentence = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}"
    if rng.random() < 0.5:
        sentence += " " + rng.choice(_TAILS)
    return sentence + "."


def _letter_run(rng: random.Random) -> str:
    start, length = rng.randint(0, 20), rng.randint(3, 6)
    return "the letters go " + " ".join(LETTERS[start : start + length]) + "."


def _number_run(rng: random.Random) -> str:
    start, length = rng.randint(0, 95), rng.randint(3, 5)
    return "the numbers go " + " ".join(str(k) for k in range(start, start + length)) + "."


def _digit_sum(rng: random.Random) -> str:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    return f"{a} and {b} make {a + b}."


def _copy(rng: random.Random) -> str:
    word = _letters(rng, 3, 8, LETTERS + string.digits)
    return f"copy {word}={word}"


# Relative weights: the skills are two thirds of the lines, the harder ones more often (with
# equal shares the base knew sort and count far better than reverse; see demo/README.md).
_CORPUS_MIX: tuple[tuple[str | Callable[[random.Random], str], float], ...] = (
    (prose, 2.0),
    (_letter_run, 0.5),
    (_number_run, 0.5),
    (_digit_sum, 0.5),
    (_copy, 0.5),
    ("add", 3.0),
    ("reverse", 1.5),
    ("sort", 2.5),
    ("count", 2.0),
)


def corpus_line(rng: random.Random, held_out: Mapping[str, set[str]]) -> str:
    """One line of the pre-training corpus; a skill's line is never one of its `held_out`."""
    sources, weights = zip(*_CORPUS_MIX)
    source = rng.choices(sources, weights)[0]
    if callable(source):
        return source(rng)
    while True:
        prompt, answer = SKILLS[source].generate(rng)
        if prompt not in held_out.get(source, ()):
            return prompt + answer


def prose_vocabulary() -> list[str]:
    """Every prose sentence part, for learning the tokenizer's merges."""
    words = [*_SUBJECTS, *_VERBS, *_OBJECTS, *_TAILS, "the letters go", "the numbers go"]
    return [*words, "and make copy add rev sort count in"]
