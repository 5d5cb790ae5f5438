"""Write mergekit 0.1.5's outputs for the comparison recipes into tests/compat/golden/ (run by hand).

    /work/mkvenv/bin/python tests/compat/make_golden.py          # every case
    /work/mkvenv/bin/python tests/compat/make_golden.py ties sce  # only these (others kept)

Run with the Python of a venv that has mergekit 0.1.5 (not the project's venv: mergesmith is
not imported here). It builds the inputs of compat_inputs.py in a temporary folder, runs each
recipe of compat_cases.py through mergekit (``run_merge`` in this process, ``mergekit-multi``
for multi-document recipes, seeded with ``--random-seed`` semantics), and writes the files
below. A rerun gives the same files except the ids of the tokens a union appends: mergekit takes
them in the order of the tokenizers library's hash maps (the tests compare those by token).

  golden/outputs.safetensors  mergekit's output tensors of every exact and half-precision case,
                              each stored once by sha256 (none equal to an input tensor: those
                              are found among the inputs by the same hash)
  golden/index.json           mergekit's version, the inputs' sha256, and per case: the output
                              tensors' sha256, the vocabulary and chat template (tokenizer
                              cases), a seeded summary (random methods), the per-model kept
                              counts and thresholds of mergekit's top-k selections, or the error
  golden/kernels.safetensors  mergekit's method kernels (merge_tensors) on compat_kernels.py's
  golden/kernels.json         inputs: outputs or fingerprints, random-method statistics per
                              seed, every method's parameter specs and input contract, errors

`kernels` as an argument regenerates only the kernel goldens.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from compat_cases import BY_ID, CASES, Case, resolve  # noqa: E402
from compat_compare import GOLDEN, input_pool, random_summary, read_output, tensor_sha  # noqa: E402
from compat_inputs import build_inputs, input_hashes  # noqa: E402
from compat_kernels import CASES as KERNEL_CASES  # noqa: E402
from compat_kernels import RANDOM_CASES, SEEDS, fingerprint, is_big, kernel_inputs, random_stats  # noqa: E402

SEED = 7
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def run_mergekit(case: Case, root: Path, work: Path) -> Path:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import run_merge
    from mergekit.options import MergeOptions

    text = resolve(case.recipe, root / "models")
    if case.multi:
        (work / "recipe.yaml").write_text(text)
        final = list(yaml.safe_load_all(text))[-1].get("name")  # unnamed: written to --out-path
        done = subprocess.run([str(Path(sys.executable).with_name("mergekit-multi")), str(work / "recipe.yaml"),
                               "-I", str(work / "inter"), "--out-path", str(work / "out"), "--random-seed", str(SEED),
                               "--lora-merge-cache", str(work / "lora")], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-3000:])
        return work / "inter" / final if final else work / "out"
    config = MergeConfiguration.model_validate(yaml.safe_load(text))
    options = MergeOptions(random_seed=SEED, copy_tokenizer=True, lora_merge_cache=str(work / "lora"),
                           write_model_card=False, quiet=True)
    run_merge(config, str(work / "out"), options=options)
    return work / "out"


def tokenizer_record(out: Path) -> dict:
    tok = json.loads((out / "tokenizer.json").read_text())
    vocab = dict(tok["model"]["vocab"])
    vocab.update({t["content"]: t["id"] for t in tok.get("added_tokens", [])})
    template = None
    config = json.loads((out / "tokenizer_config.json").read_text())
    if (out / "chat_template.jinja").exists():
        template = (out / "chat_template.jinja").read_text()
    elif "chat_template" in config:
        template = config["chat_template"]
    return {"vocab": vocab, "chat_template": template,
            "vocab_size": json.loads((out / "config.json").read_text()).get("vocab_size")}


def topk_record(case: Case, root: Path, dtype: torch.dtype) -> dict:
    """mergekit's own selections on each model's delta (in the recipe's dtype): kept count, thresholds."""
    from mergekit.sparsify import SparsificationMethod, sparsify

    spec = case.topk
    assert spec is not None
    base = read_output(Path(resolve(spec["base"], root / "models")))
    record: dict[str, list] = {}
    if spec.get("kind") == "variance":
        return variance_record(spec, root, base, dtype)
    for i, model in enumerate(spec["models"]):
        tensors = read_output(Path(resolve(model, root / "models")))
        for name in sorted(base):
            delta = tensors[name].to(dtype) - base[name].to(dtype)
            gamma = spec["gamma"][i] if spec["gamma"] else 0
            method = SparsificationMethod.magnitude_outliers if spec["gamma"] else SparsificationMethod.magnitude
            kept = sparsify(delta, density=spec["density"][i], method=method, gamma=gamma)
            mags = delta.abs().float().reshape(-1)
            on = kept.reshape(-1) != 0
            record.setdefault(name, []).append({
                "kept": int(on.sum()), "low": float(mags[on].min()) if on.any() else None,
                "high": float(mags[on].max()) if on.any() else None})
    return record


def variance_record(spec: dict, root: Path, base: dict[str, torch.Tensor], dtype: torch.dtype) -> dict:
    """sce: mergekit's selection by the variance of the deltas across models (one mask for all)."""
    from mergekit.merge_methods.sce import sce_mask

    models = [read_output(Path(resolve(m, root / "models"))) for m in spec["models"]]
    record = {}
    for name in sorted(base):
        tvs = torch.stack([m[name].to(dtype) - base[name].to(dtype) for m in models])
        on = sce_mask(tvs, spec["density"][0], dtype).reshape(-1) != 0
        var = torch.var(tvs, dim=0, unbiased=False).abs().float().reshape(-1)
        record[name] = [{"kept": int(on.sum()), "low": float(var[on].min()) if on.any() else None, "high": None}]
    return record


def golden_case(case: Case, root: Path, outputs: dict[str, torch.Tensor]) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            out_dir = run_mergekit(case, root, Path(tmp))
        except Exception as exc:  # recorded: the test shows it instead of a comparison
            return {"error": f"{type(exc).__name__}: {exc}"[-3000:]}
        out = read_output(out_dir)
        entry: dict = {"tensors": {n: tensor_sha(t) for n, t in sorted(out.items())},
                       "config": json.loads((out_dir / "config.json").read_text())}
        if case.tokenizer:
            entry["tokenizer"] = tokenizer_record(out_dir)
        if case.check == "random":
            base_ref = yaml.safe_load(resolve(case.recipe, root / "models"))["base_model"]
            entry["summary"] = random_summary(out, read_output(Path(base_ref)))
        else:
            outputs.update({tensor_sha(t): t.contiguous() for t in out.values()})
        if case.topk:
            dtype = DTYPES[yaml.safe_load(resolve(case.recipe, root / "models"))["dtype"]]
            entry["topk"] = topk_record(case, root, dtype)
        return entry


def kernel_specs() -> dict:
    """Every registered mergekit method: parameters (scope, default, required) and input contract."""
    from mergekit.merge_methods.registry import registered_methods

    specs = {}
    for method in registered_methods():
        spec = method.spec
        specs[spec.name] = {
            "parameters": {p.name: {"scope": p.scope.value, "required": p.required,
                                    "default": None if p.required else p.default} for p in spec.parameters},
            "base": spec.contract.base.value, "min_inputs": spec.contract.min_inputs,
            "max_inputs": spec.contract.max_inputs, "min_non_base": spec.contract.min_non_base,
            "max_non_base": spec.contract.max_non_base,
            "optional_tensor_policy": spec.optional_tensor_policy.value,
        }
    return specs


def make_kernels() -> None:
    from mergekit.merge_methods.api import merge_tensors

    inputs = kernel_inputs()
    outputs: dict[str, torch.Tensor] = {}
    errors: dict[str, str] = {}
    jobs = [(cid, m, names, bi, p, [0]) for cid, m, names, bi, p in KERNEL_CASES]
    jobs += [(cid, m, ["rand_base", "rand_m"], 0, p, SEEDS) for cid, m, p in RANDOM_CASES]
    for cid, method, names, base_index, params, seeds in jobs:
        for seed in seeds:
            torch.manual_seed(seed)  # mergekit's random methods draw from the global generator
            try:
                out = merge_tensors([inputs[n] for n in names], method, parameters=params, base_index=base_index)
            except Exception as exc:  # recorded: the test shows it
                errors[cid] = f"{type(exc).__name__}: {exc}"
                break
            if len(seeds) > 1:
                delta = inputs["rand_m"] - inputs["rand_base"]
                outputs[f"{cid}/{seed}"] = random_stats(out, inputs["rand_base"], delta)
            elif is_big(names):
                outputs.update({f"{cid}/{k}": v.contiguous() for k, v in fingerprint(out).items()})
            else:
                outputs[cid] = out.contiguous()
    save_file(outputs, str(GOLDEN / "kernels.safetensors"))
    record = {"inputs": {n: tensor_sha(t) for n, t in sorted(inputs.items())}, "errors": errors,
              "specs": kernel_specs()}
    (GOLDEN / "kernels.json").write_text(json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def main(selected: list[str]) -> None:
    from importlib.metadata import version

    import mergekit  # noqa: F401

    GOLDEN.mkdir(exist_ok=True)
    if not selected or "kernels" in selected:
        print("kernels ...", flush=True)
        make_kernels()
    selected = [s for s in selected if s != "kernels"]
    if not selected and "kernels" in sys.argv[1:]:
        return
    index_path = GOLDEN / "index.json"
    index = json.loads(index_path.read_text()) if selected and index_path.exists() else {"cases": {}}
    outputs_path = GOLDEN / "outputs.safetensors"
    outputs = load_file(outputs_path) if selected and outputs_path.exists() else {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_inputs(root / "models")
        index["mergekit"] = version("mergekit")
        index["torch"] = torch.__version__
        index["seed"] = SEED
        index["inputs"] = input_hashes(root / "models")
        index["regenerate"] = "/work/mkvenv/bin/python tests/compat/make_golden.py"
        for case in CASES:
            if selected and case.id not in selected:
                continue
            print(f"{case.id} ...", flush=True)
            index["cases"][case.id] = golden_case(case, root, outputs)
            if "error" in index["cases"][case.id]:
                print(f"  mergekit failed: {index['cases'][case.id]['error'][-300:]}", flush=True)
        inputs = input_pool(root / "models")
    index["cases"] = {k: index["cases"][k] for k in sorted(index["cases"]) if k in BY_ID}
    used = {sha for record in index["cases"].values() if "summary" not in record
            for sha in record.get("tensors", {}).values()}
    save_file({sha: outputs[sha] for sha in sorted(used - set(inputs))}, str(outputs_path))
    index_path.write_text(json.dumps(index, sort_keys=True, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
