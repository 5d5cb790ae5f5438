"""`mergesmith monster`: load model 1, run the loop over donors, save model, log and recipe.

Everything that can be checked without loading a model is checked first (config, device,
model folders, output location). The model is saved in `out_dtype` (float16, as MergeMonster
saves it) with model 1's tokenizer; the log goes to `./logs/merge-monster-<time>.txt` as
MergeMonster's does. Ctrl-C saves the live model's tensors and the position (donor, layer)
under `<output>/.monster_state/`; `--resume` reloads them and continues at that layer.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.monster.composition import HEADERS, Composition, linear_recipe, monster_recipe
from mergesmith.monster.config import MonsterConfig, check_device
from mergesmith.monster.donors import check_layers, model_names
from mergesmith.progress import Progress
from mergesmith.threads import cpu_threads_for

STATE_DIR = ".monster_state"
# What a monster output folder holds (one written before markers existed is recognised by them).
KNOWN = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json",
         "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
         "chat_template.jinja", "vocab.json", "merges.txt", "added_tokens.json",
         "monster-recipe.yaml", "monster-recipe-linear.yaml", STATE_DIR)
OUTPUT_KEY = "directories.output_directory"


def phrase_table(scorer: Any, probs: list[float]) -> list[str]:
    lines = [f"{'sign':>4}  {'weight':>9}  {'probability':>11}  phrase | context"]
    for (sign, phrase, ctx), w, p in zip(scorer.entries, scorer.weights, probs):
        kind = "bad" if sign > 0 else "good"
        lines.append(f"{kind:>4}  {abs(w):9.4g}  {p:11.5f}  {phrase.phrase!r} | {ctx.context!r}")
    lines.append(f"total (weighted, lower is better): {sum(scorer.signed(probs)):.5f}")
    return lines


def log_path(prefix: str) -> Path:
    """MergeMonster's `logs/<prefix>-<time>.txt` in the working directory (a new name if
    that one exists)."""
    logs = Path("logs")
    logs.mkdir(exist_ok=True)
    stem = f"{prefix}-{time.strftime('%Y%m%d_%H%M%S')}"
    path, n = logs / f"{stem}.txt", 2
    while path.exists():
        path, n = logs / f"{stem}-{n}.txt", n + 1
    return path


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

    from mergesmith.io.target import mark_workspace

    state_dir = monster.config.output_directory / STATE_DIR
    state_dir.mkdir(parents=True, exist_ok=True)
    mark_workspace(monster.config.output_directory, "monster")  # a rerun may write here again
    tensors = {k: v.detach().cpu().contiguous() for k, v in monster.model.state_dict().items()}
    save_file(dict(_untied(tensors)), state_dir / "model.safetensors")
    (state_dir / "state.json").write_text(json.dumps({
        "donor": donor, "layer": layer, "composition": monster.comp.to_json(),
        "weights": monster.scorer.weights, "log": monster.stats.log, "current": monster.current,
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


def prepare(config: MonsterConfig) -> dict[str, str]:
    """The checks that need no model loaded: device, models (sorted donors, their layers'
    shapes), output place."""
    from mergesmith.io.target import check_workspace

    check_device(config.device)
    names = model_names(config)
    check_workspace(config.output_directory, _inputs(names), "monster", KNOWN, key=OUTPUT_KEY)
    check_layers(names)
    return names


def _inputs(names: dict[str, str]) -> list[tuple[str, Path | None]]:
    return [(name, Path(path)) for name, path in names.items()]


def run_monster(config: MonsterConfig, *, resume: bool = False, cached: bool = True,
                progress: bool = True, threads: int | None = None) -> MonsterResult:
    """The whole run. `threads`: torch's CPU threads (default: one for a small model on the
    CPU, see mergesmith.threads, else torch's default); restored afterwards."""
    names = prepare(config)
    model, tokenizer, state = _load(config, names, resume)
    model.eval()
    with cpu_threads_for(model, config.device, threads):
        return _search(config, model, tokenizer, names, state, cached, progress)


def _search(config: MonsterConfig, model: Any, tokenizer: Any, names: dict[str, str], state: dict,
            cached: bool, progress: bool) -> MonsterResult:
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.engine import Monster
    from mergesmith.monster.scorer import PhraseScorer

    scorer = PhraseScorer(model, tokenizer, PhraseSet.from_config(config.phrases), config.phrase_scoring)
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
    return _finish(monster, model, tokenizer, names)


