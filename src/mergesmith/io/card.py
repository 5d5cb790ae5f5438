"""What goes beside the merged weights: model card, recipe copy, manifest, side files."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from pathlib import Path
from typing import Any

from mergesmith.io.resolve import looks_like_hub_id

SIDE_FILES = (
    "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "tokenizer.model", "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja",
    "chat_template.json", "vocab.txt",
)


def model_card(recipe_yaml: str, method: str, models: list[str], base: str | None) -> str:
    front = ["---"]
    hub_bases = [base] if base and looks_like_hub_id(base) else []
    if hub_bases:
        front.append("base_model:")
        front += [f"- {b}" for b in hub_bases]
    front += ["library_name: transformers", "tags:", "- merge", "- mergesmith", "---", ""]
    listing = "\n".join(f"- {m}" for m in models)
    body = (
        "# Merged model\n\n"
        f"This model was made with [mergesmith](https://github.com/mergesmith/mergesmith) using the "
        f"**{method}** merge method"
        + (f", with `{base}` as the base" if base else "")
        + ".\n\n## Models merged\n\n"
        f"{listing}\n\n## Recipe\n\n```yaml\n{recipe_yaml.rstrip()}\n```\n"
    )
    return "\n".join(front) + body


_PACKAGES = ("torch", "numpy", "safetensors", "pydantic")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(inputs: dict[str, Path | None], method: str, seed: int, tensors: int, nbytes: int,
             extra: dict[str, Any] | None = None) -> str:
    """Inputs (with sizes and hashes of their index/config files), method, seed, versions."""
    from importlib.metadata import version

    from mergesmith.version import __version__

    described = []
    for ref, path in inputs.items():
        entry: dict[str, Any] = {"ref": ref, "path": str(path) if path else None}
        if path:
            files = sorted(p for p in path.iterdir() if p.is_file())
            entry["files"] = {p.name: p.stat().st_size for p in files}
            entry["sha256"] = {p.name: _sha256(p) for p in files if p.suffix == ".json"}
        described.append(entry)
    data = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "method": method,
        "seed": seed,
        "inputs": described,
        "output": {"tensors": tensors, "bytes": nbytes},
        # from the installed packages' metadata: a merge on numpy never imports torch (2-3 s)
        "versions": {"mergesmith": __version__, **{name: version(name) for name in _PACKAGES},
                     "python": platform.python_version()},
    }
    data.update(extra or {})
    return json.dumps(data, indent=2)
