"""Write an extraction as a PEFT adapter directory, atomically.

adapter_config.json: `r` is the most common rank and `lora_alpha = r` (scale 1: the factors
carry the singular values); modules of another rank get `rank_pattern` and `alpha_pattern`
entries with alpha equal to their rank. `target_modules` uses leaf names (`q_proj`) where
every module of that name is adapted, full names otherwise; `modules_to_save` uses full
module names, because PEFT matches those by plain string suffix (`norm` would also catch
every `input_layernorm`).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.lora_source import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from mergesmith.io.target import check_target, staged_folder
from mergesmith.lora.extract import Extraction
from mergesmith.lora.modules import target_modules

REPORT_NAME = "extraction_report.json"


def adapter_config(ext: Extraction, base_ref: str, kinds: dict[str, str] | None, names: list[str]) -> dict[str, Any]:
    ranks = ext.ranks
    r = Counter(ranks.values()).most_common(1)[0][0] if ranks else 1
    others = {name: rank for name, rank in ranks.items() if rank != r}
    return {
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": base_ref,
        "r": r,
        "lora_alpha": r,
        "rank_pattern": others,
        "alpha_pattern": dict(others),
        "target_modules": target_modules(list(ranks), kinds, names),
        "modules_to_save": sorted(ext.modules_to_save) or None,
        "lora_dropout": 0.0,
        "lora_bias": False,
        "bias": "all" if ext.biases else "none",
        "fan_in_fan_out": ext.fan_in_fan_out,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }


def adapter_tensors(ext: Extraction, ft: Checkpoint) -> dict[str, Any]:
    """Every tensor of the adapter file (whole tensors are read again from the fine-tune)."""
    tensors = dict(ext.factors)
    for key, name in ext.whole.items():
        tensors[key] = ft.read_finite(name).contiguous()
    return tensors


def write_adapter(out_dir: Path, tensors: dict[str, Any], config: dict[str, Any], files: dict[str, str], *,
                  overwrite: bool = False) -> Path:
    """Write the adapter into `.NAME.partial` beside `out_dir`, then rename it into place.

    The same rules and lock as a merge's output (io/target.py): checked under the lock, an
    interrupted earlier run's leftovers removed first, an old adapter replaced by two renames.
    """
    from safetensors.torch import save_file

    out_dir = out_dir.absolute()
    with staged_folder(out_dir, lambda: check_target(out_dir, overwrite)) as tmp:
        save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        (tmp / ADAPTER_CONFIG).write_text(json.dumps(config, indent=2), encoding="utf-8")
        for name, text in files.items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out_dir
