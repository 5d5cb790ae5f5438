"""LoRA: extract a PEFT adapter from a fine-tune and its base (`extract_lora`).

Applying adapters while merging (`model: BASE+ADAPTER` in recipes) lives with the other
inputs, in `mergesmith.io.lora_source`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mergesmith.lora.extract import Entry, Extraction, ExtractOptions


@dataclass
class LoraResult:
    out_dir: Path
    extraction: Extraction
    report: str  # the printed report
    adapter_bytes: int


def extract_lora(model: str, base: str, out_dir: str | Path, *, rank: int, energy: float | None = None,
                 embeddings: bool = False, skip_undecomposable: bool = False, method: str = "exact",
                 dtype: str | None = None, include: list[str] | None = None, exclude: list[str] | None = None,
                 overwrite: bool = False, allow_pickle: bool = False, command: str = "") -> LoraResult:
    """Extract `model - base` as a PEFT LoRA adapter of at most `rank` into `out_dir`."""
    from mergesmith.io.card import manifest
    from mergesmith.io.target import MANIFEST, check_output_location, check_target
    from mergesmith.lora.adapter import REPORT_NAME, adapter_config, adapter_tensors, write_adapter
    from mergesmith.lora.extract import extract, open_pair
    from mergesmith.lora.report import adapter_card, report_json, report_text

    options = ExtractOptions(rank, energy, embeddings, skip_undecomposable, method, dtype,
                             list(include or []), list(exclude or []))
    options.check()
    ft, base_ckpt = open_pair(model, base, allow_pickle)
    try:
        inputs = {model: ft.path, base: base_ckpt.path}
        check_output_location(Path(out_dir), inputs.items())
        check_target(Path(out_dir).absolute(), overwrite)  # early; checked again under the lock
        ext = extract(ft, base_ckpt, options)
        config = adapter_config(ext, base, ext.kinds, [n.rpartition(".")[0] for n in ft.tensors])
        tensors = adapter_tensors(ext, ft)
        nbytes = sum(t.numel() * t.element_size() for t in tensors.values())
        files = {REPORT_NAME: report_json(ext, model, base, options, nbytes),
                 "README.md": adapter_card(model, base, ext, command or f"mergesmith extract-lora --rank {rank}"),
                 # the manifest marks the folder as mergesmith's, so --overwrite may replace it
                 MANIFEST: manifest(inputs, "extract-lora", 0, len(tensors), nbytes, extra={"rank": rank})}
        out = write_adapter(Path(out_dir), tensors, config, files, overwrite=overwrite)
    finally:
        ft.close()
        base_ckpt.close()
    return LoraResult(out, ext, report_text(ext), nbytes)


__all__ = ["extract_lora", "ExtractOptions", "Extraction", "Entry", "LoraResult"]
