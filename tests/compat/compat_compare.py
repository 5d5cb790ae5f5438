"""How an output of mergesmith is held against mergekit's golden one.

float32: |ours - theirs| <= REL_FP32 * max |theirs|, tensor by tensor.

bfloat16/float16: mergesmith computes in float32 and rounds once; mergekit computes in the
recipe's dtype and rounds at each step. So an entry may differ by up to HALF_UNITS rounding
units (ulp in the output dtype) of the largest operand at that entry (the inputs' values
there, and both outputs). Beyond that, only for top-k selections: an entry where some model's
|delta| (in the dtype) equals mergekit's threshold for that model, i.e. a tie that mergekit's
unstable argsort broke one way and mergesmith's exact selection the other (both round the inputs
to the recipe's dtype first; mergekit then rounds the delta too, which makes the ties), or, for
TIES, where the sign election's sum is within rounding of zero.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file

GOLDEN = Path(__file__).resolve().parent / "golden"
REGENERATE = "/work/mkvenv/bin/python tests/compat/make_golden.py (with mergekit 0.1.5; see tests/compat/README.md)"
REL_FP32 = 1e-6
HALF_UNITS = 6  # measured: at most 5 (multislerp), 4 (nuslerp), 3 elsewhere
MANTISSA = {torch.bfloat16: 7, torch.float16: 10}
MIN_EXP = {torch.bfloat16: -126, torch.float16: -14}


def ulp(values: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The spacing of `dtype` numbers at |values| (float32 out; subnormal spacing at the bottom)."""
    magnitude = values.float().abs()
    _, exponent = torch.frexp(magnitude)
    exponent = torch.where(magnitude == 0, MIN_EXP[dtype], torch.clamp(exponent - 1, min=MIN_EXP[dtype]))
    return torch.ldexp(torch.ones_like(values, dtype=torch.float32), exponent - MANTISSA[dtype])


def fp32_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """max |ours - theirs| / max |theirs| (0 for two zero tensors)."""
    scale = float(theirs.abs().max())
    diff = float((ours.double() - theirs.double()).abs().max())
    return diff / scale if scale else diff


def half_units(ours: torch.Tensor, theirs: torch.Tensor, operands: list[torch.Tensor]) -> torch.Tensor:
    """|ours - theirs| in rounding units of the largest operand at each entry."""
    largest = torch.stack([ours.float().abs(), theirs.float().abs(), *(o.float().abs() for o in operands)]).amax(0)
    return (ours.float() - theirs.float()).abs() / ulp(largest, theirs.dtype)


def at_threshold(mags: torch.Tensor, record: dict) -> torch.Tensor:
    """Entries whose |delta| (as mergekit rounds it) equals one of mergekit's thresholds for the model."""
    near = torch.zeros(mags.shape, dtype=torch.bool)
    for key in ("low", "high"):
        if record[key] is not None:
            near |= mags == record[key]
    return near


def random_shares(summary: dict) -> tuple[int, int, float]:
    """(entries, entries changed from the base, root mean square of out - base) over a model."""
    n = sum(s["numel"] for s in summary.values())
    changed = sum(s["changed"] for s in summary.values())
    return n, changed, (sum(s["sumsq"] for s in summary.values()) / n) ** 0.5


def read_output(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint folder (all its safetensors files)."""
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def tensor_sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest()


def random_summary(out: dict[str, torch.Tensor], base: dict[str, torch.Tensor]) -> dict:
    """Per tensor: entries, entries changed from the base, sum and sum of squares of out - base."""
    summary = {}
    for name, tensor in out.items():
        delta = tensor.double() - base[name].double()
        summary[name] = {"numel": delta.numel(), "changed": int((delta != 0).sum()),
                         "sum": float(delta.sum()), "sumsq": float((delta * delta).sum())}
    return summary


CONVERSATIONS = [
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi there"},
     {"role": "assistant", "content": "hello"}, {"role": "user", "content": "bye"}],
    [{"role": "user", "content": "w1 w2"}],
]


def renderings(template: str | None) -> list[str] | None:
    """A chat template rendered as transformers does (trim_blocks, lstrip_blocks) on sample chats."""
    if template is None:
        return None
    import jinja2

    compiled = jinja2.Environment(trim_blocks=True, lstrip_blocks=True).from_string(template)
    return [compiled.render(messages=chat, add_generation_prompt=prompt, bos_token="<s>", eos_token="</s>")
            for chat in CONVERSATIONS for prompt in (False, True)]


HALF_DTYPES = (torch.bfloat16, torch.float16)


def input_pool(models: Path) -> dict[str, torch.Tensor]:
    """Every input tensor (and its bfloat16/float16 roundings) by sha256: golden outputs equal to
    one of them (copies, passthrough slices) are stored as that hash only."""
    pool: dict[str, torch.Tensor] = {}
    for path in sorted(models.rglob("model.safetensors")):
        for tensor in read_output(path.parent).values():
            for t in (tensor, *(tensor.to(d) for d in HALF_DTYPES if tensor.dtype == torch.float32)):
                pool.setdefault(tensor_sha(t), t)
    return pool


def golden_outputs(record: dict, pool: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A case's golden tensors by name, from the outputs file and the input pool (both by sha256)."""
    return {name: pool[sha] for name, sha in record["tensors"].items()}
