"""`mergesmith plan RECIPE [--explain]`: the merge plan from headers alone."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", type=Path, help="recipe YAML")
    p.add_argument("--explain", action="store_true", help="one line per output tensor with its inputs and parameters")
    p.add_argument("--json", action="store_true", help="machine-readable plan")
    p.add_argument("--threads", type=int, default=2, help="threads assumed for the memory estimate")
    p.add_argument("--allow-pickle", action="store_true", help="allow PyTorch .bin checkpoints")
    p.add_argument("--allow-crimes", action="store_true",
                   help="merge models of different architectures anyway (as mergekit's option): the output "
                        "takes the first model's (or base's) config.json")


def _params_text(params: Any) -> str:
    data = params.model_dump(by_alias=True)
    parts = []
    for key, value in data.items():
        if isinstance(value, list):
            value = "[" + ", ".join(_num(v) for v in value) + "]"
        else:
            value = _num(value)
        parts.append(f"{key}={value}")
    return " ".join(parts)


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _groups(plan) -> list[tuple[str, list]]:
    from mergesmith.plan.modules import TEXT, module_of, modules_of

    modules = modules_of(plan.checkpoints[plan.config_source])
    groups: dict[str, list] = {}
    for op in plan.ops:
        key = f"layer {op.layer}" if op.role == "layer" else ("embeddings" if op.role == "pre" else "final norm / head")
        module = module_of(op.name, modules) if modules else None
        if module not in (None, TEXT):  # a vision-language model's other modules: "vision_tower layer 0"
            key = f"{module} {key}"
        groups.setdefault(key, []).append(op)
    return list(groups.items())


def _summary(plan, threads: int) -> list[str]:
    gb = 1e9
    return [
        f"method: {plan.method.name}    output layers: {plan.num_layers}    tensors: {len(plan.ops)}",
        f"models: {', '.join(plan.checkpoints)}",
        f"read: {plan.bytes_read / gb:.3f} GB   write: {plan.bytes_written / gb:.3f} GB   "
        f"estimated peak memory ({threads} threads): {plan.peak_memory(threads) / gb:.3f} GB",
    ]


def run(args: argparse.Namespace) -> int:
    from mergesmith.api import plan_recipe_steps

    steps = plan_recipe_steps(args.recipe, allow_pickle=args.allow_pickle, allow_crimes=args.allow_crimes)
    if args.json:
        tensors = [[_op_json(op) for op in step.plan.ops] for step in steps]
        if len(steps) == 1:
            print(json.dumps(tensors[0], indent=1))
        else:
            print(json.dumps([{"step": step.recipe.name, "out": str(step.out_dir) if step.out_dir else None,
                               "tensors": ops} for step, ops in zip(steps, tensors)], indent=1))
        return 0
    for i, step in enumerate(steps):
        if len(steps) > 1:
            where = f"--intermediate-dir/{step.recipe.name}" if step.out_dir else "the output"
            print(f"{chr(10) if i else ''}step {i + 1} of {len(steps)}: {step.recipe.name or '(final)'} -> {where}")
        _print_plan(step.plan, args)
    return 0


def _op_json(op: Any) -> dict[str, Any]:
    return {"name": op.name, "inputs": [[r.model, r.name] for r in op.inputs],
            "base": [op.base.model, op.base.name] if op.base else None,
            "params": op.params.model_dump(by_alias=True), "shape": list(op.shape), "dtype": op.out_dtype, "t": op.t}


def _print_plan(plan: Any, args: argparse.Namespace) -> None:
    print("\n".join(_summary(plan, args.threads)))
    for label, ops in _groups(plan):
        sources = sorted({f"{r.model}" + (f"[{_layer_of(r.name)}]" if op.role == 'layer' else "")
                          for op in ops for r in op.refs()})
        print(f"{label}: {len(ops)} tensors <- {', '.join(sources)}")
        if args.explain:
            for op in ops:
                base = f" base={op.base.model}" if op.base else ""
                print(f"  {op.name} {list(op.shape)} {op.out_dtype}{base} t={op.t:.3g} {_params_text(op.params)}")
    for warning in plan.warnings:
        print(f"warning: {warning}")


def _layer_of(name: str) -> str:
    import re

    m = re.search(r"\.(\d+)\.", name)
    return m.group(1) if m else "?"
