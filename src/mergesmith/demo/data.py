"""Writing the demo family's data files: evaluation sets, corpus, calibration texts.

Every random stream is named (`random.Random(f"{seed}:{purpose}")`; string seeds are hashed
with SHA-512, so they do not depend on PYTHONHASHSEED), which keeps the streams independent:
changing the size of one never shifts another.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from mergesmith.demo.settings import FamilySettings
from mergesmith.demo.tasks import SKILLS, corpus_line, prose, training_examples, unique_examples
from mergesmith.evaluate.exact_match import Example, write_examples


@dataclass(frozen=True)
class DataLayout:
    root: Path

    @property
    def corpus(self) -> Path:
        return self.root / "corpus.txt"

    @property
    def heldout_corpus(self) -> Path:
        return self.root / "corpus_heldout.txt"

    def search_set(self, skill: str) -> Path:
        return self.root / "search" / f"{skill}.jsonl"

    def test_set(self, skill: str) -> Path:
        return self.root / "test" / f"{skill}.jsonl"

    def calibration(self, skill: str) -> Path:
        return self.root / "calibration" / f"{skill}.txt"


def stream(seed: int, purpose: str) -> random.Random:
    return random.Random(f"{seed}:{purpose}")


def write_eval_sets(layout: DataLayout, settings: FamilySettings) -> dict[str, set[str]]:
    """Write the search and test sets (disjoint); return every held-out prompt per skill."""
    held_out: dict[str, set[str]] = {}
    n_search, n_test = settings.search_examples, settings.test_examples
    for name in settings.finetune:
        rng = stream(settings.seed, f"eval:{name}")
        pairs = unique_examples(SKILLS[name].generate, n_search + n_test, rng)
        examples = [Example(prompt, answer) for prompt, answer in pairs]
        for path, part in (
            (layout.search_set(name), examples[:n_search]),
            (layout.test_set(name), examples[n_search:]),
        ):
            path.parent.mkdir(parents=True, exist_ok=True)
            write_examples(path, part)
        held_out[name] = {prompt for prompt, _ in pairs}
    return held_out


def write_corpus(
    layout: DataLayout, settings: FamilySettings, held_out: dict[str, set[str]]
) -> list[str]:
    """Write the pre-training corpus and a held-out sample of it; return the training lines.

    Neither holds an evaluation prompt: the skills' easy examples in the corpus avoid them."""
    n_train = settings.pretrain.steps * settings.pretrain.batch_size * settings.lines_per_sequence
    rng = stream(settings.seed, "corpus")
    lines = [corpus_line(rng, held_out) for _ in range(n_train)]
    heldout_rng = stream(settings.seed, "corpus-heldout")
    heldout = [corpus_line(heldout_rng, held_out) for _ in range(settings.heldout_corpus_lines)]
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    layout.heldout_corpus.write_text("\n".join(heldout) + "\n", encoding="utf-8")
    return lines


def tokenizer_texts(settings: FamilySettings) -> list[str]:
    """Lowercase prose for learning the BPE merges (never the skills' letters and digits)."""
    rng = stream(settings.seed, "tokenizer")
    return [prose(rng) for _ in range(2000)]


def skill_training_pairs(
    settings: FamilySettings, skill: str, held_out: set[str]
) -> list[tuple[str, str]]:
    """The expert's own-skill training examples, in training order, none of them held out."""
    config = settings.finetune[skill]
    n = config.steps * config.batch_size - replay_count(settings, skill)
    rng = stream(settings.seed, f"train:{skill}")
    return training_examples(SKILLS[skill].generate, n, rng, held_out)


def replay_count(settings: FamilySettings, skill: str) -> int:
    config = settings.finetune[skill]
    return round(config.steps * config.batch_size * config.replay)


def replay_prompts(
    settings: FamilySettings, skill: str, held_out: dict[str, set[str]]
) -> list[str]:
    """Other skills' prompts for the expert's rehearsal (answered by the base), none held out."""
    others = [name for name in settings.finetune if name != skill]
    rng = stream(settings.seed, f"replay:{skill}")
    prompts = []
    for _ in range(replay_count(settings, skill)):
        other = rng.choice(others)
        prompts.append(training_examples(SKILLS[other].generate, 1, rng, held_out[other])[0][0])
    return prompts


def interleave(
    own: list[tuple[str, str]], replay: list[tuple[str, str]], seed: int, skill: str
) -> list[tuple[str, str]]:
    """One training order for both parts, the same on every machine."""
    mixed = own + replay
    stream(seed, f"interleave:{skill}").shuffle(mixed)
    return mixed


def write_calibration(
    layout: DataLayout, settings: FamilySettings, held_out: dict[str, set[str]]
) -> None:
    """Per expert, a text of its skill's solved examples (for calibration-based merges)."""
    for name in settings.finetune:
        rng = stream(settings.seed, f"calibration:{name}")
        pairs = training_examples(
            SKILLS[name].generate, settings.calibration_lines, rng, held_out[name]
        )
        path = layout.calibration(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(p + a + "\n" for p, a in pairs), encoding="utf-8")
