"""MergeMonster candidates per second: prefix caching and batching on and off (tiny models).

    /work/venv/bin/python bench/monster.py [--layers 8] [--contexts 16] [--repeat 3]

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
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--contexts", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
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
    prefixes = [scorer.prefix(i) for i in range(args.layers)]  # once per layer in a real run
    rates = {
        "cached+batched": _rate(lambda i: scorer.probabilities_from(prefixes[i]), args.layers, args.repeat),
        "full+batched": _rate(lambda i: scorer.probabilities(), args.layers, args.repeat),
        "full+per-pair": _rate(lambda i: [s.probabilities() for s in singles], args.layers, args.repeat),
    }
    print(f"tiny llama: {args.layers} layers, hidden 32, {args.contexts} contexts, 1 thread")
    print("| mode | candidates/s | vs MergeMonster's way |\n|---|---|---|")
    for mode, rate in rates.items():
        print(f"| {mode} | {rate:.1f} | {rate / rates['full+per-pair']:.1f}x |")


def _single(phrases):
    from dataclasses import replace

    for _sign, phrase, ctx in phrases.entries():
        yield replace(phrase, contexts=(ctx,))


if __name__ == "__main__":
    main()
