"""Speed and memory of merges, measured side by side in one run.

Generates three random Llama-shaped bf16 models (about 270M parameters each; --layers to
change), then for each method: wall time and peak RSS of `mergesmith merge`, the load average
when it started, and the ratio to the I/O bound measured just before it (reading every input
file once + writing and syncing the output's size once; this also warms the page cache). If
mergekit is installed (MERGEKIT=/path/to/mergekit-yaml, default /work/mkvenv/bin/mergekit-yaml),
it runs the same recipes right after, and the ratio of the two times is printed. Then three
TinyLlama-shaped 1.1B models (--large-methods, default linear and ties): warm, and cold when
the page cache can be dropped (root). Also: `mergesmith --help` start-up, and a tiny merge end
to end. The 7B-shaped run is bench/speed_7b.py.

    python bench/speed.py [--workdir DIR] [--methods linear,task_arithmetic] [--write-results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_METHODS = "linear,task_arithmetic,slerp,passthrough,ties,dare_ties,della"
# (hidden, intermediate, key/value width, attention heads): ~270M parameters at 16 layers, and
# TinyLlama-1.1B's shape at 22 layers.
SHAPES = {"small": (1024, 2816, 256, 16), "tinyllama": (2048, 5632, 256, 32)}
EXTRA_PARAMS = {
    "ties": "density: 0.5", "dare_ties": "density: 0.5", "dare_linear": "density: 0.5",
    "della": "density: 0.5, epsilon: 0.1", "breadcrumbs": "density: 0.9, gamma: 0.01",
}


def llama_shapes(vocab: int, hidden: int, inter: int, kv: int, layers: int) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a Llama/Mistral checkpoint (untied head)."""
    out: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for layer in range(layers):
        p = f"model.layers.{layer}."
        out.update({p + "self_attn.q_proj.weight": (hidden, hidden), p + "self_attn.k_proj.weight": (kv, hidden),
                    p + "self_attn.v_proj.weight": (kv, hidden), p + "self_attn.o_proj.weight": (hidden, hidden),
                    p + "mlp.gate_proj.weight": (inter, hidden), p + "mlp.up_proj.weight": (inter, hidden),
                    p + "mlp.down_proj.weight": (hidden, inter), p + "input_layernorm.weight": (hidden,),
                    p + "post_attention_layernorm.weight": (hidden,)})
    out.update({"model.norm.weight": (hidden,), "lm_head.weight": (vocab, hidden)})
    return out


def make_models(workdir: Path, layers: int, size: str = "small") -> dict[str, Path]:
    import torch
    from safetensors.torch import save_file

    (hidden, inter, kv, heads), vocab = SHAPES[size], 32000
    paths = {}
    base_state: dict[str, torch.Tensor] = {}
    for i, name in enumerate(("base", "a", "b")):
        path = workdir / f"{name}-{size}-{layers}"
        paths[name] = path
        if (path / "model.safetensors").exists():
            continue
        path.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator().manual_seed(i)
        state = llama_shapes(vocab, hidden, inter, kv, layers)
        tensors = {}
        for key, shape in state.items():
            if name == "base":
                base_state[key] = torch.randn(shape, generator=gen) * 0.02
                tensors[key] = base_state[key].to(torch.bfloat16)
            else:
                base = base_state.get(key)
                if base is None:  # base already on disk from an earlier run
                    from safetensors import safe_open

                    with safe_open(paths["base"] / "model.safetensors", "pt") as f:
                        base = f.get_tensor(key).float()
                tensors[key] = (base + torch.randn(shape, generator=gen) * 0.002).to(torch.bfloat16)
        save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
        config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
                  "intermediate_size": inter, "num_hidden_layers": layers, "num_attention_heads": heads,
                  "num_key_value_heads": heads * kv // hidden, "vocab_size": vocab, "torch_dtype": "bfloat16",
                  "tie_word_embeddings": False}
        (path / "config.json").write_text(json.dumps(config))
    return paths


def io_bound(inputs: list[Path], out_bytes: int, scratch: Path) -> float:
    """Seconds to read every input file once and write (and fsync) the output's size once."""
    start = time.perf_counter()
    buf = bytearray(16 << 20)
    view = memoryview(buf)
    for path in inputs:
        with open(path / "model.safetensors", "rb", buffering=0) as f:
            while f.readinto(view):
                pass
    target = scratch / "io_bound.bin"
    with open(target, "wb", buffering=0) as f:
        left = out_bytes
        while left > 0:
            n = f.write(view[: min(len(view), left)])
            left -= n
        os.fsync(f.fileno())
    took = time.perf_counter() - start
    target.unlink()
    return took


