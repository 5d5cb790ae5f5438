"""A 7B-shaped merge against the disk's own speed: not in CI, run once by hand.

Writes three random Mistral-7B-shaped bf16 models (32 layers, hidden 4096, intermediate 14336,
8 key/value heads, vocabulary 32000: 7.24B parameters, 14.5 GB each, in 5 GB shards), measures
the disk with dd (sequential write with fdatasync, then a cold sequential read), then runs
`mergesmith merge` for each method with the page cache dropped first (so the inputs come from
the disk, as on a machine with less memory than the inputs), and prints wall time, peak RSS and
the ratio to the disk-bound time (inputs read at dd's read speed + output written at its write
speed). The models are deleted at the end unless --keep. Needs root to drop the page cache
(else the run says so and reads whatever is cached); needs ~60 GB free in --workdir.

    python bench/speed_7b.py [--workdir DIR] [--methods linear,ties] [--keep] [--write-results]

The weights are not trained values: the base is normal(0, 0.02) noise, and each fine-tune
flips the base's four lowest bfloat16 mantissa bits with random ones (a relative change of up to
~6%), so task vectors are small and dense as after fine-tuning. A 256 MB block of noise is
generated once and each tensor takes its bytes from a different offset in it, which keeps
generation at disk speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HIDDEN, INTER, KV, LAYERS, VOCAB = 4096, 14336, 1024, 32, 32000
SHARD = 5 * 10**9
BLOCK = 128 << 20  # entries of noise (256 MB of bf16)


def shapes() -> dict[str, tuple[int, ...]]:
    from speed import llama_shapes

    return llama_shapes(VOCAB, HIDDEN, INTER, KV, LAYERS)


def noise_blocks():
    import numpy as np

    rng = np.random.default_rng(0)
    values = (rng.standard_normal(BLOCK, dtype=np.float32) * np.float32(0.02)).view(np.uint32)
    base = (values >> 16).astype(np.uint16)  # truncated to bfloat16: fine for noise
    flips = rng.integers(0, 16, BLOCK, dtype=np.uint16)
    return base, flips


def tensor_bits(base, flips, index: int, numel: int, model: int, out):
    """The bf16 bits of tensor `index` of model `model` (0 = base) into `out` (uint16, numel)."""
    start = (index * 7_919_993) % BLOCK
    done = 0
    while done < numel:
        n = min(numel - done, BLOCK - start)
        out[done:done + n] = base[start:start + n]
        if model:
            fstart = (start + model * 40_009_999) % (BLOCK - n) if n < BLOCK else 0
            seg = out[done:done + n]
            seg &= 0xFFF0
            seg |= flips[fstart:fstart + n]
        done += n
        start = 0
    return out


def write_model(path: Path, model: int, blocks) -> int:
    """One model in 5 GB shards with its index and config; returns bytes written."""
    import numpy as np

    path.mkdir(parents=True, exist_ok=True)
    specs = list(shapes().items())
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    used = 0
    for name, shape in specs:
        nbytes = 2 * int(np.prod(shape))
        if shards[-1] and used + nbytes > SHARD:
            shards.append([])
            used = 0
        shards[-1].append((name, shape))
        used += nbytes
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    total = 0
    buf = np.empty(max(int(np.prod(shape)) for _, shape in specs), dtype=np.uint16)
    index = 0
    for file, shard in zip(names, shards):
        header: dict = {"__metadata__": {"format": "pt"}}
        pos = 0
        for name, shape in shard:
            n = 2 * int(np.prod(shape))
            header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [pos, pos + n]}
            pos += n
            weight_map[name] = file
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with open(path / file, "wb") as f:
            f.write(len(raw).to_bytes(8, "little") + raw)
            for _name, shape in shard:
                numel = int(np.prod(shape))
                f.write(memoryview(tensor_bits(*blocks, index, numel, model, buf[:numel])).cast("B"))
                index += 1
        total += pos
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                    "weight_map": weight_map}))
    config = {"architectures": ["MistralForCausalLM"], "model_type": "mistral", "hidden_size": HIDDEN,
              "intermediate_size": INTER, "num_hidden_layers": LAYERS, "num_attention_heads": 32,
              "num_key_value_heads": 8, "vocab_size": VOCAB, "torch_dtype": "bfloat16",
              "tie_word_embeddings": False, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
              "rope_theta": 10000.0, "sliding_window": 4096}
    (path / "config.json").write_text(json.dumps(config))
    return total


def drop_caches() -> bool:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def dd_speed(args: list[str]) -> float:
    """Bytes per second that dd reports (its last line)."""
    proc = subprocess.run(["dd", *args], capture_output=True, text=True, check=True)
    line = proc.stderr.strip().splitlines()[-1]
    copied, seconds = int(line.split()[0]), float(re.search(r", ([\d.]+) s,", line).group(1))
    return copied / seconds


def disk_speed(workdir: Path, reads: list[Path]) -> tuple[float, float]:
    """(write, read) bytes/s: dd writes 8 GB with fdatasync; then reads an input shard cold."""
    scratch = workdir / "dd.bin"
    write = dd_speed(["if=/dev/zero", f"of={scratch}", "bs=16M", "count=512", "conv=fdatasync"])
    scratch.unlink()
    drop_caches()
    read = dd_speed([f"if={reads[0]}", "of=/dev/null", "bs=16M"])
    return write, read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mergesmith-7b"))
    parser.add_argument("--methods", default="linear,ties")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the generated models")
    parser.add_argument("--write-results", action="store_true", help="update bench/RESULTS.md")
    args = parser.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    paths = {name: work / name for name in ("base", "a", "b")}
    missing = sum(not (path / "config.json").exists() for path in paths.values())
    need = (missing + 1) * 14.6e9 + 1e9  # the models not yet written, one output, headroom
    free = shutil.disk_usage(work).free
    if free < need:
        sys.exit(f"{work}: {free / 1e9:.0f} GB free, {need / 1e9:.0f} GB needed (three 14.5 GB models "
                 "and one output); free some space or pass --workdir on a bigger disk")
    start = time.perf_counter()
    blocks = None
    for model, path in enumerate(paths.values()):
        if not (path / "config.json").exists():
            blocks = blocks or noise_blocks()
            write_model(path, model, blocks)
    del blocks
    gen = time.perf_counter() - start
    in_bytes = sum(f.stat().st_size for p in paths.values() for f in p.glob("*.safetensors"))
    write_bw, read_bw = disk_speed(work, sorted(paths["a"].glob("*.safetensors")))
    rows = []
    try:
        for method in args.methods.split(","):
            rows.append(run(method, paths, work, args.threads, in_bytes, write_bw, read_bw))
            print(rows[-1], flush=True)
    finally:
        if not args.keep:
            for path in paths.values():
                shutil.rmtree(path, ignore_errors=True)
    text = table(rows, gen, in_bytes, write_bw, read_bw, args.threads)
    print(text)
    if args.write_results:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from results import write_section

        write_section("speed7b", "7B-shaped merge from disk (bench/speed_7b.py)", text)


def run(method: str, paths: dict[str, Path], work: Path, threads: int, in_bytes: int, write_bw: float,
        read_bw: float) -> dict:
    recipe = work / f"{method}.yaml"
    if method == "linear":
        recipe.write_text(f"models:\n  - model: {paths['a']}\n    parameters: {{weight: 0.5}}\n"
                          f"  - model: {paths['b']}\n    parameters: {{weight: 0.3}}\n"
                          f"  - model: {paths['base']}\n    parameters: {{weight: 0.2}}\n"
                          "merge_method: linear\ndtype: bfloat16\n")
    else:
        recipe.write_text(f"models:\n  - model: {paths['a']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
                          f"  - model: {paths['b']}\n    parameters: {{weight: 0.5, density: 0.5}}\n"
                          f"merge_method: {method}\nbase_model: {paths['base']}\ndtype: bfloat16\n")
    out = work / f"out-{method}"
    shutil.rmtree(out, ignore_errors=True)
    load = os.getloadavg()[0]
    cold = drop_caches()
    t0 = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", sys.executable, "-m", "mergesmith", "merge", str(recipe),
                           str(out), "--quiet", "--threads", str(threads)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-3000:]}")
    rss = int(proc.stderr.strip().splitlines()[-1]) / 1024
    out_bytes = sum(f.stat().st_size for f in out.glob("*.safetensors"))
    shutil.rmtree(out)
    disk = in_bytes / read_bw + out_bytes / write_bw
    return {"method": method, "wall": wall, "rss": rss, "disk": disk, "load": load, "cold": cold,
            "in": in_bytes, "out": out_bytes}


def table(rows: list[dict], gen: float, in_bytes: int, write_bw: float, read_bw: float, threads: int) -> str:
    lines = [f"Three random Mistral-7B-shaped bf16 models (7.24B parameters, {in_bytes / 3e9:.1f} GB each, "
             f"5 GB shards; generated in {gen:.0f} s); {threads} threads; {os.cpu_count()} CPU cores; "
             f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM. "
             f"Disk measured with dd: {write_bw / 1e9:.2f} GB/s sequential write (16 MB blocks, "
             f"conv=fdatasync, 8.6 GB), {read_bw / 1e9:.2f} GB/s cold sequential read (one input shard, "
             "page cache dropped). Each merge starts with the page cache dropped; disk bound = inputs at "
             "dd's read speed + output at its write speed.", "",
             "| method | load avg | wall s | peak RSS MB | disk bound s | x disk bound | throughput GB/s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['load']:.1f} | {r['wall']:.1f} | {r['rss']:.0f} | {r['disk']:.1f} | "
                     f"{r['wall'] / r['disk']:.2f}x | {(r['in'] + r['out']) / r['wall'] / 1e9:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
