"""A MoE of the demo family's skill experts: routing per skill, and accuracy next to the
experts' and the merges'.

    mergesmith demo --build-only               # once: the full demo family (about 2 minutes)
    python bench/moe_demo.py                   # prints the tables
    python bench/moe_demo.py --write           # ... and writes them into bench/RESULTS.md

The MoEs are examples/moe/mixtral.yaml (8 search-set prompts per expert) with each gate mode
and 1 or 2 experts per token. Routing is measured on the held-out test prompts: the share of
each skill's (token, layer) pairs whose top expert is the skill's own, and the share of its
prompts whose mean router logit is highest for it (mergesmith.moe.routing). The merges are
`mergesmith demo`'s grid (mergesmith.demo.grid.run_demo). "base + own expert's MLPs" is the
ceiling of any router: skill k evaluated on the base with expert k's MLPs swapped in, which
is what a MoE computes when it routes every token of skill k to expert k alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "moe" / "mixtral.yaml"
DEMO_DIR = "~/.cache/mergesmith/demo/full"
MOES = [("hidden", 1), ("hidden", 2), ("mlp_input", 1), ("mlp_input", 2)]


def moe_config(family, gate_mode: str, experts_per_token: int) -> dict:
    import yaml

    config = yaml.safe_load(EXAMPLE.read_text().replace(DEMO_DIR, str(family.root)))
    config.update(gate_mode=gate_mode, experts_per_token=experts_per_token)
    return config


def evaluate_moes(family, limit: int | None, work: Path) -> tuple[dict, dict]:
    """(name -> skill -> accuracy, gate mode -> (token shares, prompt votes))."""
    from mergesmith.evaluate import ExactMatchEvaluator
    from mergesmith.evaluate.exact_match import load_examples
    from mergesmith.moe import build_moe
    from mergesmith.moe.routing import load_moe, measure_routing

    evaluator = ExactMatchEvaluator({s: family.test_sets[s] for s in family.skills}, limit=limit, device="cpu")
    prompts = [[ex.prompt for ex in load_examples(family.test_sets[s])[:limit]] for s in family.skills]
    rows, routing = {}, {}
    for mode, k in MOES:
        t0 = time.perf_counter()
        result = build_moe(moe_config(family, mode, k), work / f"{mode}-{k}", overwrite=True)
        model, tokenizer = load_moe(result.out_dir)
        scores = evaluator.evaluate(model, tokenizer)
        rows[f"moe {mode} top-{k}"] = {s: scores[f"exact_match/{s}"] for s in family.skills}
        if mode not in routing:
            routing[mode] = measure_routing(model, tokenizer, prompts)
        print(f"moe {mode} top-{k}: {rows[f'moe {mode} top-{k}']} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return rows, routing


def ceiling(family, limit: int | None) -> dict[str, float]:
    """skill -> accuracy of the base with that skill's expert's MLPs (perfect routing)."""
    from safetensors.torch import load_file

    from mergesmith.evaluate import ExactMatchEvaluator, load_model

    base = load_file(family.base / "model.safetensors")
    resident = load_model(family.base, device="cpu")
    out = {}
    for skill, path in family.experts.items():
        expert = load_file(path / "model.safetensors")
        resident.model.load_state_dict({n: expert[n] if ".mlp." in n else t for n, t in base.items()})
        scores = ExactMatchEvaluator({skill: family.test_sets[skill]}, limit=limit, device="cpu").evaluate(
            resident.model, resident.tokenizer)
        out[skill] = scores[f"exact_match/{skill}"]
    return out


def accuracy_table(skills: list[str], rows: dict[str, dict[str, float]]) -> str:
    lines = ["| model | " + " | ".join(skills) + " | mean |", "|" + "---|" * (len(skills) + 2)]
    for name, scores in rows.items():
        cells = [f"{scores[s]:.3f}" if s in scores else "" for s in skills]
        mean = f"{sum(scores.values()) / len(scores):.3f}" if len(scores) == len(skills) else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean} |")
    return "\n".join(lines)


def routing_table(skills: list[str], routing: dict) -> str:
    modes = list(routing)
    head = " | ".join(f"`{m}`: tokens to own expert | `{m}`: prompts to own expert" for m in modes)
    lines = [f"| skill | {head} |", "|" + "---|" * (1 + 2 * len(modes))]
    for k, skill in enumerate(skills):
        cells = " | ".join(f"{routing[m][0][k][k]:.1%} | {routing[m][1][k][k]:.0%}" for m in modes)
        lines.append(f"| {skill} | {cells} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", metavar="DIR", default=None,
                        help="demo family directory (default: where `mergesmith demo` builds the full family)")
    parser.add_argument("--limit", type=int, default=None, help="test examples per skill (default: all)")
    parser.add_argument("--write", action="store_true", help="write the tables into bench/RESULTS.md")
    args = parser.parse_args()
    from mergesmith.cli.cmd_demo import default_workdir
    from mergesmith.demo import build_family
    from mergesmith.demo.grid import run_demo

    torch.set_num_threads(2)
    start = time.perf_counter()
    family = build_family(Path(args.demo) if args.demo else default_workdir() / "full")
    demo = run_demo(family, limit=args.limit)
    rows = dict(demo.rows)
    with tempfile.TemporaryDirectory() as tmp:
        moe_rows, routing = evaluate_moes(family, args.limit, Path(tmp))
    rows.update(moe_rows)
    rows["base + own expert's MLPs (perfect routing)"] = ceiling(family, args.limit)
    tables = (accuracy_table(family.skills, rows) + "\n\nRouting of the held-out test prompts (top-1 expert):\n\n"
              + routing_table(family.skills, routing))
    print(tables)
    if args.write:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import write_section

        body = (f"`python bench/moe_demo.py {' '.join(sys.argv[1:])}` on the full demo family "
                f"({'all' if args.limit is None else args.limit} test examples per skill); {os.cpu_count()} CPU "
                f"cores shared with other jobs; Python {platform.python_version()}, torch {torch.__version__}; "
                f"{time.perf_counter() - start:.0f} s. MoEs: examples/moe/mixtral.yaml with each gate mode and "
                "top-k; merges: `mergesmith demo`'s grid.\n\n" + tables)
        write_section("moe_demo", "MoE of the demo experts (bench/moe_demo.py)", body)


if __name__ == "__main__":
    main()
