"""Extract a PEFT LoRA adapter from a fine-tune and its base: the truncated SVD of each delta.

Streams module by module: both versions of one module's tensors are read, compared, and
decomposed; only the (small) factors stay in memory. Whole tensors (modules_to_save) are
read again when the adapter is written. The output is written to a temporary directory
beside the target and renamed into place when complete.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from mergesmith.errors import IncompatibleModelsError, OptionsError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.lora_source import PREFIX
from mergesmith.io.models import open_model
from mergesmith.lora.modules import LINEAR_KINDS, Module, group_modules, module_kinds
from mergesmith.lora.svd import decompose

log = logging.getLogger("mergesmith")


@dataclass
class ExtractOptions:
    rank: int
    energy: float | None = None  # adaptive rank: the smallest keeping this share of delta energy
    embeddings: bool = False  # decompose token embeddings and the LM head too
    skip_undecomposable: bool = False
    method: str = "exact"  # exact | lowrank
    dtype: str | None = None  # adapter dtype; default the fine-tune's
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)

    def check(self) -> None:
        if self.rank < 1:
            raise OptionsError(f"--rank {self.rank}: must be at least 1", hint="e.g. --rank 16")
        if self.energy is not None and not 0 < self.energy <= 1:
            raise OptionsError(f"--energy {self.energy}: must be in (0, 1]", hint="e.g. --energy 0.9")
        if self.method not in ("exact", "lowrank"):
            raise OptionsError(f"--svd {self.method!r}: not a way to decompose", hint="--svd exact or --svd lowrank")
        for option, patterns in (("--include", self.include), ("--exclude", self.exclude)):
            for pattern in patterns:
                try:
                    re.compile(pattern)
                except re.error as exc:
                    raise OptionsError(f"{option} {pattern!r}: not a valid regular expression ({exc})",
                                       hint=r"e.g. --include 'self_attn\.(q|v)_proj' (escape a literal '.', "
                                            "'(' or '[' with a backslash)") from None


@dataclass
class Entry:
    """One tensor's fate, for the report."""

    tensor: str
    kind: str  # lora | lora_embedding | bias | saved | dropped | unchanged | excluded
    shape: tuple[int, ...]
    rank: int | None = None
    rel_error: float | None = None
    energy_kept: float | None = None
    delta_norm: float | None = None


@dataclass
class Extraction:
    """What the walk over the models produced: adapter tensors, modules and report entries."""

    factors: dict[str, Any] = field(default_factory=dict)  # adapter key -> LoRA factor
    whole: dict[str, str] = field(default_factory=dict)  # adapter key -> fine-tune tensor saved whole
    ranks: dict[str, int] = field(default_factory=dict)  # adapted module -> rank
    modules_to_save: set[str] = field(default_factory=set)
    biases: list[str] = field(default_factory=list)  # changed biases (carried with PEFT's bias="all")
    fan_in_fan_out: bool = False
    kinds: dict[str, str] | None = None  # module kinds of the transformers model (None: guessed)
    entries: list[Entry] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def open_pair(model: str, base: str, allow_pickle: bool) -> tuple[Checkpoint, Checkpoint]:
    """The fine-tune and its base, from headers: of one architecture, or no adapter can fit."""
    from mergesmith.plan.checks import check_architectures

    ft = open_model(model, None, allow_pickle=allow_pickle)
    base_ckpt = open_model(base, None, allow_pickle=allow_pickle)
    try:
        check_architectures({base: base_ckpt, model: ft}, base, allow_crimes=False,
                            fix="extract from a fine-tune of this base: an adapter applies to its base's architecture")
    except BaseException:
        ft.close()
        base_ckpt.close()
        raise
    return ft, base_ckpt


def extract(ft: Checkpoint, base: Checkpoint, options: ExtractOptions) -> Extraction:
    """Walk the fine-tune's modules and decompose every changed one (see the module docstring)."""
    options.check()
    kinds = module_kinds(ft)
    modules, left_out = group_modules(ft, kinds, options.include, options.exclude)
    out = Extraction(kinds=kinds)
    out.entries += [Entry(t, "excluded", ft.tensors[t].shape) for t in left_out]
    for module in modules:
        _extract_module(ft, base, module, options, out)
    if out.biases:
        _carry_biases(ft, modules, out)
    if kinds is not None and ft.tied_embeddings:
        _follow_tied_head(ft, kinds, out)
    return out


def _extract_module(ft: Checkpoint, base: Checkpoint, module: Module, options: ExtractOptions, out: Extraction) -> None:
    changed = {}
    for tensor in module.tensors:
        if tensor not in base.tensors:
            raise IncompatibleModelsError(f"tensor {tensor!r} is in the fine-tune ({ft.where}) but not in the base "
                                          f"({base.where})", hint="extract from a fine-tune of this base model")
        new, old = ft.read_finite(tensor), base.read_finite(tensor)
        if new.shape != old.shape:
            changed[tensor] = None  # a resized vocabulary: only saving it whole can carry it
            out.warnings.append(f"{tensor}: shape {list(new.shape)} in the fine-tune, {list(old.shape)} in "
                                "the base; it is saved whole, and the base's embeddings must be resized to "
                                f"{new.shape[0]} rows before loading the adapter")
        elif not _equal(new, old):
            changed[tensor] = new.float() - old.float()
    for tensor in module.tensors:
        if tensor not in changed:
            out.entries.append(Entry(tensor, "unchanged", ft.tensors[tensor].shape))
    if changed:
        _place(module, changed, ft, options, out)


