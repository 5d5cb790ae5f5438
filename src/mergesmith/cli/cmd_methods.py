"""`mergesmith methods [NAME]`: the registered methods and their parameters."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one method in detail")


def _param_line(info) -> str:
    scope = "per model" if info.per_model else "shared"
    default = "required" if info.required else f"default {info.default!r}"
    return f"    {info.name:<16} {scope:<9} {default:<18} {info.description}"


def run(args: argparse.Namespace) -> int:
    from mergesmith.methods import REGISTRY, get_method

    specs = [get_method(args.name)] if args.name else [REGISTRY[n] for n in sorted(REGISTRY)]
    for spec in dict.fromkeys(specs):
        base = {"required": "needs base_model", "optional": "base_model optional",
                "ignored": "no base"}[spec.base]
        print(f"{spec.name}: {spec.summary} [{base}]")
        if args.name:
            if spec.paper:
                print(f"  paper: {spec.paper}")
            if spec.func.__module__ and (doc := sys.modules[spec.func.__module__].__doc__):
                print("  " + doc.strip().replace("\n", "\n  "))
        for info in spec.param_infos:
            print(_param_line(info))
    return 0
