"""Build a mixture of experts: plan from headers, compute gates, stream tensors to disk.

The order keeps failures early and cheap: the config is validated, every input is opened
from its headers and checked against the base, the output is planned, and only then are the
gate vectors computed (one forward pass of the base per prompt) and the tensors copied one
at a time into an atomic sharded writer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mergesmith.engine.executor import check_device, tensor_seed
from mergesmith.engine.write import SideFiles, write_checkpoint
from mergesmith.errors import MethodError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.models import open_model
from mergesmith.io.safetensors_format import TORCH_NAMES
from mergesmith.io.target import check_output_location, check_target
from mergesmith.lazy_torch import torch
from mergesmith.moe.arch import OutputArch, output_config, select_arch
from mergesmith.moe.card import moe_card
from mergesmith.moe.config import MoEConfig, load_moe_config
from mergesmith.moe.gates import gate_vectors, parallel_gate_warnings
from mergesmith.moe.plan import OutTensor, check_experts, out_dtype, plan_outputs

log = logging.getLogger("mergesmith")


@dataclass
class MoEResult:
    out_dir: Path
    architecture: str  # output model_type, e.g. "mixtral"
    experts: int
    tensors: int
    bytes_written: int
    warnings: list[str] = field(default_factory=list)


def build_moe(config: str | Path | dict | MoEConfig, out_dir: str | Path, *, base_dir: Path | None = None,
              overwrite: bool = False, shard_size: str | int = "5G", seed: int = 0, device: str = "cpu",
              allow_pickle: bool = False, allow_identical_experts: bool = False) -> MoEResult:
    """Build the MoE a mergekit-moe config describes into `out_dir` (atomically)."""
    parsed, text = load_moe_config(config)
    if base_dir is None and isinstance(config, (str, Path)) and str(config).endswith((".yml", ".yaml")):
        base_dir = Path(config).resolve().parent
    out_dir = Path(out_dir)
    inputs = _open_inputs(parsed, base_dir, allow_pickle)
    try:
        return _build(parsed, text, inputs, out_dir, overwrite=overwrite, shard_size=shard_size, seed=seed,
                      device=device, allow_identical=allow_identical_experts)
    finally:
        for ckpt in inputs.values():
            ckpt.close()


def _open_inputs(config: MoEConfig, base_dir: Path | None, allow_pickle: bool) -> dict[str, Checkpoint]:
    refs = [config.base_model] + [e.source_model for e in config.experts]
    refs += [e.source_model for e in config.shared_experts or []]
    return {ref: open_model(ref, base_dir, allow_pickle=allow_pickle) for ref in dict.fromkeys(refs)}


def _build(config: MoEConfig, text: str, inputs: dict[str, Checkpoint], out_dir: Path, *, overwrite: bool,
           shard_size: str | int, seed: int, device: str, allow_identical: bool) -> MoEResult:
    base = inputs[config.base_model]
    # Before the gates' forward passes; the target is checked again under the writer's lock.
    check_output_location(out_dir, [(ref, c.path) for ref, c in inputs.items()])
    check_target(out_dir.absolute(), overwrite)
    arch = select_arch(config, str(base.config.get("model_type")))
    check_experts(config, inputs, allow_identical=allow_identical)
    paths = {ref: ckpt.path for ref, ckpt in inputs.items()}
    dtype = out_dtype(config, base)
    outs = plan_outputs(config, arch, inputs, dtype)
    gates = gate_vectors(config, base, seed=seed, device=check_device(device))
    names = [e.source_model for e in config.experts]
    warnings = parallel_gate_warnings(gates[:, : len(names)], names) if len(names) > 1 else []
    for warning in warnings:
        log.warning(warning)

    def produce(sink: Callable[[str, Any], None], on_done: Callable[[int], None], skip: set[str]) -> None:
        for out in outs:
            sink(out.spec.name, _produce(out, inputs, gates, len(names), seed))
            on_done(out.spec.nbytes)

    nbytes = write_checkpoint(out_dir, [o.spec for o in outs], paths, produce,
                              _side_files(config, text, arch, base, dtype, seed),
                              shard_size=shard_size, overwrite=overwrite)
    return MoEResult(out_dir, arch.key, len(names), len(outs), nbytes, warnings)


def _produce(out: OutTensor, inputs: dict[str, Checkpoint], gates: Any, experts: int, seed: int) -> Any:
    """One output tensor, in its output dtype."""
    dtype = getattr(torch, TORCH_NAMES[out.spec.dtype])
    if out.gate is not None:
        layer, kind = out.gate
        rows = gates[layer, :experts] if kind == "router" else gates[layer, experts:]
        return rows.to(dtype).contiguous()
    assert out.model is not None and out.name is not None
    tensor = inputs[out.model].read_finite(out.name)
    expert = out.expert
    if expert is not None and (expert.noise_scale or (out.residual and expert.residual_scale is not None)):
        tensor = tensor.float()
        if expert.noise_scale:
            gen = torch.Generator().manual_seed(tensor_seed(seed, out.spec.name))
            tensor = tensor + torch.randn(tensor.shape, generator=gen) * expert.noise_scale
        if out.residual and expert.residual_scale is not None:
            tensor = tensor * expert.residual_scale
    converted = tensor.to(dtype)
    if converted.is_floating_point() and not bool(converted.isfinite().all()):
        raise MethodError(f"tensor {out.spec.name!r} (from {out.model!r}): its values exceed the range of "
                          f"{TORCH_NAMES[out.spec.dtype]} and would be written as infinity",
                          hint="set `dtype: float32` (or bfloat16) in the MoE config")
    return converted


def _side_files(config: MoEConfig, text: str, arch: OutputArch, base: Checkpoint, dtype: str,
                seed: int) -> SideFiles:
    qkv_bias = any(n.endswith("self_attn.q_proj.bias") for n in base.tensors)
    cfg = output_config(arch, base.config, config, TORCH_NAMES[dtype], qkv_bias)
    return SideFiles(cfg, moe_card(config, text, arch.title), "mergesmith_moe.yaml", text, f"moe:{arch.key}", seed,
                     copy_from=base.path, manifest_extra={"gate_mode": config.gate_mode})