def _loop(monster: Any, state: dict, progress: bool) -> None:
    from mergesmith.methods.mergemonster import ratios_for

    cfg = monster.config
    donors = list(monster.names)[1:]
    n = len(monster.scorer.blocks)
    per_layer = sum(len(ratios_for(m, cfg.merge_ratios)) for m in cfg.merge_methods)
    per_donor = n * per_layer + cfg.merge_headers * len(ratios_for(cfg.merge_methods[-1], cfg.merge_ratios))
    start_donor, start_layer = state.get("donor", 0), state.get("layer", 0)
    position = [start_donor, start_layer]
    bar = Progress(len(donors) * per_donor, done=start_donor * per_donor + start_layer * per_layer, unit="cand",
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
            _after_donor(monster)
    except KeyboardInterrupt:
        where = _save_state(monster, position[0], position[1])
        # main() prints the message: "interrupted; state saved in ...".
        raise KeyboardInterrupt(f"state saved in {where}; run again with --resume") from None
    if progress:
        bar.close()


def _after_donor(monster: Any) -> None:
    """MergeMonster's report after each donor: the phrase table and the merge composition."""
    for line in ["Phrases after merging:", *phrase_table(monster.scorer, monster.scorer.probabilities())]:
        monster.log(line)
    keys = [*range(len(monster.scorer.blocks)), HEADERS]
    monster.log("-------- MERGE COMPOSITION ---------")
    for name, share in monster.comp.aggregate(keys).items():
        monster.log(f"{name}: {share:.2f}")


@dataclass(frozen=True)
class MonsterResult:
    output: Path  # the merged model
    log: Path  # ./logs/merge-monster-<time>.txt
    recipe: Path | None  # monster-recipe.yaml: `mergesmith merge` replays the run with it
    start: float  # the phrase objective before and after (lower is better)
    end: float
    rate: float  # candidates per second


def _finish(monster: Any, model: Any, tokenizer: Any, names: dict[str, str]) -> MonsterResult:
    import torch

    cfg = monster.config
    out = cfg.output_directory
    monster.log(f"{monster.stats.candidates} candidates in {monster.stats.seconds:.2f} s "
                f"({monster.stats.rate:.1f} candidates/s)")
    check_finite_model(model, None)
    model.to(getattr(torch, cfg.out_dtype))
    check_finite_model(model, cfg.out_dtype)
    recipe_path = _save(monster, model, tokenizer, names, out)
    log_file = log_path("merge-monster")
    log_file.write_text("\n".join(monster.stats.log) + "\n", encoding="utf-8")
    return MonsterResult(out, log_file, recipe_path, monster.start_total, sum(monster.current), monster.stats.rate)


def check_finite_model(model: Any, out_dtype: str | None) -> None:
    """No model with NaN or infinity is written: name the first such tensor. `out_dtype`:
    the model was just converted to it (else it is the float32 working copy)."""
    from mergesmith.errors import MethodError

    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            if out_dtype is None:
                raise MethodError(f"the merged model holds NaN or infinite values in tensor {name!r}",
                                  hint="check model 1 and the donors for damaged weights")
            raise MethodError(f"tensor {name!r}: the merged values exceed the range of {out_dtype} and "
                              "would be written as infinity",
                              hint="set `out_dtype: float32` (or bfloat16) in the config")


def _save(monster: Any, model: Any, tokenizer: Any, names: dict[str, str], out: Path) -> Path | None:
    """Write the model, its tokenizer and recipe into a temporary folder, then put it in place
    of `out` (under the target's lock; the saved Ctrl-C state goes with the old folder)."""
    from mergesmith.io.target import check_workspace, mark_workspace, staged_folder

    def check() -> None:
        check_workspace(out, _inputs(names), "monster", KNOWN, key=OUTPUT_KEY)

    with staged_folder(out, check) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        recipe = _write_recipe(monster, names, tmp, out)
        mark_workspace(tmp, "monster")
    return recipe


def _header_names(model: Any) -> dict[str, str]:
    """"embed"/"head" -> model 1's parameter names of its token embedding and LM head."""
    embed = model.get_input_embeddings().weight
    out = model.get_output_embeddings()
    names: dict[int, str] = {}
    for n, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), n)  # a tied head's parameter is named after the embedding first
    parts = {"embed": names[id(embed)]}
    if out is not None and out.weight is not embed:
        parts["head"] = names[id(out.weight)]
    return parts


