"""`mergesmith monster`: load model 1, run the loop over donors, save model, log and recipe.

Ctrl-C saves the live model's tensors and the position (donor, layer) under
`<output>/.monster_state/`; `--resume` reloads them and continues at that layer.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.monster.composition import HEADERS, Composition, linear_recipe, monster_recipe
from mergesmith.monster.config import MonsterConfig, resolve_model_path
from mergesmith.progress import Progress
from mergesmith.threads import cpu_threads_for

STATE_DIR = ".monster_state"


def phrase_table(scorer: Any, probs: list[float]) -> list[str]:
    lines = [f"{'sign':>4}  {'weight':>9}  {'probability':>11}  phrase | context"]
    for (sign, phrase, ctx), w, p in zip(scorer.entries, scorer.weights, probs):
        kind = "bad" if sign > 0 else "good"
        lines.append(f"{kind:>4}  {abs(w):9.4g}  {p:11.5f}  {phrase.phrase!r} | {ctx.context!r}")
    lines.append(f"total (weighted, lower is better): {sum(scorer.signed(probs)):.5f}")
    return lines


def _names(config: MonsterConfig) -> dict[str, str]:
    names = {Path(config.model_path1).name: str(resolve_model_path(config.model_path1, config))}
    for ref in config.models_to_merge:
        names[Path(ref).name] = str(resolve_model_path(ref, config))
    return names


def _load(config: MonsterConfig, names: dict[str, str], resume: bool) -> tuple[Any, Any, dict]:
    import torch

    from mergesmith.evaluate.loading import load_model

    torch.manual_seed(config.random_seed)
    loaded = load_model(next(iter(names.values())), device=config.device, dtype="float32")
    state_dir = config.output_directory / STATE_DIR
    state: dict = {}
    if resume and not (state_dir / "state.json").is_file():
        sys.stderr.write(f"mergesmith monster: no saved state in {state_dir}; starting from the beginning\n")
    if resume and (state_dir / "state.json").is_file():
        from safetensors.torch import load_file

        state = json.loads((state_dir / "state.json").read_text())
        loaded.model.load_state_dict(load_file(state_dir / "model.safetensors"), strict=False)
    return loaded.model, loaded.tokenizer, state


def _save_state(monster: Any, donor: int, layer: int) -> Path:
    from safetensors.torch import save_file

    state_dir = monster.config.output_directory / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in monster.model.state_dict().items()}
    save_file(dict(_untied(tensors)), state_dir / "model.safetensors")
    (state_dir / "state.json").write_text(json.dumps({
        "donor": donor, "layer": layer, "composition": monster.comp.to_json(),
        "weights": monster.scorer.weights, "log": monster.stats.log,
        "start_total": monster.start_total, "before": monster.before}))
    return state_dir


def _untied(tensors: dict[str, Any]) -> dict[str, Any]:
    """safetensors refuses shared storage (tied embeddings): clone the duplicates."""
    seen: set[int] = set()
    out = {}
    for k, v in tensors.items():
        ptr = v.data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out


def run_monster(config: MonsterConfig, *, resume: bool = False, cached: bool = True,
                progress: bool = True, threads: int | None = None) -> MonsterResult:
    """The whole run. `threads`: torch's CPU threads (default: one for a small model on the
    CPU, see mergesmith.threads, else torch's default); restored afterwards."""
    return _run(config, resume, cached, progress, threads)


def _run(config: MonsterConfig, resume: bool, cached: bool, progress: bool,
         threads: int | None) -> MonsterResult:
    names = _names(config)
    model, tokenizer, state = _load(config, names, resume)
    model.eval()
    with cpu_threads_for(model, config.device, threads):
        return _search(config, model, tokenizer, names, state, cached, progress)


def _search(config: MonsterConfig, model: Any, tokenizer: Any, names: dict[str, str], state: dict,
            cached: bool, progress: bool) -> MonsterResult:
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.engine import Monster
    from mergesmith.monster.scorer import PhraseScorer

    scorer = PhraseScorer(model, tokenizer, PhraseSet.from_config(config.phrases))
    if state:
        scorer.weights = state["weights"]
    elif scorer.phrases.auto_weights:
        scorer.set_weights(scorer.probabilities())
    before = phrase_table(scorer, scorer.probabilities())
    monster = Monster(config, model, scorer, names, cached=cached)
    monster.before = before
    if state:
        monster.comp = Composition.from_json(state["composition"])
        monster.stats.log = state["log"]
        monster.start_total = state.get("start_total", monster.start_total)
        before = monster.before = state.get("before", before)
        monster.log(f"Resumed at donor {state['donor'] + 1}, layer {state['layer'] + 1}")
    else:
        for line in ["Phrases before merging:", *before]:
            monster.log(line)
    _loop(monster, state, progress)
    return _finish(monster, model, tokenizer, names, before)


