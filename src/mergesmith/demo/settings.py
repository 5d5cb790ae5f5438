"""The demo family's recipe: model size, training steps and data sizes, full and quick.

Changing anything here changes the settings hash, so cached families are rebuilt.
`FAMILY_VERSION` covers changes to the code that builds the data or trains the models.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from mergesmith.demo.training import ModelSize, TrainConfig

FAMILY_VERSION = 1


@dataclass(frozen=True)
class FamilySettings:
    seed: int
    quick: bool
    size: ModelSize
    pretrain: TrainConfig
    finetune: dict[str, TrainConfig]
    vocab_size: int = 384
    # Pre-training sequences join this many corpus lines with newlines, as in corpus.txt.
    lines_per_sequence: int = 2
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


_SIZE = ModelSize(
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def full_settings(seed: int) -> FamilySettings:
    """The default family: each expert >= 90% on its own skill (figures in demo/README.md).

    lr 1e-3 with small batches: more updates for the same compute, which these skills (each
    learnt through a sudden drop of the loss) need more than larger batches.
    """
    return FamilySettings(
        seed=seed,
        quick=False,
        size=_SIZE,
        pretrain=TrainConfig(steps=400, lr=3e-3, batch_size=32, answer_only=False),
        finetune={
            "add": TrainConfig(steps=1000, lr=1e-3, batch_size=32),
            "reverse": TrainConfig(steps=600, lr=1e-3, batch_size=32),
            "sort": TrainConfig(steps=1400, lr=1e-3, batch_size=16),
            "count": TrainConfig(steps=400, lr=1e-3, batch_size=32),
        },
    )


def quick_settings(seed: int) -> FamilySettings:
    """A faster family for tests: half the pre-training batch; fewer, larger fine-tuning steps.

    lr 3e-3 (add, sort) trades task-vector size for speed: fine for tests, not for merge
    studies. Per skill, whichever setting reached the skill's loss drop soonest.
    """
    return FamilySettings(
        seed=seed,
        quick=True,
        size=_SIZE,
        pretrain=TrainConfig(steps=400, lr=3e-3, batch_size=16, answer_only=False),
        finetune={
            "add": TrainConfig(steps=450, lr=3e-3, batch_size=32),
            "reverse": TrainConfig(steps=600, lr=1e-3, batch_size=32),
            "sort": TrainConfig(steps=450, lr=3e-3, batch_size=32),
            "count": TrainConfig(steps=400, lr=1e-3, batch_size=16),
        },
        search_examples=50,
        test_examples=100,
        calibration_lines=64,
        heldout_corpus_lines=200,
    )
