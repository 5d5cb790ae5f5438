"""The demo family's recipe: model size, training steps and data sizes, full and quick.

Changing anything here changes the settings hash, so cached families are rebuilt.
`FAMILY_VERSION` covers changes to the code that builds the data or trains the models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mergesmith.demo.training import ModelSize, TrainConfig

FAMILY_VERSION = 2


@dataclass(frozen=True)
class FamilySettings:
    seed: int
    quick: bool
    size: ModelSize
    pretrain: TrainConfig
    finetune: dict[str, TrainConfig]
    vocab_size: int = 384
    # Pre-training sequences join this many corpus lines with newlines, as in corpus.txt.
    lines_per_sequence: int = 1
    search_examples: int = 100  # per skill, for searches to tune on
    test_examples: int = 200  # per skill, never tuned on
    calibration_lines: int = 256
    heldout_corpus_lines: int = 400
    # One thread: 2-thread OpenMP collapses when other processes share the cores.
    pretrain_threads: int = 1
    version: int = field(default=FAMILY_VERSION)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FamilySettings:
        """The inverse of `dataclasses.asdict` (for worker processes)."""
        fields = dict(raw)
        fields["size"] = ModelSize(**raw["size"])
        fields["pretrain"] = TrainConfig(**raw["pretrain"])
        fields["finetune"] = {k: TrainConfig(**v) for k, v in raw["finetune"].items()}
        return cls(**fields)

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


# Wide and shallow: at hidden 64 x 4 layers no merge kept more than the base knew (every
# expert's delta broke the others' skills); at 128 x 2 the same recipe keeps the experts' gains.
# One step costs 1.5x the narrow model's (demo/README.md).
_SIZE = ModelSize(
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def _experts(steps: int, lr: float) -> dict[str, TrainConfig]:
    """Brief full fine-tuning, half of it rehearsal (other skills, the base's own answers)."""
    return {
        skill: TrainConfig(steps=steps, lr=lr, batch_size=32, replay=0.5, matrices_only=True)
        for skill in ("add", "reverse", "sort", "count")
    }


def full_settings(seed: int) -> FamilySettings:
    """The default family (figures in demo/README.md): a base pre-trained on prose and solved
    examples of every skill, stopped while it half-knows them; experts fine-tuned briefly."""
    return FamilySettings(
        seed=seed,
        quick=False,
        size=_SIZE,
        pretrain=TrainConfig(steps=1200, lr=3e-3, batch_size=64, answer_only=False),
        finetune=_experts(steps=400, lr=5e-4),
    )


def quick_settings(seed: int) -> FamilySettings:
    """The family for tests: the same models (the skills' learning curves are steep, so a
    shorter training lands elsewhere on them); smaller evaluation and calibration sets."""
    return replace(full_settings(seed), quick=True, search_examples=50, test_examples=100,
                   calibration_lines=64, heldout_corpus_lines=200)
