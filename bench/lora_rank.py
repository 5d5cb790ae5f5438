"""LoRA extraction error against rank, on tiny models (and a demo expert when the demo family exists).

    python bench/lora_rank.py                 # two synthetic fine-tunes of a tiny Llama
    python bench/lora_rank.py --demo DIR      # also the demo family's experts (built into DIR if needed)

Per rank it prints the weight error (||delta - BA|| / ||delta|| over all decomposed weights),
the share of delta energy kept, and the logit error: how far base+adapter's logits are from
the fine-tune's, relative to how far the base's are (0 = the fine-tune, 1 = no better than
the base). Two synthetic fine-tunes bracket real ones: `noise` (i.i.d. noise: a flat
spectrum, the worst case for LoRA) and `lowrank` (a rank-4 change per weight plus 5% noise,
like fine-tunes whose updates concentrate in a few directions).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mergesmith.io.checkpoint import open_model
from mergesmith.lora import extract_lora
from mergesmith.moe.gates import load_causal_lm

RANKS = (1, 2, 4, 8, 16, 32, 64)


def tiny_family(root: Path) -> dict[str, Path]:
    """A tiny Llama base (hidden 128) and two synthetic fine-tunes of it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    base = LlamaForCausalLM(config)
    base.save_pretrained(root / "base")
    paths = {"base": root / "base"}
    for kind in ("noise", "lowrank"):
        model = LlamaForCausalLM(config)
        with torch.no_grad():
            for name, param in model.state_dict().items():
                param.copy_(base.state_dict()[name] + _delta(base.state_dict()[name], kind))
        model.save_pretrained(root / kind)
        paths[kind] = root / kind
    return paths


def _delta(weight: torch.Tensor, kind: str) -> torch.Tensor:
    scale = 0.02 * weight.std().clamp_min(1e-3)
    noise = torch.randn_like(weight) * scale
    if kind == "noise" or weight.dim() != 2:
        return noise
    u, v = torch.randn(weight.shape[0], 4), torch.randn(4, weight.shape[1])
    structured = u @ v
    return structured * (scale * weight.numel() ** 0.5 / structured.norm()) + 0.05 * noise


def logits(model_ref: str, ids: torch.Tensor) -> torch.Tensor:
    ckpt = open_model(model_ref, None)
    try:
        with torch.no_grad():
            return load_causal_lm(ckpt)(ids).logits.float()
    finally:
        ckpt.close()


def curve(name: str, base: Path, ft: Path, work: Path, ranks: tuple[int, ...], vocab: int) -> list[dict]:
    ids = torch.randint(3, vocab, (4, 32), generator=torch.Generator().manual_seed(0))
    want, start = logits(str(ft), ids), logits(str(base), ids)
    gap = float((want - start).norm())
    rows = []
    for rank in ranks:
        t0 = time.perf_counter()
        result = extract_lora(str(ft), str(base), work / f"{name}-r{rank}", rank=rank, overwrite=True)
        took = time.perf_counter() - t0
        summary = json.loads((result.out_dir / "extraction_report.json").read_text())["summary"]
        got = logits(f"{base}+{result.out_dir}", ids)
        rows.append({"model": name, "rank": rank, "weight_error": summary["overall_rel_error"],
                     "energy_kept": summary["overall_energy_kept"],
                     "logit_error": float((got - want).norm()) / gap if gap else 0.0,
                     "adapter_mb": result.adapter_bytes / 1e6, "seconds": took})
        print(_line(rows[-1]), flush=True)
    return rows


def _line(row: dict) -> str:
    return (f"| {row['model']:<14} | {row['rank']:>4} | {row['weight_error']:>12.4f} | {row['energy_kept']:>11.1%} | "
            f"{row['logit_error']:>11.4f} | {row['adapter_mb']:>10.2f} | {row['seconds']:>7.1f} |")


def _demo_pairs(workdir: Path) -> list[tuple[str, Path, Path, int]]:
    try:
        from mergesmith.demo import build_family
    except ImportError:
        print("(the demo family is not available in this checkout; skipping it)", file=sys.stderr)
        return []
    family = build_family(workdir)
    vocab = json.loads((family.base / "config.json").read_text())["vocab_size"]
    return [(f"demo:{skill}", family.base, path, vocab) for skill, path in family.experts.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", type=Path, default=None, help="demo family directory (built if missing)")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)), help="comma-separated ranks")
    args = parser.parse_args()
    ranks = tuple(int(r) for r in args.ranks.split(","))
    torch.set_num_threads(2)
    print("| model          | rank | weight error | energy kept | logit error | adapter MB | seconds |")
    print("|----------------|------|--------------|-------------|-------------|------------|---------|")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        family = tiny_family(work / "models")
        pairs = [(kind, family["base"], family[kind], 256) for kind in ("noise", "lowrank")]
        if args.demo is not None:
            pairs += _demo_pairs(args.demo)
        for name, base, ft, vocab in pairs:
            curve(name, base, ft, work / "adapters", ranks, vocab)


if __name__ == "__main__":
    main()
