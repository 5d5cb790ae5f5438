"""`mergesmith moe CONFIG OUT`: build a mixture of experts from dense models (mergekit-moe configs)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mergesmith.cli.output_options import add_output_options


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="MoE config YAML (mergekit-moe format)")
    add_output_options(p)
    p.add_argument("--device", default="cpu", help="where the base model runs for hidden gates: cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0, help="seed for random gates and noise_scale")
    p.add_argument("--allow-identical-experts", action="store_true",
                   help="allow every expert to be the same model (only useful if you train the MoE further)")
    p.add_argument("--check-routing", action="store_true",
                   help="after building, load the MoE and print which expert each expert's prompts route to")
    p.add_argument("--validate", action="store_true", help="only check the config (no model is opened)")
    p.add_argument("--quiet", action="store_true", help="no summary")


def run(args: argparse.Namespace) -> int:
    from mergesmith.moe.config import load_moe_config

    config, _ = load_moe_config(args.config)
    if args.validate:
        print(f"{args.config}: valid ({len(config.experts)} experts, gate_mode {config.gate_mode})")
        return 0
    from mergesmith.moe.build import build_moe

    start = time.perf_counter()
    result = build_moe(args.config, args.out, overwrite=args.overwrite, shard_size=args.shard_size,
                       seed=args.seed, device=args.device, allow_pickle=args.allow_pickle,
                       allow_identical_experts=args.allow_identical_experts)
    if not args.quiet:
        took = time.perf_counter() - start
        print(f"built a {result.architecture} MoE of {result.experts} experts ({result.tensors} tensors, "
              f"{result.bytes_written / 1e6:,.1f} MB) into {result.out_dir} in {took:.1f} s", file=sys.stderr)
    if args.check_routing:
        _print_routing(config, result.out_dir, args.device)
    return 0


def _print_routing(config, out_dir: Path, device: str) -> None:
    from mergesmith.moe.routing import format_shares, load_moe, measure_routing

    sets = [e.positive_prompts or [] for e in config.experts]
    if not all(sets):
        print("routing check skipped: every expert needs positive_prompts to measure routing", file=sys.stderr)
        return
    model, tokenizer = load_moe(out_dir, device)
    shares, votes = measure_routing(model, tokenizer, sets)
    labels = [f"{k}: {e.source_model}" for k, e in enumerate(config.experts)]
    print("share of each expert's prompt tokens (all layers) routed first to expert ->j:")
    print(format_shares(shares, labels))
    print("share of each expert's prompts whose mean router logit is highest for expert ->j:")
    print(format_shares(votes, labels))
