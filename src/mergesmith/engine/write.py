"""The one write path: output tensors -> an atomic, sharded checkpoint with its side files.

Every command that writes a model (`merge`, `moe`) goes through :func:`write_checkpoint`
(a merge plan through :func:`write_plan`):
the output location is checked against the inputs, the tensors stream into io's
`ShardedWriter` (a temporary folder beside the target, renamed into place only when
complete), the side files and the manifest are added, and on any failure nothing
half-written is left behind.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.engine.executor import Executor
from mergesmith.io.card import SIDE_FILES, manifest, model_card
from mergesmith.io.files import read_side_file
from mergesmith.io.target import check_output_location
from mergesmith.io.writer import OutSpec, ShardedWriter, parse_size
from mergesmith.plan.ops import Plan
from mergesmith.plan.steps import recipe_hash
from mergesmith.progress import Progress
from mergesmith.tokenizer import output_tokenizer_files

log = logging.getLogger("mergesmith")

Sink = Callable[[str, Any], None]
# produce(sink, on_done, skip): hand every output tensor but those in `skip` to sink(name, tensor),
# calling on_done(nbytes) after each.
Producer = Callable[[Sink, Callable[[int], None], set[str]], None]


@dataclass
class SideFiles:
    """What goes beside the tensors."""

    config: dict[str, Any]  # config.json
    card: str  # README.md
    source_name: str  # the copy of the recipe or config, e.g. mergesmith_recipe.yaml
    source_text: str
    method: str  # as the manifest names it
    seed: int
    copy_from: Path | None = None  # the model whose tokenizer and generation files are copied
    # Written instead of the copies when not empty (a changed tokenizer): then these are every
    # side file, so no stale file of copy_from's tokenizer is kept beside them.
    replaced: dict[str, bytes] = field(default_factory=dict)
    manifest_extra: dict[str, Any] = field(default_factory=dict)

    def files(self) -> dict[str, str | bytes]:
        """Every side file but the manifest, in the order they are written."""
        out: dict[str, str | bytes] = {"config.json": json.dumps(self.config, indent=2)}
        if self.copy_from is not None and not self.replaced:
            for name in SIDE_FILES:
                data = read_side_file(self.copy_from, name)  # regular files inside the folder only
                if data is not None:
                    out[name] = data
        out.update(self.replaced)
        out["README.md"] = self.card
        out[self.source_name] = self.source_text
        return out


def write_checkpoint(out_dir: Path, specs: list[OutSpec], inputs: dict[str, Path | None], produce: Producer,
                     side: SideFiles, *, shard_size: str | int, overwrite: bool, resume: bool = False,
                     fingerprint: str = "", progress: bool | None = False) -> int:
    """Write the tensors `produce` makes, then the side files and manifest; return bytes written.

    With `resume`, tensors a previous run of the same `fingerprint` verified are skipped.
    """
    check_output_location(out_dir, inputs.items())
    writer = ShardedWriter(out_dir, specs, shard_size=parse_size(shard_size), overwrite=overwrite,
                           resume=resume, fingerprint=fingerprint).open()
    for note in writer.notes:
        log.warning(note)
    todo = [s for s in specs if s.name not in writer.completed]
    bar = Progress(len(todo), total_bytes=sum(s.nbytes for s in todo), unit="tensors", label="merging",
                   enabled=progress)
    nbytes = sum(s.nbytes for s in specs)
    try:
        produce(writer.write, bar.advance, writer.completed)
        for name, content in side.files().items():
            writer.add_file(name, content)
        writer.add_file("mergesmith_manifest.json",
                        manifest(inputs, side.method, side.seed, len(specs), nbytes, extra=side.manifest_extra))
        writer.commit()
    except KeyboardInterrupt:
        raise KeyboardInterrupt(writer.suspend()) from None  # says what was kept for --resume
    except BaseException:
        writer.abort()
        raise
    finally:
        bar.close()
    return nbytes


@dataclass
class MergeResult:
    out_dir: Path
    plan: Plan
    tensors: int
    bytes_written: int


def write_plan(plan: Plan, out_dir: Path, *, shard_size: str | int, overwrite: bool, device: str, threads: int,
               seed: int, progress: bool | None, resume: bool = False) -> MergeResult:
    """Execute a plan into `out_dir`, atomically; the plan's input checkpoints are closed after."""
    for warning in plan.warnings:
        log.warning(warning)
    executor = Executor(plan, device=device, seed=seed, threads=threads)
    specs = [OutSpec(op.name, op.out_dtype, op.shape) for op in plan.ops]
    inputs = {ref: ckpt.path for ref, ckpt in plan.checkpoints.items()}
    try:
        nbytes = write_checkpoint(out_dir, specs, inputs, executor.run, _plan_side_files(plan, seed),
                                  shard_size=shard_size, overwrite=overwrite, resume=resume,
                                  fingerprint=_fingerprint(plan, seed, device), progress=progress)
    finally:
        for ckpt in plan.checkpoints.values():
            ckpt.close()
    return MergeResult(out_dir, plan, len(specs), nbytes)


def _plan_side_files(plan: Plan, seed: int) -> SideFiles:
    recipe = plan.recipe
    recipe_yaml = recipe.to_yaml()
    card = model_card(recipe_yaml, recipe.merge_method, recipe.referenced_models(), recipe.base_model)
    return SideFiles(plan.out_config, card, "mergesmith_recipe.yaml", recipe_yaml, recipe.merge_method, seed,
                     copy_from=plan.checkpoints[plan.config_source].path, replaced=output_tokenizer_files(plan),
                     manifest_extra={"recipe_sha256": recipe_hash(recipe)})


def _fingerprint(plan: Plan, seed: int, device: str) -> str:
    """What makes two runs produce the same bytes: recipe, seed, device and the input files."""
    parts = [recipe_hash(plan.recipe), str(seed), device]
    for ref, ckpt in sorted(plan.checkpoints.items()):
        files = sorted({meta.file for meta in ckpt.tensors.values()})
        parts.append(ref + "".join(f"|{f}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files if f.is_file()))
    return "\n".join(parts)
