"""Run mergekit's own method implementations on tensors from a safetensors file.

Usage (with the Python of a venv that has mergekit installed):

    python mergekit_runner.py CASES.json INPUTS.safetensors OUTPUTS.safetensors
    python mergekit_runner.py --specs SPECS.json

The second form writes every registered method's parameters (name, scope, default,
required) and input contract as JSON.

CASES.json is a list of {"id", "method", "inputs": [tensor names], "base_index",
"parameters", "seeds"}. Each case is merged with ``mergekit.merge_methods.api.merge_tensors``
once per seed (``torch.manual_seed(seed)`` first: mergekit's random methods use the global
generator), and the results are saved as "<id>/<seed>". A failure is saved as text in
"<id>/error" instead. Only mergekit, torch and safetensors are imported here.
"""

from __future__ import annotations

import json
import sys

import torch
from mergekit.merge_methods.api import merge_tensors
from safetensors.torch import load_file, save_file


def main(cases_path: str, inputs_path: str, outputs_path: str) -> None:
    with open(cases_path) as handle:
        cases = json.load(handle)
    inputs = load_file(inputs_path)
    outputs: dict[str, torch.Tensor] = {}
    errors: dict[str, str] = {}
    for case in cases:
        tensors = [inputs[name] for name in case["inputs"]]
        for seed in case.get("seeds", [0]):
            torch.manual_seed(seed)
            try:
                result = merge_tensors(
                    tensors, case["method"], parameters=case["parameters"], base_index=case["base_index"]
                )
            except Exception as exc:  # reported to the test, which decides
                errors[case["id"]] = f"{type(exc).__name__}: {exc}"
                break
            outputs[f"{case['id']}/{seed}"] = result.contiguous()
    save_file(outputs, outputs_path, metadata={"errors": json.dumps(errors)})


def dump_specs(path: str) -> None:
    from mergekit.merge_methods.registry import registered_methods

    specs = {}
    for method in registered_methods():
        spec = method.spec
        specs[spec.name] = {
            "parameters": {
                p.name: {"scope": p.scope.value, "required": p.required, "default": None if p.required else p.default}
                for p in spec.parameters
            },
            "base": spec.contract.base.value,
            "min_inputs": spec.contract.min_inputs,
            "max_inputs": spec.contract.max_inputs,
            "min_non_base": spec.contract.min_non_base,
            "max_non_base": spec.contract.max_non_base,
            "optional_tensor_policy": spec.optional_tensor_policy.value,
            "reference_url": spec.reference_url,
        }
    with open(path, "w") as handle:
        json.dump(specs, handle, indent=1, default=str)


if __name__ == "__main__":
    if sys.argv[1] == "--specs":
        dump_specs(sys.argv[2])
    else:
        main(*sys.argv[1:4])
