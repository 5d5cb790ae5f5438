"""LoRA extraction error against rank, on tiny models (and a demo expert when the demo family exists).

    python bench/lora_rank.py                 # two synthetic fine-tunes of a tiny Llama
    python bench/lora_rank.py --demo          # also the demo family's experts (`mergesmith demo --build-only`)
    python bench/lora_rank.py --demo --write  # ... and write the table into bench/RESULTS.md

Per rank it prints the weight error (||delta - BA|| / ||delta|| over all decomposed weights),
the share of delta energy kept, and the logit error: how far base+adapter's logits are from
the fine-tune's, relative to how far the base's are (0 = the fine-tune, 1 = no better than
the base). For a demo expert it also prints its exact-match accuracy on its own skill's test
set with the adapter applied to the base (`BASE+ADAPTER`, as a recipe reads it). Two synthetic fine-tunes bracket real ones: `noise` (i.i.d. noise: a flat
spectrum, the worst case for LoRA) and `lowrank` (a rank-4 change per weight plus 5% noise,
like fine-tunes whose updates concentrate in a few directions).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from mergesmith.io.models import open_model
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


def accuracy(model_ref: str, tokenizer_dir: Path, test_set: Path | None) -> float | None:
    """Exact-match accuracy of a model (or BASE+ADAPTER) on one test set; None without one."""
    if test_set is None:
        return None
    from transformers import AutoTokenizer

    from mergesmith.evaluate import ExactMatchEvaluator

    ckpt = open_model(model_ref, None)
    try:
        model = load_causal_lm(ckpt)
    finally:
        ckpt.close()
    scores = ExactMatchEvaluator({"task": test_set}, device="cpu").evaluate(model, AutoTokenizer.from_pretrained(tokenizer_dir))
    return scores["exact_match/task"]


def curve(name: str, base: Path, ft: Path, work: Path, ranks: tuple[int, ...], vocab: int,
          test_set: Path | None = None) -> list[dict]:
    ids = torch.randint(3, vocab, (4, 32), generator=torch.Generator().manual_seed(0))
    want, start = logits(str(ft), ids), logits(str(base), ids)
    gap = float((want - start).norm())
    rows = []
    if test_set is not None:
        rows.append({"model": name, "rank": "fine-tune", "weight_error": 0.0, "energy_kept": 1.0, "logit_error": 0.0,
                     "accuracy": accuracy(str(ft), base, test_set), "adapter_mb": float("nan"), "seconds": 0.0})
        print(_line(rows[-1]), flush=True)
    for rank in ranks:
        t0 = time.perf_counter()
        result = extract_lora(str(ft), str(base), work / f"{name}-r{rank}", rank=rank, overwrite=True)
        took = time.perf_counter() - t0
        summary = json.loads((result.out_dir / "extraction_report.json").read_text())["summary"]
        got = logits(f"{base}+{result.out_dir}", ids)
        rows.append({"model": name, "rank": rank, "weight_error": summary["overall_rel_error"],
                     "energy_kept": summary["overall_energy_kept"],
                     "logit_error": float((got - want).norm()) / gap if gap else 0.0,
                     "accuracy": accuracy(f"{base}+{result.out_dir}", base, test_set),
                     "adapter_mb": result.adapter_bytes / 1e6, "seconds": took})
        print(_line(rows[-1]), flush=True)
    return rows


HEADER = ("| model | rank | weight error | energy kept | logit error | task accuracy | adapter MB | extract s |\n"
          "|---|---|---|---|---|---|---|---|")


def _line(row: dict) -> str:
    acc = "" if row.get("accuracy") is None else f"{row['accuracy']:.3f}"
    mb = "" if row["adapter_mb"] != row["adapter_mb"] else f"{row['adapter_mb']:.2f}"
    return (f"| {row['model']} | {row['rank']} | {row['weight_error']:.4f} | {row['energy_kept']:.1%} | "
            f"{row['logit_error']:.4f} | {acc} | {mb} | {row['seconds']:.1f} |")


def _demo_pairs(workdir: Path, skills: list[str] | None) -> list[tuple[str, Path, Path, int, Path]]:
    from mergesmith.demo import build_family

    family = build_family(workdir)  # returns at once when `mergesmith demo --build-only` built it
    vocab = json.loads((family.base / "config.json").read_text())["vocab_size"]
    return [(f"demo:{skill}", family.base, path, vocab, family.test_sets[skill])
            for skill, path in family.experts.items() if skills is None or skill in skills]


def _default_demo_dir() -> Path:
    from mergesmith.cli.cmd_demo import default_workdir

    return default_workdir() / "full"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", metavar="DIR", nargs="?", const="", default=None,
                        help="also the demo family's experts; DIR defaults to where `mergesmith demo` builds "
                             "the full family (built there if missing, about 2 minutes)")
    parser.add_argument("--skills", default=None, help="comma-separated demo skills (default: all)")
    parser.add_argument("--ranks", default=",".join(map(str, RANKS)), help="comma-separated ranks")
    parser.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args()
    ranks = tuple(int(r) for r in args.ranks.split(","))
    torch.set_num_threads(2)
    print(HEADER)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        family = tiny_family(work / "models")
        pairs: list[tuple[str, Path, Path, int, Path | None]] = [
            (kind, family["base"], family[kind], 256, None) for kind in ("noise", "lowrank")]
        if args.demo is not None:
            skills = args.skills.split(",") if args.skills else None
            pairs += _demo_pairs(Path(args.demo) if args.demo else _default_demo_dir(), skills)
        for name, base, ft, vocab, test_set in pairs:
            rows += curve(name, base, ft, work / "adapters", ranks, vocab, test_set)
    if args.write:
        _write(rows, " ".join(sys.argv[1:]))


def _write(rows: list[dict], argv: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from results import write_section

    body = (f"`python bench/lora_rank.py {argv}`; {os.cpu_count()} CPU cores shared with other jobs; "
            f"Python {platform.python_version()}, torch {torch.__version__}. Weight error: "
            "||delta - BA|| / ||delta|| over all decomposed weights; logit error: "
            "||logits(base+adapter) - logits(ft)|| / ||logits(base) - logits(ft)|| (0 = the fine-tune, "
            "1 = the base); task accuracy: exact match of base+adapter on the expert's own skill "
            "(all test examples; row `fine-tune`: the expert itself). Adapters keep changed embeddings, "
            "LM head and norms whole (modules_to_save).\n\n" + HEADER + "\n" + "\n".join(map(_line, rows)))
    write_section("lora_rank", "LoRA extraction against rank (bench/lora_rank.py)", body)


if __name__ == "__main__":
    main()