def _equal(a: Any, b: Any) -> bool:
    from mergesmith.lazy_torch import torch

    return a.dtype == b.dtype and bool(torch.equal(a, b))


def _decomposable(module: Module, changed: dict[str, Any], options: ExtractOptions) -> bool:
    weight = module.weight
    if weight is None or weight not in changed or changed[weight] is None or changed[weight].dim() != 2:
        return False
    if module.kind in ("embedding", "head"):
        return options.embeddings
    return module.kind in LINEAR_KINDS


def _place(module: Module, changed: dict[str, Any], ft: Checkpoint, options: ExtractOptions, out: Extraction) -> None:
    """Decompose the module's weight and carry its bias, or save the module whole."""
    bias = module.bias
    if bias is not None and bias in changed and changed[bias] is not None and module.kind != "other":
        delta = changed.pop(bias)
        kept = not options.skip_undecomposable
        out.entries.append(Entry(bias, "bias" if kept else "dropped", tuple(delta.shape), None,
                                 0.0 if kept else 1.0, 1.0 if kept else 0.0, float(delta.norm())))
        if kept:
            out.biases.append(bias)
    if not changed:
        return
    if not _decomposable(module, changed, options):
        _save_whole(module, changed, ft, options, out)
        return
    weight = module.weight
    assert weight is not None
    delta = changed[weight]
    embedding = module.kind == "embedding"
    transposed = embedding or module.kind == "conv1d"  # PEFT's orientation for these (see lora_source)
    factors = decompose(delta.T if transposed else delta, options.rank, energy=options.energy, method=options.method)
    dtype = _adapter_dtype(ft, weight, options)
    names = ("lora_embedding_A", "lora_embedding_B") if embedding else ("lora_A.weight", "lora_B.weight")
    out.factors[f"{PREFIX}{module.name}.{names[0]}"] = factors.a.to(dtype).contiguous()
    out.factors[f"{PREFIX}{module.name}.{names[1]}"] = factors.b.to(dtype).contiguous()
    out.ranks[module.name] = factors.rank
    out.fan_in_fan_out |= module.kind == "conv1d"
    out.entries.append(Entry(weight, "lora_embedding" if embedding else "lora", tuple(delta.shape), factors.rank,
                             factors.rel_error, factors.energy_kept, float(delta.norm())))


def _save_whole(module: Module, changed: dict[str, Any], ft: Checkpoint, options: ExtractOptions, out: Extraction) -> None:
    kind = "dropped" if options.skip_undecomposable else "saved"
    for tensor, delta in changed.items():
        norm = float(delta.norm()) if delta is not None else None
        out.entries.append(Entry(tensor, kind, ft.tensors[tensor].shape, None, 1.0 if kind == "dropped" else 0.0,
                                 0.0 if kind == "dropped" else 1.0, norm))
    if kind == "saved":
        # PEFT restores a modules_to_save module whole, so its unchanged tensors are saved too
        out.modules_to_save.add(module.name)
        out.whole.update({f"{PREFIX}{t}": t for t in module.tensors})


def _carry_biases(ft: Checkpoint, modules: list[Module], out: Extraction) -> None:
    """PEFT's bias="all" saves every bias and loads them over the base's: the exact way to carry
    changed biases (lora_bias would add a bias to every adapted layer, and blocks merging)."""
    for module in modules:
        bias = module.bias
        if bias is None or module.name in out.modules_to_save:
            continue
        wrapped = module.name in out.ranks  # PEFT moves an adapted layer's bias under base_layer
        key = f"{PREFIX}{module.name}.base_layer.bias" if wrapped else f"{PREFIX}{bias}"
        out.whole[key] = bias


def _follow_tied_head(ft: Checkpoint, kinds: dict[str, str], out: Extraction) -> None:
    """A head tied to the embeddings must get the embeddings' change too: PEFT unties them."""
    from mergesmith.arch import head_and_embedding

    head = next((name for name, kind in kinds.items() if kind == "head"), None)
    _, embed = head_and_embedding(ft.tensors)
    if head is None or embed is None or f"{head}.weight" in ft.tensors:
        return
    module = embed.rpartition(".")[0]
    if module in out.modules_to_save:
        out.modules_to_save.add(head)
        out.whole[f"{PREFIX}{head}.weight"] = embed
    elif module in out.ranks:  # delta^T = B_e A_e for the embedding, so delta = A_e^T B_e^T for the head
        out.factors[f"{PREFIX}{head}.lora_A.weight"] = out.factors[f"{PREFIX}{module}.lora_embedding_B"].T.contiguous()
        out.factors[f"{PREFIX}{head}.lora_B.weight"] = out.factors[f"{PREFIX}{module}.lora_embedding_A"].T.contiguous()
        out.ranks[head] = out.ranks[module]


def _adapter_dtype(ft: Checkpoint, tensor: str, options: ExtractOptions) -> Any:
    from mergesmith.io.safetensors_format import TORCH_NAMES
    from mergesmith.lazy_torch import torch

    meta = ft.tensors[tensor]
    name = options.dtype or (TORCH_NAMES[meta.dtype] if meta.is_float else "float32")
    return getattr(torch, name)
