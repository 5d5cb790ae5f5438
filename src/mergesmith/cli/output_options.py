"""The options of every command that writes a model through the engine's write path (`merge`,
`moe`): where the output goes, its shards, replacing an earlier output, pickle inputs."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="output directory (created atomically)")
    p.add_argument("--shard-size", default="5G", help="largest shard file, e.g. 5G, 500M (default 5G)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output directory")
    p.add_argument("--allow-pickle", action="store_true",
                   help="load PyTorch .bin checkpoints (with torch.load(weights_only=True))")
