"""`mergesmith extract-lora --model FT --base BASE --rank R OUT`: a PEFT LoRA adapter from a fine-tune."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output adapter directory (created atomically)")
    p.add_argument("--model", required=True, help="the fine-tuned model (directory or hub id)")
    p.add_argument("--base", required=True, help="the base model it was fine-tuned from")
    p.add_argument("--rank", type=int, required=True, help="LoRA rank (the most kept per weight)")
    p.add_argument("--energy", type=float, default=None,
                   help="adaptive rank: per weight, the smallest rank keeping this share of the delta's "
                        "energy (sum of squared singular values), at most --rank; e.g. 0.9")
    p.add_argument("--embeddings", action="store_true",
                   help="also decompose the token embeddings and the LM head (default: save them whole when changed)")
    p.add_argument("--skip-undecomposable", action="store_true",
                   help="leave out changed tensors that cannot be decomposed (norms, biases of other modules) "
                        "instead of saving them whole in modules_to_save")
    p.add_argument("--svd", choices=("exact", "lowrank"), default="exact",
                   help="exact (torch.linalg.svd, optimal) or lowrank (randomised, faster on big weights)")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="adapter dtype (default: the fine-tune's)")
    p.add_argument("--include", action="append", default=[], metavar="REGEX",
                   help="only tensors whose name matches (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="REGEX",
                   help="leave out tensors whose name matches (repeatable)")
    p.add_argument("--report", type=Path, default=None,
                   help="also write the JSON report here (it is always written into the adapter directory)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--allow-pickle", action="store_true", help="load PyTorch .bin checkpoints")
    p.add_argument("--quiet", action="store_true", help="print only the summary line")


def run(args: argparse.Namespace) -> int:
    from mergesmith.io.target import check_output_file, write_file_atomic
    from mergesmith.lora import extract_lora
    from mergesmith.lora.adapter import REPORT_NAME

    if args.report is not None:  # before the extraction, not after it
        inputs = [(args.model, Path(args.model)), (args.base, Path(args.base)), ("the adapter", args.out)]
        check_output_file(args.report, inputs, what="--report", suffix=".json")
    start = time.perf_counter()
    command = "mergesmith extract-lora " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == [
        "extract-lora"] else ""
    result = extract_lora(args.model, args.base, args.out, rank=args.rank, energy=args.energy,
                          embeddings=args.embeddings, skip_undecomposable=args.skip_undecomposable,
                          method=args.svd, dtype=args.dtype, include=args.include, exclude=args.exclude,
                          overwrite=args.overwrite, allow_pickle=args.allow_pickle, command=command)
    lines = result.report.splitlines()
    print("\n".join(lines[-1:] if args.quiet else lines))
    for warning in result.extraction.warnings:
        print(f"mergesmith: warning: {warning}", file=sys.stderr)
    if args.report is not None:
        write_file_atomic(args.report, (result.out_dir / REPORT_NAME).read_text(encoding="utf-8"))
    took = time.perf_counter() - start
    print(f"wrote a LoRA adapter ({result.adapter_bytes / 1e6:,.2f} MB) to {result.out_dir} in {took:.1f} s",
          file=sys.stderr)
    return 0