def _loop(monster: Any, state: dict, progress: bool) -> None:
    donors = list(monster.names)[1:]
    n = len(monster.scorer.blocks)
    per_part = sum(len(_ratios(m, monster.config)) for m in monster.config.merge_methods)
    per_donor = (n + int(monster.config.merge_headers)) * per_part
    start_donor, start_layer = state.get("donor", 0), state.get("layer", 0)
    position = [start_donor, start_layer]
    bar = Progress(len(donors) * per_donor, done=start_donor * per_donor + start_layer * per_part, unit="cand",
                   enabled=progress)
    if progress:
        monster.on_candidate = lambda donor, part, method, ratio: bar.advance(note=f"{donor} {part} {method}@{ratio:g}")
        emit = monster.emit

        def above_bar(line: str) -> None:
            bar.clear()
            emit(line)

        monster.emit = above_bar

    def next_layer(layer: int) -> None:
        position[1] = layer

    try:
        for d in range(start_donor, len(donors)):
            position[:] = [d, start_layer if d == start_donor else 0]
            monster.log(f"Merging {donors[d]} into {next(iter(monster.names))}")
            monster.merge_donor(donors[d], position[1], next_layer)
    except KeyboardInterrupt:
        where = _save_state(monster, position[0], position[1])
        # main() prints the message: "interrupted; state saved in ...".
        raise KeyboardInterrupt(f"state saved in {where}; run again with --resume") from None
    if progress:
        bar.close()


def _ratios(method: str, config: MonsterConfig) -> list[float]:
    from mergesmith.methods.mergemonster import ratios_for

    return ratios_for(method, config.merge_ratios)


@dataclass(frozen=True)
class MonsterResult:
    output: Path  # the merged model
    log: Path
    recipe: Path | None  # monster-recipe.yaml: `mergesmith merge` replays the run with it
    start: float  # the phrase objective before and after (lower is better)
    end: float
    rate: float  # candidates per second


def _finish(monster: Any, model: Any, tokenizer: Any, names: dict[str, str],
            before: list[str]) -> MonsterResult:
    import shutil

    out = monster.config.output_directory
    after = phrase_table(monster.scorer, monster.scorer.probabilities())
    for line in ["Phrases after merging:", *after, "Composition:"]:
        monster.log(line)
    comp = monster.comp
    n = len(monster.scorer.blocks)
    for key in [*(f"layer.{i}" for i in range(n)), "headers"]:
        monster.log(f"{key}: {json.dumps(comp.table(key))}")
    monster.log(f"{monster.stats.candidates} candidates in {monster.stats.seconds:.2f} s "
                f"({monster.stats.rate:.1f} candidates/s)")
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    recipe_path = _write_recipe(monster, names, out)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    log_file = logs / f"monster-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    log_file.write_text("\n".join(monster.stats.log) + "\n", encoding="utf-8")
    shutil.rmtree(out / STATE_DIR, ignore_errors=True)
    return MonsterResult(out, log_file, recipe_path, monster.start_total, sum(monster.current), monster.stats.rate)


def _write_recipe(monster: Any, names: dict[str, str], out: Path) -> Path:
    """`monster-recipe.yaml` (mergemonster: replays every step exactly), and for lerp-only runs
    `monster-recipe-linear.yaml` too (a plain linear recipe that mergekit also runs)."""
    import yaml

    from mergesmith.arch import is_embedding, is_head
    from mergesmith.io.checkpoint import open_checkpoint

    ckpt = open_checkpoint("model1", Path(next(iter(names.values()))))
    rest = [t for t in ckpt.tensors if ckpt.layout.role(t).role != "layer"]
    headers = [t for t in rest if is_embedding(t) or is_head(t)]
    others = [t for t in rest if t not in headers]
    n = len(monster.scorer.blocks)
    filters = {f"layer.{i}": [ckpt.layout.layer_name(i, "")] for i in range(n)}
    filters[HEADERS] = headers
    ckpt.close()
    paths = {k: str(Path(v).resolve()) for k, v in names.items()}
    dump = {"sort_keys": False, "width": 120}
    path = out / "monster-recipe.yaml"
    data = monster_recipe(monster.comp, paths, filters, monster.config.merge_methods, "float32")
    header = "# mergesmith merge this file OUT_DIR: the monster's model, from the original checkpoints\n"
    path.write_text(header + yaml.safe_dump(data, **dump), encoding="utf-8")
    monster.log(f"recipe: {path} (mergesmith merge reproduces this model)")
    linear = linear_recipe(monster.comp, paths, n, headers, others, "float32")
    if linear is not None:
        linear_path = out / "monster-recipe-linear.yaml"
        linear_path.write_text(yaml.safe_dump(linear, **dump), encoding="utf-8")
        monster.log(f"recipe: {linear_path} (lerp only: the same as a linear merge, mergekit-compatible)")
    return path