def timed(cmd: list[str], cwd: Path | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command, via /usr/bin/time."""
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    rss_kb = int(proc.stderr.strip().splitlines()[-1])
    return took, rss_kb / 1024


def recipe(method: str, paths: dict[str, Path]) -> str:
    extra = EXTRA_PARAMS.get(method, "")
    extra = f", {extra}" if extra else ""
    if method == "linear":
        return (f"models:\n  - model: {paths['a']}\n    parameters: {{weight: 0.5}}\n"
                f"  - model: {paths['b']}\n    parameters: {{weight: 0.5}}\n"
                f"  - model: {paths['base']}\n    parameters: {{weight: 0.2}}\nmerge_method: linear\ndtype: bfloat16\n")
    if method == "slerp":
        return (f"models:\n  - model: {paths['base']}\n  - model: {paths['a']}\nmerge_method: slerp\n"
                f"base_model: {paths['base']}\nparameters: {{t: 0.4}}\ndtype: bfloat16\n")
    if method == "passthrough":
        return f"models:\n  - model: {paths['a']}\nmerge_method: passthrough\ndtype: bfloat16\n"
    return (f"models:\n  - model: {paths['a']}\n    parameters: {{weight: 0.5{extra}}}\n"
            f"  - model: {paths['b']}\n    parameters: {{weight: 0.5{extra}}}\n"
            f"merge_method: {method}\nbase_model: {paths['base']}\ndtype: bfloat16\n")


def can_drop_caches() -> bool:
    return os.access("/proc/sys/vm/drop_caches", os.W_OK)


def drop_caches() -> None:
    """Empty the page cache (root only), so that the next command reads from the disk."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def run_method(method: str, paths: dict[str, Path], workdir: Path, mergekit: Path | None, threads: int,
               cold: bool = False) -> dict:
    """One method: the I/O bound first (which also warms the page cache), then mergesmith, then
    mergekit. With `cold`, the page cache is dropped before the bound and before mergesmith."""
    rfile = workdir / f"{method}.yaml"
    rfile.write_text(recipe(method, paths))
    out = workdir / f"out-{method}"
    subprocess.run(["rm", "-rf", str(out), str(workdir / f"mk-{method}")], check=True)
    inputs = [paths["a"], paths["b"], paths["base"]]
    out_bytes = (paths["a"] / "model.safetensors").stat().st_size  # every method writes the whole model
    load = os.getloadavg()[0]
    if cold:
        drop_caches()
    bound = io_bound(inputs, out_bytes, workdir)
    if cold:
        drop_caches()
    ours, ours_rss = timed([sys.executable, "-m", "mergesmith", "merge", str(rfile), str(out), "--quiet",
                            "--threads", str(threads)])
    row = {"method": method, "ours": ours, "rss": ours_rss, "bound": bound, "load": load, "cold": cold}
    if mergekit is not None:
        try:
            row["mk"], row["mk_rss"] = timed([str(mergekit), str(rfile), str(workdir / f"mk-{method}"),
                                              "--no-copy-tokenizer"])
        except RuntimeError as exc:
            row["mk_error"] = str(exc).splitlines()[-1][:80]
    subprocess.run(["rm", "-rf", str(out), str(workdir / f"mk-{method}")], check=True)
    return row


