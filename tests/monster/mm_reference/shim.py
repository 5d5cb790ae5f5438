"""Run MergeMonster's own `merge-monster.py` or `monster-mapper.py` on the CPU, recording what
it does. Used by record.py, one subprocess per case (MergeMonster keeps global state):

    python shim.py MERGEMONSTER_DIR monster|mapper CONFIG TRACE_JSON

MergeMonster needs CUDA even in its "cpu" mode; here "cuda" means the CPU and float32 is kept
(its `.half()` and float16 default dtype are skipped), nothing else of its code is changed.
Recorded: every phrase-probability call with the blend (method, ratio) tried just before it,
and for the mapper every context's traces.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def _cpu(device):
    if isinstance(device, str) and device.startswith("cuda"):
        return "cpu"
    if isinstance(device, torch.device) and device.type == "cuda":
        return torch.device("cpu")
    return device


def patch_torch() -> None:
    set_device, set_dtype = torch.set_default_device, torch.set_default_dtype
    torch.set_default_device = lambda device: set_device(_cpu(device))
    torch.set_default_dtype = lambda dtype: set_dtype(torch.float32)
    tensor_to, module_to = torch.Tensor.to, torch.nn.Module.to
    torch.Tensor.to = lambda self, *a, **k: tensor_to(self, *[_cpu(x) for x in a],
                                                      **{n: _cpu(v) for n, v in k.items()})
    torch.nn.Module.to = lambda self, *a, **k: module_to(self, *[_cpu(x) for x in a],
                                                         **{n: _cpu(v) for n, v in k.items()})
    torch.nn.Module.half = lambda self: self


def patch_loading() -> None:
    import modules.models as models
    from transformers import AutoModelForCausalLM

    class Auto:
        @staticmethod
        def from_pretrained(path, **kwargs):
            kwargs.pop("device_map", None)  # "auto" would need accelerate; everything is on the CPU
            return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kwargs)

    models.AutoModelForCausalLM = Auto


def record_monster(events: list) -> tuple:
    import modules.merging as merging
    import modules.probability as probability

    last: dict = {}
    merge_tensors, merge_header = merging.merge_tensors, merging.merge_header_tensors

    def traced_merge(method, v0, v1, t):
        last.update(kind="layer", method=method, ratio=t)
        return merge_tensors(method, v0, v1, t)

    def traced_header(model1, model2, method, v0, v1, t):
        last.update(kind="header", method="lerp", ratio=t)
        return merge_header(model1, model2, method, v0, v1, t)

    calc = probability.calculate_word_probabilities

    def traced_probs(*args, **kwargs):
        probs = calc(*args, **kwargs)
        events.append({**(dict(last) or {"kind": "orig"}), "probs": [p for _, _, p in probs]})
        last.clear()
        return probs

    merging.merge_tensors = traced_merge
    merging.merge_header_tensors = traced_header
    probability.calculate_word_probabilities = traced_probs
    return traced_merge, traced_header, traced_probs


def record_mapper(traces: dict) -> None:
    import modules.mapping as mapping

    generate, display = mapping.generate_token_probabilities, mapping.display_token_probabilities
    current: dict = {}

    def traced_generate(model, tokenizer, context="", **kwargs):
        current["context"] = context
        return generate(model, tokenizer, context, **kwargs)

    def traced_display(token_probabilities, tokenizer):
        traces[current["context"]] = [
            {"tokens": [int(t) for t, _ in path], "probs": [float(p) for _, p in path], "text": text}
            for path, text in token_probabilities]
        return display(token_probabilities, tokenizer)

    mapping.generate_token_probabilities = traced_generate
    mapping.display_token_probabilities = traced_display


def main() -> None:
    mm_dir, kind, config, trace_path = sys.argv[1:5]
    sys.path.insert(0, mm_dir)
    patch_torch()
    patch_loading()
    trace: dict = {"events": [], "mapper": {}}
    if kind == "monster":
        traced = record_monster(trace["events"])
        script = "merge-monster.py"
    else:
        traced = ()
        record_mapper(trace["mapper"])
        script = "monster-mapper.py"
    os.chdir(mm_dir)
    sys.argv = [script, "--config", config]
    # The monster script imported these names itself: hand it the traced ones.
    names = ("merge_tensors", "merge_header_tensors", "calculate_word_probabilities")
    _run(Path(mm_dir) / script, dict(zip(names, traced)) if kind == "monster" else {})
    Path(trace_path).write_text(json.dumps(trace))


def _run(script: Path, overrides: dict) -> None:
    """Run the script as __main__, with `overrides` replacing the names it imports."""
    source = script.read_text()
    code = compile(source, str(script), "exec")
    globs = {"__name__": "__not_main__", "__file__": str(script)}
    exec(code, globs)
    globs.update(overrides)
    globs["main"]()


if __name__ == "__main__":
    main()
