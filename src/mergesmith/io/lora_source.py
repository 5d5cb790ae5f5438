"""`BASE+ADAPTER` model references: a base model with a PEFT LoRA adapter applied on the fly.

The checkpoint's `tensors` are the base's (so planning works from headers alone), with the
adapter's `modules_to_save` tensors in place of the base's. `read(name)` reads one base
tensor and adds that module's low-rank delta `B @ A * scale`: no merged model is ever held
in memory or written to a cache directory, unlike mergekit's `+` references.

PEFT adapter files name tensors `base_model.model.<module>.lora_A.weight` and `.lora_B.weight`
(linear layers: delta = B @ A, transposed for GPT-2's Conv1D with `fan_in_fan_out`),
`.lora_embedding_A` / `.lora_embedding_B` (embeddings: delta = (B @ A)^T), `.lora_B.bias`
(`lora_bias`: the bias delta), and `base_model.model.<tensor>` for whole tensors
(`modules_to_save`, and an embedding's `base_layer.weight`). The scale is
`lora_alpha / r` (`/ sqrt(r)` with `use_rslora`), per module through `alpha_pattern`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mergesmith.errors import CheckpointError
from mergesmith.io.checkpoint import Checkpoint, open_checkpoint
from mergesmith.io.safetensors_format import TORCH_NAMES, TensorMeta, read_header

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_PICKLE = "adapter_model.bin"
PREFIX = "base_model.model."
_FACTOR = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A\.weight|lora_B\.weight|lora_B\.bias|"
                     r"lora_embedding_A|lora_embedding_B|lora_magnitude_vector(?:\.weight)?)$")


def peft_pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    """PEFT's rank_pattern / alpha_pattern lookup: a key matches a module name suffix (a regex)."""
    for key, value in patterns.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


@dataclass
class LoraModule:
    """The factors of one adapted module (adapter tensor names) and its scale."""

    module: str
    kind: str  # "linear" or "embedding"
    a: str | None = None
    b: str | None = None
    bias: str | None = None
    scale: float = 1.0


class Adapter:
    """A PEFT LoRA adapter directory, indexed from its headers."""

    def __init__(self, path: Path, *, allow_pickle: bool = False) -> None:
        self.path = path
        self.config = _read_adapter_config(path)
        self.weights = _open_weights(path, allow_pickle)
        self.modules: dict[str, LoraModule] = {}
        self.whole: dict[str, str] = {}  # base tensor name -> adapter tensor replacing it
        self._index()

    def _index(self) -> None:
        for key in self.weights.tensors:
            if not key.startswith(PREFIX):
                raise CheckpointError(f"{self.path}: adapter tensor {key!r} does not start with {PREFIX!r}",
                                      hint="this is not a PEFT adapter saved for a causal LM")
            name = key[len(PREFIX):]
            match = _FACTOR.match(name)
            if match is None:  # a whole tensor: modules_to_save, or an embedding's new base layer
                self.whole[name.replace(".base_layer.", ".")] = key
                continue
            kind = match["kind"]
            if kind.startswith("lora_magnitude_vector"):
                raise CheckpointError(f"{self.path}: a DoRA adapter (lora_magnitude_vector); only plain LoRA "
                                      "adapters can be applied", hint="merge DoRA adapters with PEFT first")
            entry = self.modules.setdefault(match["module"], LoraModule(
                match["module"], "embedding" if "embedding" in kind else "linear"))
            field = {"lora_A.weight": "a", "lora_embedding_A": "a", "lora_B.weight": "b",
                     "lora_embedding_B": "b", "lora_B.bias": "bias"}[kind]
            setattr(entry, field, key)
        for entry in self.modules.values():
            if entry.a is None or entry.b is None:
                raise CheckpointError(f"{self.path}: module {entry.module!r} has only one of its LoRA factors",
                                      hint="the adapter file is incomplete; save it again")
            entry.scale = self._scale(entry)

    def _scale(self, entry: LoraModule) -> float:
        rank = self.weights.tensors[entry.a].shape[0]  # type: ignore[index]
        alpha = peft_pattern_value(self.config.get("alpha_pattern") or {}, entry.module,
                                   self.config.get("lora_alpha", rank))
        return float(alpha) / (rank ** 0.5 if self.config.get("use_rslora") else rank)

    def delta(self, entry: LoraModule, shape: tuple[int, ...]) -> Any:
        """The module's weight delta (float32), oriented like the base tensor of `shape`."""
        a = self.weights.read(entry.a).float()  # type: ignore[arg-type]
        b = self.weights.read(entry.b).float()  # type: ignore[arg-type]
        delta = (b @ a) * entry.scale
        if entry.kind == "embedding":
            delta = delta.T
        elif tuple(delta.shape) != shape or (shape[0] == shape[-1] and self.config.get("fan_in_fan_out")):
            delta = delta.T  # GPT-2's Conv1D stores weights as (in, out)
        if tuple(delta.shape) != tuple(shape):
            raise CheckpointError(
                f"{self.path}: LoRA factors of {entry.module!r} give a {list(delta.shape)} delta but the base "
                f"tensor is {list(shape)}", hint="the adapter was trained on another base model")
        return delta

    def close(self) -> None:
        self.weights.close()


