"""MergeMonster candidates per second: prefix caching and batching on and off.

    python bench/monster.py                 # the demo family (built), writes RESULTS.md
    python bench/monster.py --tiny [--layers 8] [--contexts 16] [--repeat 3]

The demo mode scores examples/monster/monster.yaml's 16 (phrase, context) pairs on the demo
base (`mergesmith demo --build-only` first), then runs the whole example both ways.

A "candidate" is one scoring of every (phrase, context) pair after a layer change. Modes:
  cached+batched  - mergesmith: one batch, only layers i..N-1 rerun (prefix of layer i reused)
  full+batched    - one batch, full forward pass per candidate
  full+per-pair   - MergeMonster's way: one forward pass per (phrase, context)
Averaged over all layers i (the cached mode's gain grows toward the last layers).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def _phrases(n: int) -> dict:
    contexts = [" ".join(f"w{(i * 7 + j) % 90 + 3}" for j in range(3 + i % 5)) for i in range(n)]
    half = n // 2
    return {"bad_phrases": [{"phrase": "w5 w6", "contexts": contexts[:half]}],
            "good_phrases": [{"phrase": "w9", "contexts": contexts[half:]}]}


def _rate(fn, layers: int, repeat: int) -> float:
    start, count = time.perf_counter(), 0
    for _ in range(repeat):
        for i in range(layers):
            fn(i)
            count += 1
    return count / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="a generated tiny Llama instead of the demo family")
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--contexts", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if not args.tiny:
        demo(args.repeat)
        return
    import torch
    from factory import make_family

    from mergesmith.evaluate.loading import load_model
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.scorer import PhraseScorer

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp())
    family = make_family(root, "llama", layers=args.layers)
    loaded = load_model(family["base"], device="cpu", dtype="float32")
    phrases = PhraseSet.from_config(_phrases(args.contexts))
    scorer = PhraseScorer(loaded.model, loaded.tokenizer, phrases)
    singles = [PhraseScorer(loaded.model, loaded.tokenizer, PhraseSet(bad=(p,)))
               for p in _single(phrases)]
    rates = _modes(scorer, singles, args.layers, args.repeat)
    print(f"tiny llama: {args.layers} layers, hidden 32, {args.contexts} contexts, 1 thread")
    print("| mode | candidates/s | vs MergeMonster's way |\n|---|---|---|")
    for mode, rate in rates.items():
        print(f"| {mode} | {rate:.1f} | {rate / rates['full+per-pair']:.1f}x |")


def _modes(scorer, singles, layers: int, repeat: int) -> dict[str, float]:
    prefixes = [scorer.prefix(i) for i in range(layers)]  # once per layer in a real run
    return {
        "cached+batched": _rate(lambda i: scorer.probabilities_from(prefixes[i]), layers, repeat),
        "full+batched": _rate(lambda i: scorer.probabilities(), layers, repeat),
        "full+per-pair": _rate(lambda i: [s.probabilities() for s in singles], layers, repeat),
    }


def demo(repeat: int) -> None:
    """Scoring modes on the demo base, then the example run end to end, cached and not."""
    import torch
    import yaml
    from results import write_section

    from mergesmith.cli.cmd_demo import default_workdir
    from mergesmith.demo import build_family
    from mergesmith.evaluate.loading import load_model
    from mergesmith.evaluate.phrases import PhraseSet
    from mergesmith.monster.config import parse_config
    from mergesmith.monster.run import run_monster
    from mergesmith.monster.scorer import PhraseScorer

    torch.set_num_threads(1)
    root = default_workdir() / "full"
    family = build_family(root)  # cached: returns at once when built
    example = Path(__file__).resolve().parents[1] / "examples" / "monster" / "monster.yaml"
    data = yaml.safe_load(example.read_text().replace("~/.cache/mergesmith/demo/full", str(root)))
    loaded = load_model(family.base, device="cpu", dtype="float32")
    phrases = PhraseSet.from_config(data)
    scorer = PhraseScorer(loaded.model, loaded.tokenizer, phrases)
    singles = [PhraseScorer(loaded.model, loaded.tokenizer, PhraseSet(bad=(p,))) for p in _single(phrases)]
    layers = len(scorer.blocks)
    rates = _modes(scorer, singles, layers, repeat * 10)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cached in (True, False):
            data["directories"]["output_directory"] = str(Path(tmp) / f"out-{cached}")
            result = run_monster(parse_config(data, example.parent), cached=cached, progress=False, threads=1)
            runs[cached] = result
    pairs = len(phrases.entries())
    hidden = loaded.model.config.hidden_size
    donors, methods, ratios = len(data["models_to_merge"]), len(data["merge_method"]), len(data["merge_ratios"])
    lines = [f"Demo family base ({layers} layers, hidden {hidden}), the {pairs} (phrase, context) pairs of "
             "examples/monster/monster.yaml, 1 thread; a candidate = one scoring of every pair.", "",
             "| mode | candidates/s | vs MergeMonster's way |", "|---|---|---|"]
    for mode, rate in rates.items():
        lines.append(f"| {mode} | {rate:.1f} | {rate / rates['full+per-pair']:.1f}x |")
    lines += ["", f"The whole example ({donors} donors x ({layers} layers x {methods * ratios} + {ratios} header) "
              "candidates, blends and restores included):", "",
              "| scoring | candidates/s | score start -> end |", "|---|---|---|"]
    for cached, result in runs.items():
        label = "cached prefix + batch" if cached else "full pass + batch"
        lines.append(f"| {label} | {result.rate:.1f} | {result.start:.5f} -> {result.end:.5f} |")
    body = "\n".join(lines)
    print(body)
    write_section("monster-demo", "MergeMonster on the demo family (bench/monster.py)", body)


def _single(phrases):
    from dataclasses import replace

    for _sign, phrase, ctx in phrases.entries():
        yield replace(phrase, contexts=(ctx,))


if __name__ == "__main__":
    main()