def _recipe_blocker(monster: Any, ckpt: Any, names: dict[str, str], embed: str) -> str | None:
    """Why no recipe can replay this run, or None: a recipe merges tensors of one shape, and
    MergeMonster fits a donor's headers to model 1's vocabulary by a rule of its own."""
    from mergesmith.io.checkpoint import open_checkpoint
    from mergesmith.monster.headers import SpecialIds

    rows = ckpt.tensors[embed].shape[0]
    header_donors = {d for part in ("embed", "head") for d, *_ in monster.comp.steps.get(part, [])}
    for name, path in list(names.items())[1:]:
        donor = open_checkpoint(name, Path(path))
        try:
            donor_rows = donor.tensors[embed].shape[0] if embed in donor.tensors else rows
            if donor_rows != rows:
                return f"the vocabulary of {name} ({donor_rows}) differs from model 1's ({rows})"
            if name in header_donors and SpecialIds.of(donor.config) != SpecialIds.of(ckpt.config):
                return f"the BOS/EOS ids of {name} differ from model 1's (its header rows were swapped)"
        finally:
            donor.close()
    return None


def _ratio_rules(config: MonsterConfig, parts: dict[str, list[str]]) -> list[dict[str, Any]] | None:
    """The recipe's `ratios` for compounding candidates: the head chains the ratios of the
    header stage, the embeddings take one step, the layers chain `merge_ratios`."""
    from mergesmith.methods.mergemonster import ratios_for

    if config.candidates != "compound":
        return None
    listed = lambda rs: ",".join(repr(float(r)) for r in rs)  # noqa: E731
    rules = [{"filter": t, "value": listed(ratios_for(config.merge_methods[-1], config.merge_ratios))}
             for t in parts.get("head", [])]
    rules += [{"filter": t, "value": ""} for t in parts["embed"]]
    return rules + [{"value": listed(config.merge_ratios)}]


def _write_recipe(monster: Any, names: dict[str, str], into: Path, out: Path) -> Path | None:
    """`monster-recipe.yaml` (mergemonster: replays every step exactly), and for lerp-only runs
    `monster-recipe-linear.yaml` too (a plain linear recipe that mergekit also runs)."""
    import yaml

    from mergesmith.io.checkpoint import open_checkpoint

    parts = {k: [v] for k, v in _header_names(monster.model).items()}
    ckpt = open_checkpoint("model1", Path(next(iter(names.values()))))
    try:
        blocker = _recipe_blocker(monster, ckpt, names, parts["embed"][0])
        headers = [t for ts in parts.values() for t in ts]
        others = [t for t in ckpt.tensors if ckpt.layout.role(t).role != "layer" and t not in headers]
        n = len(monster.scorer.blocks)
        filters = {f"layer.{i}": [ckpt.layout.layer_name(i, "")] for i in range(n)} | parts
    finally:
        ckpt.close()
    if blocker:
        monster.log(f"no recipe: {blocker}; a recipe cannot replay MergeMonster's fitting of the headers")
        return None
    paths = {k: str(Path(v).resolve()) for k, v in names.items()}
    dump = {"sort_keys": False, "width": 120}
    dtype = monster.config.out_dtype
    path = out / "monster-recipe.yaml"  # written into `into`, which becomes `out`
    data = monster_recipe(monster.comp, paths, filters, monster.config.merge_methods, dtype,
                          _ratio_rules(monster.config, parts))
    header = "# mergesmith merge this file OUT_DIR: the monster's model, from the original checkpoints\n"
    (into / path.name).write_text(header + yaml.safe_dump(data, **dump), encoding="utf-8")
    monster.log(f"recipe: {path} (mergesmith merge reproduces this model)")
    linear = linear_recipe(monster.comp, paths, n, parts, others, dtype)
    if linear is not None:
        linear_path = out / "monster-recipe-linear.yaml"
        (into / linear_path.name).write_text(yaml.safe_dump(linear, **dump), encoding="utf-8")
        monster.log(f"recipe: {linear_path} (lerp only: the same as a linear merge, mergekit-compatible)")
    return path