def startup_figures(workdir: Path) -> dict[str, float]:
    help_s = min(timed([sys.executable, "-m", "mergesmith", "--help"])[0] for _ in range(3))
    sys.path.insert(0, str(HERE.parent / "tests"))
    from factory import make_family

    fam = make_family(workdir / "tiny", "llama") if not (workdir / "tiny" / "llama" / "b").exists() else {
        k: workdir / "tiny" / "llama" / k for k in ("base", "a", "b")}
    (workdir / "tiny.yaml").write_text(recipe("task_arithmetic", fam))
    subprocess.run(["rm", "-rf", str(workdir / "tiny-out")], check=True)
    tiny_s, _ = timed([sys.executable, "-m", "mergesmith", "merge", str(workdir / "tiny.yaml"),
                       str(workdir / "tiny-out"), "--quiet"])
    torch_s = min(timed([sys.executable, "-c", "import torch"])[0] for _ in range(2))
    return {"help": help_s, "tiny": tiny_s, "torch_import": torch_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mergesmith-bench"))
    parser.add_argument("--layers", type=int, default=16, help="16 layers = about 272M parameters")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--large-methods", default="linear,ties",
                        help="methods run on three TinyLlama-shaped 1.1B models ('' for none)")
    parser.add_argument("--large-mergekit", default="linear", help="of those, the ones mergekit runs too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    mk = Path(os.environ.get("MERGEKIT", "/work/mkvenv/bin/mergekit-yaml"))
    mergekit = mk if mk.exists() else None
    from mergesmith.methods import REGISTRY

    paths = make_models(args.workdir, args.layers)
    rows = [run_method(m, paths, args.workdir, mergekit, args.threads)
            for m in args.methods.split(",") if m in REGISTRY]
    large: list[dict] = []
    if args.large_methods:
        big = make_models(args.workdir, 22, "tinyllama")
        for method in args.large_methods.split(","):
            with_mk = mergekit if method in args.large_mergekit.split(",") else None
            large.append(run_method(method, big, args.workdir, with_mk, args.threads))
            if can_drop_caches():
                large.append(run_method(method, big, args.workdir, None, args.threads, cold=True))
    startup = startup_figures(args.workdir)
    table = format_table(rows, large, startup, args, mergekit is not None)
    print(table)
    if args.write_results:
        write_results(table)


TARGETS = {"ties": 0.15, "dare_ties": 0.15, "della": 0.15}  # of mergekit's time; 0.2 for the rest


def format_table(rows: list[dict], large: list[dict], startup: dict[str, float], args: argparse.Namespace,
                 with_mk: bool) -> str:
    params = args.layers * 12.9 + 65.5
    lines = [f"Three random Llama-shaped bf16 models, {args.layers} layers (~{params:.0f}M parameters, "
             f"~{params * 2 / 1000:.2f} GB each); {args.threads} threads; {os.cpu_count()} CPU cores; "
             f"Python {platform.python_version()}; warm page cache. Whole CLI runs, one after another "
             "(I/O bound: read every input file once and write + fsync the output's size once).", ""]
    lines += _table(rows, with_mk)
    if large:
        lines += ["", "Three TinyLlama-shaped bf16 models (22 layers, hidden 2048, ~1.1B parameters, 2.2 GB each); "
                  "cold = page cache dropped (`echo 3 > /proc/sys/vm/drop_caches`) before the I/O bound and "
                  "again before mergesmith, so both read from the disk.", ""]
        lines += _table(large, with_mk)
    lines += ["", f"- `mergesmith --help`: {startup['help']:.2f} s",
              f"- tiny task_arithmetic merge end to end (4-layer Llama, CLI): {startup['tiny']:.2f} s; "
              f"`import torch` alone takes {startup['torch_import']:.2f} s on this machine"]
    return "\n".join(lines)


def _table(rows: list[dict], with_mk: bool) -> list[str]:
    lines = ["| method | cache | load avg | mergesmith s | peak RSS MB | I/O bound s | x I/O bound |"
             + (" mergekit s | mergekit RSS MB | ratio to mergekit (target) |" if with_mk else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|---|" if with_mk else "")]
    for r in rows:
        line = (f"| {r['method']} | {'cold' if r['cold'] else 'warm'} | {r['load']:.1f} | {r['ours']:.2f} | "
                f"{r['rss']:.0f} | {r['bound']:.2f} | {r['ours'] / r['bound']:.2f}x |")
        if with_mk:
            if "mk" in r:
                line += (f" {r['mk']:.1f} | {r['mk_rss']:.0f} | "
                         f"{r['ours'] / r['mk']:.3f} (<= {TARGETS.get(r['method'], 0.2)}) |")
            elif "mk_error" in r:
                line += f" failed: {r['mk_error']} | | |"
            else:
                line += " not run | | |"
        lines.append(line)
    return lines


def write_results(table: str) -> None:
    from results import write_section

    write_section("speed", "Speed and memory (bench/speed.py)", table)


if __name__ == "__main__":
    main()