def _read_adapter_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads((path / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / ADAPTER_CONFIG}: cannot read: {exc}") from None
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA" or config.get("use_dora"):
        kind = "DoRA" if config.get("use_dora") else peft_type
        raise CheckpointError(f"{path}: a {kind} adapter; only LoRA adapters can be applied to a base",
                              hint="merge the adapter into its base with PEFT and use the merged model")
    return config


def _open_weights(path: Path, allow_pickle: bool) -> Checkpoint:
    """The adapter's tensors as a config-less checkpoint (same reader as models)."""
    file = path / ADAPTER_WEIGHTS
    if file.is_file():
        metas, _ = read_header(file)
        return Checkpoint(ref=str(path), path=path, config={}, tensors=metas)
    if (path / ADAPTER_PICKLE).is_file():
        return _open_pickle(path / ADAPTER_PICKLE, allow_pickle)
    raise CheckpointError(f"{path}: no {ADAPTER_WEIGHTS}", hint="a PEFT adapter directory holds "
                          f"{ADAPTER_CONFIG} and {ADAPTER_WEIGHTS}")


def _open_pickle(file: Path, allow_pickle: bool) -> Checkpoint:
    if not allow_pickle:
        raise CheckpointError(f"{file}: a PyTorch pickle adapter; pickle files can run code when loaded, so "
                              "mergesmith does not open them by default",
                              hint="save the adapter with safetensors, or pass --allow-pickle")
    from mergesmith.io.checkpoint import from_state_dict
    from mergesmith.lazy_torch import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad pickles
        raise CheckpointError(f"{file}: cannot load with weights_only=True: {exc}") from None
    return from_state_dict(str(file.parent), state, {}, path=file.parent)


class LoraCheckpoint(Checkpoint):
    """A base checkpoint seen through a LoRA adapter (see the module docstring)."""

    def __init__(self, ref: str, base: Checkpoint, adapter: Adapter) -> None:
        by_tensor = _tensor_map(base, adapter)
        tensors = dict(base.tensors)
        for name, key in adapter.whole.items():
            if _tied_head(base, name):
                continue  # a tied head saved beside its embeddings: the same tensor
            _check_whole(base, adapter, name, key)
            meta = adapter.weights.tensors[key]
            tensors[name] = TensorMeta(name, meta.file, meta.dtype, meta.shape, meta.start, meta.end)
        super().__init__(ref=ref, path=base.path, config=base.config, tensors=tensors)
        self.base, self.adapter, self.by_tensor = base, adapter, by_tensor

    def stored_as_is(self, name: str) -> bool:
        if name in self.by_tensor:
            return False  # base + low-rank delta, computed on read
        key = self.adapter.whole.get(name)
        return self.adapter.weights.stored_as_is(key) if key else self.base.stored_as_is(name)

    def read(self, name: str) -> Any:
        from mergesmith.lazy_torch import torch

        key = self.adapter.whole.get(name)
        tensor = self.adapter.weights.read(key) if key else self.base.read(name)
        entry, part = self.by_tensor.get(name, (None, ""))
        if entry is None:
            return tensor
        if part == "bias":
            delta = self.adapter.weights.read(entry.bias).float() * entry.scale
        else:
            delta = self.adapter.delta(entry, tuple(tensor.shape))
        dtype = getattr(torch, TORCH_NAMES[self.tensors[name].dtype])
        return (tensor.float() + delta).to(dtype)

    def close(self) -> None:
        self.base.close()
        self.adapter.close()


def _tied_head(base: Checkpoint, name: str) -> bool:
    """A head the base does not store because it ties it to the embeddings (PEFT unties them)."""
    from mergesmith.arch import is_head

    return name not in base.tensors and is_head(name) and base.tied_embeddings


def _check_whole(base: Checkpoint, adapter: Adapter, name: str, key: str) -> None:
    """A saved whole tensor must replace one of the base's (of the same shape, but for vocabularies)."""
    from mergesmith.arch import is_embedding, is_head

    mine = base.tensors.get(name)
    theirs = adapter.weights.tensors[key]
    if mine is None:
        raise CheckpointError(f"{adapter.path}: saves tensor {name!r}, which the base model does not have",
                              hint="the adapter was trained on another base model")
    if mine.shape != theirs.shape and not (is_embedding(name) or is_head(name)):
        raise CheckpointError(f"{adapter.path}: saves {name!r} with shape {list(theirs.shape)} but the base's is "
                              f"{list(mine.shape)}", hint="the adapter was trained on another base model")


def _tensor_map(base: Checkpoint, adapter: Adapter) -> dict[str, tuple[LoraModule, str]]:
    """Base tensor name -> (its LoRA module, "weight" or "bias")."""
    out: dict[str, tuple[LoraModule, str]] = {}
    for entry in adapter.modules.values():
        weight = f"{entry.module}.weight"
        if _tied_head(base, weight):
            continue  # the embeddings carry the same change
        if weight not in base.tensors and weight not in adapter.whole:
            raise CheckpointError(f"{adapter.path}: adapts module {entry.module!r}, but the base model has no "
                                  f"tensor {weight!r}", hint="the adapter was trained on another base model")
        out[weight] = (entry, "weight")
        if entry.bias is not None:
            out[f"{entry.module}.bias"] = (entry, "bias")
    return out


def open_with_adapter(ref: str, base_dir: Path | None, *, allow_pickle: bool = False) -> Checkpoint:
    """Open `BASE+ADAPTER` (or a directory whose name has a '+')."""
    from mergesmith.io.resolve import resolve_model

    whole = [Path(ref).expanduser()] + ([base_dir / ref] if base_dir is not None else [])
    if any(p.is_dir() for p in whole):  # a model directory with '+' in its name
        return open_checkpoint(ref, resolve_model(ref, base_dir), allow_pickle=allow_pickle)
    base_ref, _, adapter_ref = ref.rpartition("+")
    if not base_ref or not adapter_ref:
        raise CheckpointError(f"model {ref!r}: a '+' reference needs a base and an adapter: BASE+ADAPTER",
                              hint="write e.g. `model: path/to/base+path/to/adapter`")
    adapter_dir = resolve_model(adapter_ref, base_dir)
    if not (adapter_dir / ADAPTER_CONFIG).is_file():
        raise CheckpointError(f"model {ref!r}: {adapter_dir} (after the '+') has no {ADAPTER_CONFIG}, so it "
                              "is not a PEFT adapter", hint="BASE+ADAPTER needs a LoRA adapter directory after the "
                              "'+'; for a model whose directory name contains '+', check the path")
    base = open_checkpoint(base_ref, resolve_model(base_ref, base_dir), allow_pickle=allow_pickle)
    return LoraCheckpoint(ref, base, Adapter(adapter_dir, allow_pickle=allow_pickle))
