"""Which models a run merges, in MergeMonster's order, and whether they fit model 1.

MergeMonster (`merge-monster.py`) merges `models_to_merge`, or, when that list is empty,
every folder of `model_directory` (hidden ones skipped); either way the paths are sorted as
strings and model 1 itself is skipped. A model is named by the last part of its path.
Everything here reads directories only: it runs before any model is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from mergesmith.errors import CheckpointError, IncompatibleModelsError
from mergesmith.io.resolve import resolve_model
from mergesmith.monster.config import MonsterConfig, _user


def resolve_model_path(ref: str, config: MonsterConfig) -> Path:
    """A model is a name inside `model_directory` (a mergesmith convenience), else a model
    reference as a recipe's: a path relative to the config file, then to the working
    directory, else a hub id (fetched with the hub extra; offline, the usual error)."""
    if config.model_directory is not None and not os.path.isabs(ref):
        inside = config.model_directory / _user(ref)
        if inside.is_dir():
            return inside.resolve()
    return resolve_model(str(_user(ref)), config.base_dir)


def _scan(directory: Path) -> list[str]:
    if not directory.is_dir():
        raise CheckpointError(f"model_directory {directory}: no such directory",
                              hint="fix directories.model_directory, or list models_to_merge")
    return [os.path.join(str(directory), f) for f in os.listdir(directory)
            if (directory / f).is_dir() and not f.startswith(".")]


def donor_refs(config: MonsterConfig) -> list[str]:
    """The donors as MergeMonster lists them: sorted, model 1 left out."""
    refs = list(config.models_to_merge) or _scan(config.model_directory or Path("."))
    base = resolve_model_path(config.model_path1, config)
    return [r for r in sorted(refs) if resolve_model_path(r, config) != base]


def _name(ref: str, taken: set[str]) -> str:
    name = ref.rstrip("/").split("/")[-1] or ref
    unique, n = name, 2
    while unique in taken:  # two donors of one name (in different folders) stay apart
        unique, n = f"{name}-{n}", n + 1
    return unique


def model_names(config: MonsterConfig, with_donors: bool = True) -> dict[str, str]:
    """Display name -> local directory: model 1 first, then the donors in merge order."""
    base = resolve_model_path(config.model_path1, config)
    names = {_name(config.model_path1, set()): str(base)}
    for ref in donor_refs(config) if with_donors else []:
        path = resolve_model_path(ref, config)
        if not (path / "config.json").is_file():
            raise CheckpointError(f"donor {ref!r}: {path} has no config.json, so it is not a model",
                                  hint="remove the folder from model_directory, or list "
                                       "models_to_merge")
        names[_name(ref, set(names))] = str(path)
    return names


def check_layers(names: dict[str, str]) -> None:
    """Every donor has model 1's layer tensors, of the same shapes (read from the headers):
    MergeMonster blends layer i with the donor's layer i. Embeddings and head may differ in
    their number of rows (the header stage fits them)."""
    from mergesmith.arch import is_embedding, is_head
    from mergesmith.io.checkpoint import open_checkpoint
    from mergesmith.plan.checks import check_architectures

    paths = list(names.items())
    base = open_checkpoint(paths[0][0], Path(paths[0][1]))
    try:
        want = {n: m.shape for n, m in base.tensors.items() if base.layout.role(n).role == "layer"}
        header_cols = {m.shape[1:] for n, m in base.tensors.items() if is_embedding(n) or is_head(n)}
    finally:
        base.close()
    for name, path in paths[1:]:
        donor = open_checkpoint(name, Path(path))
        try:
            got = {n: m.shape for n, m in donor.tensors.items()}
            wrong = [n for n, shape in want.items() if got.get(n) != shape]
            cols = {m.shape[1:] for n, m in donor.tensors.items() if is_embedding(n) or is_head(n)}
        finally:
            donor.close()
        if wrong:
            first = wrong[0]
            raise IncompatibleModelsError(
                f"donor {name} ({path}): tensor {first} is {got.get(first, 'missing')}, model 1's is "
                f"{list(want[first])} ({len(wrong)} layer tensor(s) differ)",
                hint="merge models of model 1's architecture and size")
        if cols - header_cols:
            raise IncompatibleModelsError(f"donor {name} ({path}): its embeddings have another width "
                                          "than model 1's", hint="merge models of model 1's size")
        check_architectures({paths[0][0]: base, name: donor}, paths[0][0], allow_crimes=False,
                            fix="merge donors of model 1's architecture")
