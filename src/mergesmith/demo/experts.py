"""Fine-tuning the experts, side by side in worker processes.

A worker is `python -m mergesmith.demo.experts JOB.json`: a fresh interpreter, so nothing
depends on how the caller's script is written (multiprocessing's spawn would re-import an
unguarded `__main__` and rebuild the family in every worker). Each expert trains on one
thread, so the weights are the same however many workers run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mergesmith.demo.data import interleave, replay_prompts, skill_training_pairs
from mergesmith.demo.settings import FamilySettings
from mergesmith.demo.training import encode, seed_everything, train
from mergesmith.errors import MergeError
from mergesmith.threads import torch_threads

log = logging.getLogger("mergesmith.demo")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class ExpertJob:
    settings: FamilySettings
    skill: str
    held_out: dict[str, frozenset[str]]  # per skill: prompts no training example may be
    base: Path
    out: Path

    def to_json(self) -> str:
        return json.dumps(
            {
                "settings": asdict(self.settings),
                "digest": self.settings.digest(),
                "skill": self.skill,
                "held_out": {skill: sorted(p) for skill, p in self.held_out.items()},
                "base": str(self.base),
                "out": str(self.out),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ExpertJob:
        raw = json.loads(text)
        settings = FamilySettings.from_dict(raw["settings"])
        if settings.digest() != raw["digest"]:  # a different mergesmith on the worker's path
            raise MergeError("the demo worker could not rebuild its parent's settings")
        held_out = {skill: frozenset(p) for skill, p in raw["held_out"].items()}
        return cls(settings, raw["skill"], held_out, Path(raw["base"]), Path(raw["out"]))


def finetune_expert(job: ExpertJob) -> dict[str, Any]:
    """Fine-tune one expert from the saved base; return its training statistics."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    start = time.perf_counter()
    config = job.settings.finetune[job.skill]
    tokenizer = AutoTokenizer.from_pretrained(job.base)
    with torch_threads(1):
        seed_everything(job.settings.seed)
        model = LlamaForCausalLM.from_pretrained(job.base)
        base_params = [p.detach().clone() for p in model.parameters()]
        pairs = training_pairs(job, model, tokenizer)
        data = encode(tokenizer, pairs, answer_only=True)
        losses = train(model, data, config, tokenizer.pad_token_id,
                       freeze_unused_outputs=not config.matrices_only)
        delta = relative_delta(model, base_params)
    model.save_pretrained(job.out)
    copy_tokenizer(job.base, job.out)
    tail = losses[-20:]
    return {
        "final_loss": sum(tail) / len(tail),
        "relative_delta": delta,
        "seconds": time.perf_counter() - start,
    }


def training_pairs(job: ExpertJob, base_model: Any, tokenizer: Any) -> list[tuple[str, str]]:
    """The skill's examples, mixed with other skills' prompts answered by the base (rehearsal)."""
    held_out = {skill: set(p) for skill, p in job.held_out.items()}
    own = skill_training_pairs(job.settings, job.skill, held_out.get(job.skill, set()))
    prompts = replay_prompts(job.settings, job.skill, held_out)
    if not prompts:
        return own
    from mergesmith.evaluate.exact_match import greedy_generate
    from mergesmith.evaluate.loading import LoadedModel

    answers = greedy_generate(LoadedModel(base_model, tokenizer), prompts, max_new_tokens=8)
    replay = [(p, a.split("\n")[0].strip()) for p, a in zip(prompts, answers)]
    return interleave(own, replay, job.settings.seed, job.skill)


def run_jobs(jobs: list[ExpertJob], workers: int) -> list[dict[str, Any]]:
    """Run `jobs` in up to `workers` worker processes (in this process when workers <= 1)."""
    if workers <= 1 or len(jobs) <= 1:
        return [finetune_expert(job) for job in jobs]
    results: dict[int, dict[str, Any]] = {}
    running: dict[int, subprocess.Popen[bytes]] = {}
    pending = list(enumerate(jobs))
    try:
        while pending or running:
            while pending and len(running) < workers:
                index, job = pending.pop(0)
                running[index] = _start(job)
            time.sleep(0.2)
            for index, process in list(running.items()):
                if process.poll() is not None:
                    del running[index]
                    results[index] = _collect(jobs[index], process.returncode)
    finally:
        for process in running.values():  # an error or Ctrl-C: don't leave workers training
            process.kill()
            process.wait()
    return [results[i] for i in range(len(jobs))]


def _start(job: ExpertJob) -> subprocess.Popen[bytes]:
    job.out.mkdir(parents=True, exist_ok=True)
    job_path = job.out / "job.json"
    job_path.write_text(job.to_json(), encoding="utf-8")
    env = dict(os.environ)
    # The worker must import this very mergesmith, installed or not.
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    command = [sys.executable, "-m", "mergesmith.demo.experts", str(job_path)]
    # stderr to a file, not a pipe: a chatty worker must not block on a full pipe.
    with (job.out / "worker.log").open("wb") as stderr:
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)


def _collect(job: ExpertJob, returncode: int) -> dict[str, Any]:
    result_path, log_path = job.out / "result.json", job.out / "worker.log"
    if returncode != 0 or not result_path.is_file():
        lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        tail = "\n".join(lines[-15:])
        raise MergeError(f"fine-tuning the {job.skill} expert failed (exit {returncode}):\n{tail}")
    result = json.loads(result_path.read_text(encoding="utf-8"))
    for path in (result_path, log_path, job.out / "job.json"):
        path.unlink()
    log.info("fine-tuned the %s expert in %.1f s", job.skill, result["seconds"])
    return result


def relative_delta(model: Any, base_params: list[Any]) -> float:
    """||expert - base|| / ||base|| over all parameters: the task vector's relative size."""
    num = sum(float((p.detach() - b).pow(2).sum()) for p, b in zip(model.parameters(), base_params))
    den = sum(float(b.pow(2).sum()) for b in base_params)
    return (num / den) ** 0.5


def copy_tokenizer(source: Path, target: Path) -> None:
    import shutil

    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, target / name)


def _main(argv: list[str]) -> int:
    job_path = Path(argv[0])
    job = ExpertJob.from_json(job_path.read_text(encoding="utf-8"))
    result = finetune_expert(job)
    (job.out / "result.json").write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
