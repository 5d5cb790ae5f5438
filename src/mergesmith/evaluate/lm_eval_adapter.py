"""lm-evaluation-harness tasks as a mergesmith evaluator (`pip install mergesmith[lm-eval]`).

The model is handed to lm-eval in memory (its `HFLM` wrapper around our loaded model), so a
search scores merged weights without writing them. Scores are `<name>/<task>/<metric>` for
every numeric metric lm-eval reports (stderr left out); the primary score is the mean of each
task's first metric.

    LmEvalEvaluator(["hellaswag"], limit=200).evaluate("path/to/model")
    LmEvalEvaluator(["demo_add"], include_path="my_tasks/").evaluate(model, tokenizer)

Tasks that need a dataset from the Hugging Face hub need it in the local datasets cache:
mergesmith sets no network policy of its own here. `write_task_yaml` turns an exact-match
JSONL file into a local task, so lm-eval runs fully offline.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mergesmith.errors import OptionsError
from mergesmith.evaluate.base import Scores, check_limit, eval_mode
from mergesmith.evaluate.loading import ModelSource, loaded_model

INSTALL_HINT = "install the extra: pip install 'mergesmith[lm-eval]' (or pip install lm-eval)"


def _require_lm_eval() -> Any:
    try:
        import lm_eval
    except ImportError as exc:
        raise OptionsError(f"lm-eval tasks need the lm-eval package ({exc})", hint=INSTALL_HINT) from exc
    return lm_eval


@functools.lru_cache(maxsize=8)
def _task_manager(include_path: str | None) -> Any:
    """lm-eval indexes thousands of task YAMLs on creation (seconds): once per include path."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=include_path)


class LmEvalEvaluator:
    """lm-eval tasks, scored on a model passed in memory."""

    higher_is_better = True

    def __init__(
        self,
        tasks: Sequence[str],
        *,
        include_path: str | os.PathLike | None = None,
        limit: int | None = None,
        num_fewshot: int | None = None,
        batch_size: int = 16,
        device: str | None = None,
        name: str = "lm_eval",
    ) -> None:
        if not tasks:
            raise OptionsError("LmEvalEvaluator needs at least one task name")
        check_limit(limit)
        if include_path is not None and not Path(include_path).is_dir():
            raise OptionsError(
                f"lm-eval include path {include_path} is not a directory",
                hint="give the folder that holds your task YAML files",
            )
        self.tasks = list(tasks)
        self.include_path = str(include_path) if include_path is not None else None
        self.limit = limit
        self.num_fewshot = num_fewshot
        self.batch_size = batch_size
        self.device = device
        self.name = name
        self.primary = f"{name}/mean"

    def evaluate(self, model: ModelSource, tokenizer: Any | None = None) -> Scores:
        lm_eval = _require_lm_eval()
        from lm_eval.models.huggingface import HFLM

        loaded = loaded_model(model, tokenizer, device=self.device)
        manager = _task_manager(self.include_path)
        unknown = [t for t in self.tasks if t not in manager.all_tasks]
        if unknown:
            where = f" or in {self.include_path}" if self.include_path else ""
            raise OptionsError(
                f"lm-eval knows no task named {', '.join(map(repr, unknown))}{where}",
                hint="list tasks with `lm-eval ls tasks`, or pass --lm-eval-include DIR with your YAMLs",
            )
        wrapper = HFLM(
            pretrained=loaded.model,
            tokenizer=loaded.tokenizer,
            device=str(loaded.device),
            batch_size=self.batch_size,
        )
        with eval_mode(loaded.model):
            out = lm_eval.simple_evaluate(
                model=wrapper,
                tasks=self.tasks,
                task_manager=manager,
                limit=self.limit,
                num_fewshot=self.num_fewshot,
                log_samples=False,
            )
        return self._scores(out["results"])

    def _scores(self, results: dict[str, dict[str, Any]]) -> Scores:
        scores: Scores = {}
        firsts = []
        for task in self.tasks:
            metrics = results.get(task, {})
            first = None
            for key, value in metrics.items():
                # Metrics are "<metric>,<filter>"; other keys (alias, sample_len) are not scores.
                if "," not in key or "_stderr" in key:
                    continue
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                metric = key.split(",")[0]
                scores[f"{self.name}/{task}/{metric}"] = float(value)
                first = float(value) if first is None else first
            if first is None:
                raise OptionsError(f"lm-eval returned no numeric metric for task {task!r}")
            firsts.append(first)
        scores[self.primary] = sum(firsts) / len(firsts)
        return scores


def write_task_yaml(name: str, jsonl: str | os.PathLike, directory: str | os.PathLike,
                    *, max_gen_toks: int = 16) -> Path:
    """An lm-eval task (generate_until, exact match) over a `{"prompt", "answer"}` JSONL file."""
    jsonl = Path(jsonl).resolve()
    if not jsonl.is_file():
        raise OptionsError(f"{jsonl}: no such task file", hint='give a JSONL file of {"prompt", "answer"}')
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # JSON is valid YAML: no YAML writer needed, and the quoting is exact.
    spec = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(jsonl)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n"], "do_sample": False, "max_gen_toks": max_gen_toks},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True}],
    }
    path = directory / f"{name}.yaml"
    path.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return path
