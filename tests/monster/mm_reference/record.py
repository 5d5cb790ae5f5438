"""Regenerate recorded.json: what MergeMonster's own code does on the tiny models of
tests/monster/mm_models.py, for every case of cases.py. test_mm_reference.py checks
mergesmith against it.

    python tests/monster/mm_reference/record.py MERGEMONSTER [--scratch DIR] [--case NAME ...]

MERGEMONSTER is a checkout of https://github.com/Gryphe/MergeMonster or a bare git directory
of it. Its code is copied into the scratch directory (default: a new temporary one, outside
the repository) and run there, one subprocess per case (shim.py: "cuda" is the CPU, float32
is kept). Nothing of MergeMonster is written into the repository, only the values: for each
monster case every phrase-probability call (the blend tried before it and the signed
weighted probability of every pair), the printed decisions and a digest of every tensor of
the saved model; for each mapper case the traces of every context.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from cases import MAPPER_CASES, MONSTER_CASES, decisions, digest, mapper_config, monster_config  # noqa: E402
from mm_models import make_models  # noqa: E402


def export_code(source: Path, scratch: Path) -> tuple[Path, str]:
    """MergeMonster's files in scratch/mergemonster, and the commit they came from."""
    target = scratch / "mergemonster"
    target.mkdir(parents=True, exist_ok=True)
    git_dir = source if (source / "HEAD").is_file() and (source / "objects").is_dir() else source / ".git"
    commit = subprocess.run(["git", f"--git-dir={git_dir}", "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    archive = subprocess.run(["git", f"--git-dir={git_dir}", "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target, commit


def run_case(code: Path, kind: str, config: dict, scratch: Path, name: str) -> tuple[dict, str]:
    import yaml

    config_path = scratch / f"{kind}-{name}.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    trace_path = scratch / f"{kind}-{name}.trace.json"
    proc = subprocess.run([sys.executable, str(HERE / "shim.py"), str(code), kind, str(config_path),
                           str(trace_path)], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"MergeMonster failed on {kind} case {name!r}:\n{proc.stderr[-3000:]}")
    return json.loads(trace_path.read_text()), proc.stdout


def record_monster(code: Path, paths: dict[str, str], scratch: Path, name: str) -> dict:
    from safetensors.torch import load_file

    out = scratch / f"out-{name}"
    config = monster_config(name, {**paths, "OUTPUT": str(out)})
    trace, stdout = run_case(code, "monster", config, scratch, name)
    tensors = load_file(out / "model.safetensors")
    return {"events": trace["events"], "decisions": decisions(stdout),
            "tensors": {k: digest(v) for k, v in sorted(tensors.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mergemonster", type=Path, help="MergeMonster checkout or bare git directory")
    parser.add_argument("--scratch", type=Path, help="work directory (default: a new temporary one)")
    parser.add_argument("--case", action="append", help="only these cases (default: all)")
    args = parser.parse_args()
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="mm-reference-"))
    code, commit = export_code(args.mergemonster, scratch)
    models = make_models(scratch / "models")
    paths = {"MODEL_PATH1": str(models["base"]), "MODEL_DIRECTORY": str(scratch / "models" / "models")}
    target = HERE / "recorded.json"
    recorded = json.loads(target.read_text()) if target.is_file() else {"monster": {}, "mapper": {}}
    import torch
    import transformers

    recorded["source"] = {"mergemonster": commit, "torch": torch.__version__,
                          "transformers": transformers.__version__}
    for name in MONSTER_CASES:
        if not args.case or name in args.case:
            print(f"monster {name}", flush=True)
            recorded["monster"][name] = record_monster(code, paths, scratch, name)
    for name in MAPPER_CASES:
        if not args.case or name in args.case:
            print(f"mapper {name}", flush=True)
            trace, _ = run_case(code, "mapper", mapper_config(name, paths), scratch, name)
            recorded["mapper"][name] = trace["mapper"]
    target.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote {target} (scratch: {scratch})")


if __name__ == "__main__":
    main()
