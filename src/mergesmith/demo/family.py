"""Build the demo family: a tiny Llama base and one expert per skill, fine-tuned from it.

    family = build_family(Path("~/.cache/mergesmith/demo"))  # about 2 minutes on 2 cores
    family.base, family.experts["add"], family.test_sets["add"]

The build is cached: a second call with the same directory and settings returns at once.
It writes into a sibling temporary directory and renames it into place when complete, so
an interrupted build leaves nothing half-written behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mergesmith.demo.data import (
    DataLayout,
    tokenizer_texts,
    write_calibration,
    write_corpus,
    write_eval_sets,
)
from mergesmith.demo.experts import ExpertJob, copy_tokenizer, run_jobs
from mergesmith.demo.settings import FamilySettings, full_settings, quick_settings
from mergesmith.demo.tokenizer import save_tokenizer, train_tokenizer
from mergesmith.demo.training import encode, llama_config, seed_everything, train
from mergesmith.errors import OutputError
from mergesmith.threads import torch_threads

log = logging.getLogger("mergesmith.demo")

MARKER = ".complete.json"
MANIFEST = "family.json"


@dataclass(frozen=True)
class Family:
    """Paths of a built family. Every model directory is a normal HF checkpoint."""

    root: Path
    base: Path
    experts: dict[str, Path]
    search_sets: dict[str, Path]  # JSONL per skill: searches may tune on these
    test_sets: dict[str, Path]  # JSONL per skill: for reporting only, never tuned on
    calibration: dict[str, Path]  # text per skill (its expert's kind of data)
    corpus: Path  # the base's pre-training text
    heldout_corpus: Path  # fresh text from the same mix, for perplexity
    digest: str

    @property
    def skills(self) -> list[str]:
        return list(self.experts)

    def manifest(self) -> dict[str, Any]:
        """Settings, training statistics and build times, as written by the build."""
        return json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))

    @classmethod
    def at(cls, root: Path, skills: list[str], digest: str) -> Family:
        data = DataLayout(root / "data")
        return cls(
            root=root,
            base=root / "base",
            experts={s: root / "experts" / s for s in skills},
            search_sets={s: data.search_set(s) for s in skills},
            test_sets={s: data.test_set(s) for s in skills},
            calibration={s: data.calibration(s) for s in skills},
            corpus=data.corpus,
            heldout_corpus=data.heldout_corpus,
            digest=digest,
        )


def build_family(
    workdir: str | Path, *, quick: bool = False, seed: int = 0, workers: int | None = None
) -> Family:
    """Build (or return the cached) demo family in `workdir`.

    `quick` builds a smaller family for tests (under a minute, less accurate experts).
    `workers` processes fine-tune the experts side by side (default: up to 2); each uses
    one thread, so the result does not depend on it.
    """
    settings = quick_settings(seed) if quick else full_settings(seed)
    root = Path(workdir).expanduser().resolve()
    cached = load_family(root, settings)
    if cached is not None:
        return cached
    _check_target(root)
    partial = root.with_name(f"{root.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        _build_into(partial, settings, workers or min(2, os.cpu_count() or 1))
        _install(partial, root, settings)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    family = load_family(root, settings)
    assert family is not None
    return family


def load_family(root: Path, settings: FamilySettings) -> Family | None:
    """The family at `root` if it is complete and was built with `settings`, else None."""
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if marker.get("digest") != settings.digest():
        return None
    return Family.at(root, list(settings.finetune), settings.digest())


def _check_target(root: Path) -> None:
    # Never delete a directory we did not make: only an old family or an empty directory.
    if root.exists() and not (root / MARKER).exists() and any(root.iterdir()):
        raise OutputError(
            f"{root} exists and is not a demo family",
            hint="give an empty or new directory for the demo family",
        )


def _install(partial: Path, root: Path, settings: FamilySettings) -> None:
    marker = {"digest": settings.digest(), "version": settings.version}
    (partial / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    if load_family(root, settings) is not None:
        return  # another process finished the same family first
    if root.exists():
        _check_target(root)
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, root)


def _build_into(partial: Path, settings: FamilySettings, workers: int) -> None:
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    layout = DataLayout(partial / "data")
    held_out = write_eval_sets(layout, settings)
    corpus = write_corpus(layout, settings, held_out)
    write_calibration(layout, settings, held_out)
    tokenizer_dir = partial / "tokenizer"
    save_tokenizer(train_tokenizer(tokenizer_texts(settings), vocab_size=settings.vocab_size),
                   tokenizer_dir)  # fmt: skip
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    base_stats = _pretrain(settings, corpus, tokenizer_dir, partial / "base")
    timings["pretrain_s"] = time.perf_counter() - t0
    log.info("pre-trained the base in %.1f s", timings["pretrain_s"])
    experts = partial / "experts"
    jobs = [
        ExpertJob(settings, skill, {k: frozenset(v) for k, v in held_out.items()},
                  partial / "base", experts / skill)
        for skill in settings.finetune
    ]
    t0 = time.perf_counter()
    expert_stats = run_jobs(jobs, workers)
    timings["finetune_s"] = time.perf_counter() - t0
    shutil.rmtree(tokenizer_dir)
    timings["total_s"] = time.perf_counter() - start_wall
    timings["main_process_cpu_s"] = time.process_time() - start_cpu
    manifest = {
        "settings": asdict(settings),
        "digest": settings.digest(),
        "workers": workers,
        "timings": timings,
        "base": base_stats,
        "experts": dict(zip(settings.finetune, expert_stats)),
    }
    (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _pretrain(
    settings: FamilySettings, corpus: list[str], tokenizer_dir: Path, out: Path
) -> dict[str, Any]:
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    with torch_threads(settings.pretrain_threads):
        seed_everything(settings.seed)
        model = LlamaForCausalLM(llama_config(len(tokenizer), settings.size, tokenizer))
        # Consecutive lines joined by newlines, as corpus.txt stores them (so perplexity on
        # that file sees the same format). A sequence is all "answer": loss on every token.
        n = settings.lines_per_sequence
        texts = ["\n".join(corpus[i : i + n]) for i in range(0, len(corpus), n)]
        data = encode(tokenizer, [("", text) for text in texts], answer_only=False)
        total = settings.pretrain.steps

        def progress(step: int, loss: float) -> None:
            log.info("pre-training the base: step %d/%d, loss %.3f", step, total, loss)

        losses = train(model, data, settings.pretrain, tokenizer.pad_token_id, progress=progress)
    model.save_pretrained(out)
    copy_tokenizer(tokenizer_dir, out)
    tail = losses[-20:]
    return {"final_loss": sum(tail) / len(tail), "parameters": model.num_parameters()}
