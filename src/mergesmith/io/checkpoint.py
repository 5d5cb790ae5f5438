"""A model checkpoint opened from headers only: config, tensor index and layer layout.

Sources are file-backed (a Hugging Face directory with safetensors, single or sharded; or
PyTorch .bin files when pickle is explicitly allowed) or in-memory state dicts (for search,
which merges without files). Tensors are read one at a time with `read`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.arch import Layout, config_layer_count, detect_layout
from mergesmith.errors import CheckpointError
from mergesmith.io.safetensors_format import SAFETENSORS_NAMES, TORCH_NAMES, TensorMeta, read_header

INDEX_NAMES = ("model.safetensors.index.json",)


@dataclass
class Checkpoint:
    """One input model: its reference, config.json, tensors and layer layout."""

    ref: str  # as written in the recipe
    path: Path | None
    config: dict[str, Any]
    tensors: dict[str, TensorMeta]
    layout: Layout = field(init=False)
    _state: dict[str, Any] | None = None  # in-memory tensors (state dict or unpickled .bin)
    _fds: dict[Path, int] = field(default_factory=dict)
    _fds_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # readers share the files

    def __post_init__(self) -> None:
        self.layout = detect_layout(self.tensors)
        self._check_layer_count()

    def _check_layer_count(self) -> None:
        declared = config_layer_count(self.config)
        if declared and self.layout.container and declared[1] != self.layout.num_layers:
            raise CheckpointError(
                f"{self.where}: config.json says {declared[0]} = {declared[1]} but the tensors "
                f"have {self.layout.num_layers} layers under {self.layout.container}",
                hint="the config.json does not belong to these weights; restore the right one")

    @property
    def where(self) -> str:
        return str(self.path) if self.path else self.ref

    @property
    def num_layers(self) -> int:
        return self.layout.num_layers

    @property
    def tied_embeddings(self) -> bool:
        text = self.config.get("text_config") or {}
        return bool(self.config.get("tie_word_embeddings", text.get("tie_word_embeddings", False)))

    @property
    def in_memory(self) -> bool:
        """Tensors held as torch tensors (a state dict or unpickled .bin), not read from files."""
        return self._state is not None

    def stored_as_is(self, name: str) -> bool:
        """Whether `read(name)` gives the tensor's stored bytes unchanged, so that `read_bytes`
        may stand in for it (not for in-memory tensors, nor for ones a view computes)."""
        return self._state is None

    def read(self, name: str) -> Any:
        """Load one tensor (a fresh CPU tensor, not a view of a mapped file)."""
        if self._state is not None:
            return self._state[name]
        from mergesmith.lazy_torch import torch

        meta = self.tensors[name]
        buf = torch.from_numpy(self.read_bytes(name))
        return buf.view(getattr(torch, TORCH_NAMES[meta.dtype])).reshape(meta.shape)

    def read_finite(self, name: str) -> Any:
        """`read`, refusing a float tensor with NaN or infinity: a damaged input is named with
        its model and file, never merged into an output."""
        tensor = self.read(name)
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            meta = self.tensors[name]
            where = meta.file if meta.file.name else self.where
            raise CheckpointError(f"model {self.ref!r}: tensor {name!r} holds NaN or infinite values "
                                  f"(in {where})",
                                  hint="the model's weights are damaged: fetch it again, or leave it out")
        return tensor

    def read_bytes(self, name: str, start: int = 0, stop: int | None = None, out: Any = None) -> Any:
        """Bytes [start, stop) of one stored tensor, as a numpy uint8 array (no torch): `out`
        (a uint8 array of that size) or a fresh one."""
        import numpy as np

        meta = self.tensors[name]
        stop = meta.nbytes if stop is None else stop
        buf = np.empty(stop - start, dtype=np.uint8) if out is None else out
        if stop > start:
            try:
                _pread_into(self._fd(meta.file), buf, meta.start + start, meta)
            except OSError as exc:  # a failing disk, a vanished network mount
                raise CheckpointError(f"model {self.ref!r}: cannot read tensor {name!r} from {meta.file}: "
                                      f"{exc.strerror or exc}",
                                      hint="check the disk or mount holding the model, or fetch it again") from None
        return buf

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            with self._fds_lock:
                fd = self._fds.get(path)
                if fd is None:
                    fd = self._fds[path] = os.open(path, os.O_RDONLY)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _pread_into(fd: int, array: Any, offset: int, meta: TensorMeta) -> None:
    view = memoryview(array).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n <= 0:
            raise CheckpointError(f"{meta.file}: unexpected end of file reading tensor {meta.name!r}",
                                  hint="the file was truncated after planning; fetch it again")
        done += n


def read_config(path: Path) -> dict[str, Any]:
    cfg = path / "config.json"
    if not cfg.is_file():
        raise CheckpointError(f"{path}: no config.json",
                              hint="a model directory needs the config.json of its architecture")
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg}: not valid JSON: {exc}",
                              hint="restore the model's original config.json (fetch it again)") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{cfg}: must hold a JSON object",
                              hint="restore the model's original config.json (fetch it again)")
    return data


def _shard_files(path: Path) -> list[Path]:
    """The safetensors files of a model directory (from its index when sharded)."""
    index = path / INDEX_NAMES[0]
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, KeyError, TypeError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{index}: not a valid index ({type(exc).__name__}: {exc})",
                                  hint="restore the index file, or remove it if the model has a single model.safetensors") from None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index}: \"weight_map\" is a {type(weight_map).__name__}, not a mapping "
                                  "of tensor names to shard files",
                                  hint="restore the index file, or remove it if the model has a single model.safetensors")
        files = []
        for shard in dict.fromkeys(weight_map.values()):
            if not isinstance(shard, str) or Path(shard).name != shard:
                raise CheckpointError(f"{index}: shard name {shard!r} is not a plain file name",
                                      hint="index files may only name files in the model directory")
            if not (path / shard).is_file():
                raise CheckpointError(f"{index}: names shard {shard!r}, which is missing",
                                      hint="download the missing shard")
            files.append(path / shard)
        return files
    return sorted(path.glob("*.safetensors"))


def open_checkpoint(ref: str, path: Path, *, allow_pickle: bool = False) -> Checkpoint:
    """Index a model directory from its headers (no tensor data is read)."""
    config = read_config(path)
    files = _shard_files(path)
    if not files:
        return _open_pickle(ref, path, config, allow_pickle)
    tensors: dict[str, TensorMeta] = {}
    for file in files:
        metas, _ = read_header(file)
        for name, meta in metas.items():
            if name in tensors:
                raise CheckpointError(f"{path}: tensor {name!r} is in both {tensors[name].file.name} "
                                      f"and {file.name}", hint="the shards belong to different models; fetch the model again")
            tensors[name] = meta
    return Checkpoint(ref=ref, path=path, config=config, tensors=tensors)


def _open_pickle(ref: str, path: Path, config: dict[str, Any], allow_pickle: bool) -> Checkpoint:
    bins = sorted(path.glob("pytorch_model*.bin")) + sorted(path.glob("*.pt"))
    if not bins:
        raise CheckpointError(f"{path}: no *.safetensors or pytorch_model*.bin weights found",
                              hint="point the recipe at a model directory with its weight files")
    if not allow_pickle:
        raise CheckpointError(
            f"{path}: has only PyTorch pickle weights ({bins[0].name}); pickle files can run code "
            "when loaded, so mergesmith does not open them by default",
            hint="convert the model to safetensors, or pass --allow-pickle to load them with "
                 "torch.load(weights_only=True)")
    from mergesmith.lazy_torch import torch

    state: dict[str, Any] = {}
    for file in bins:
        try:
            state.update(torch.load(file, map_location="cpu", weights_only=True, mmap=True))
        except Exception as exc:  # torch raises many types for bad pickles
            raise CheckpointError(f"{file}: cannot load with weights_only=True: {exc}",
                                  hint="convert the checkpoint to safetensors with the tool that made it") from None
    return from_state_dict(ref, state, config, path=path)


def from_state_dict(ref: str, state: dict[str, Any], config: dict[str, Any], path: Path | None = None) -> Checkpoint:
    """A checkpoint over in-memory tensors (search merges without writing files)."""
    metas = {}
    for name, tensor in state.items():
        dtype = SAFETENSORS_NAMES[str(tensor.dtype).removeprefix("torch.")]
        nbytes = tensor.numel() * tensor.element_size()
        metas[name] = TensorMeta(name, Path(), dtype, tuple(tensor.shape), 0, nbytes)
    return Checkpoint(ref=ref, path=path, config=config, tensors=metas, _state=state)
