"""Which row each model contributes for each output token: the missing-token rules.

For one vocabulary tensor and its input models, every output row is, per model:

- a token the model has: its own row (unless the recipe forces a source for that token);
- a token it lacks (or a forced one): a row shared by every model that lacks it, from, in
  order, the source configured under `tokenizer: tokens:`, the one input model that has it,
  the base's row, the mean over the input models that have it, or zero (with a warning);
- a row beyond the output tokenizer (padding, e.g. Qwen's 151936 rows for 151665 tokens): the
  model's own row at that index when it is padding there too, so padded models merge exactly
  as without a tokenizer setting; otherwise the mean of its token rows (as mergekit pads).

Everything is decided at plan time into index tensors, so aligning a 150k x 8k embedding
is a few gathers, not a Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mergesmith.lazy_torch import torch


@dataclass(frozen=True)
class Override:
    """A `tokenizer: tokens:` entry, resolved: where the row of `token` comes from."""

    kind: str  # "rules" (no source given), "zero", or "row"
    model: str | None = None
    row: int | None = None  # the row in `model` ("row" kind)
    force: bool = False


@dataclass
class AlignSpec:
    """Index tensors that build each model's aligned rows for one set of inputs."""

    rows: int
    take: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # model -> (out ids, own rows)
    prefix: dict[str, int] = field(default_factory=dict)  # model -> leading rows taken in place
    fill: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # model -> (out ids, slots)
    pad_mean: dict[str, Any] = field(default_factory=dict)  # model -> out ids given its mean row
    token_ids: Any = None  # out ids that hold a token
    parts: dict[str, tuple[Any, Any, Any]] = field(default_factory=dict)  # model -> (slot, row, weight)
    slots: int = 0
    identity: set[str] = field(default_factory=set)  # models whose tensor is already aligned
    zero_tokens: list[str] = field(default_factory=list)


@dataclass
class _Builder:
    out_tokens: dict[str, int]
    rows: int
    model_rows: dict[str, int]  # input model -> rows of its tensor
    present: dict[str, dict[str, int]]  # model -> token -> row, for rows that exist
    overrides: dict[str, Override]
    base: str | None
    take: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    fill: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    parts: list[tuple[int, str, int, float]] = field(default_factory=list)
    zero_tokens: list[str] = field(default_factory=list)
    slots: int = 0

    @property
    def models(self) -> list[str]:
        return list(self.model_rows)

    def run(self) -> AlignSpec:
        for m in self.models:
            self.take[m], self.fill[m] = [], []
        for token, oid in self.out_tokens.items():
            self._token(token, oid)
        pad = self._padding()
        return self._spec(pad)

    def _token(self, token: str, oid: int) -> None:
        override = self.overrides.get(token)
        forced = override is not None and override.force
        havers = [m for m in self.models if token in self.present[m]]
        lacking = list(self.models) if forced else [m for m in self.models if m not in havers]
        for m in havers:
            if not forced:
                self.take[m].append((oid, self.present[m][token]))
        if not lacking:
            return
        slot = self.slots
        self.slots += 1
        for m in lacking:
            self.fill[m].append((oid, slot))
        parts = self._sources(token, override, havers)
        if parts is None:
            self.zero_tokens.append(token)
            return
        self.parts.extend((slot, model, row, weight) for model, row, weight in parts)

    def _sources(self, token: str, override: Override | None,
                 havers: list[str]) -> list[tuple[str, int, float]] | None:
        """The rows (and weights) that make a missing token's row; None: zero, unasked."""
        if override is not None and override.kind == "zero":
            return []
        if override is not None and override.kind == "row":
            assert override.model is not None and override.row is not None
            return [(override.model, override.row, 1.0)]
        if len(havers) == 1:
            return [(havers[0], self.present[havers[0]][token], 1.0)]
        if self.base in havers:
            return [(self.base, self.present[self.base][token], 1.0)]  # type: ignore[index]
        if havers:
            return [(m, self.present[m][token], 1.0 / len(havers)) for m in havers]
        return None

    def _padding(self) -> dict[str, list[int]]:
        """Rows past the tokenizer: each model's own padding row where it has one."""
        holders = set(self.out_tokens.values())
        pad: dict[str, list[int]] = {m: [] for m in self.models}
        free = [i for i in range(self.rows) if i not in holders]
        for m in self.models:
            own = set(self.present[m].values())
            for i in free:
                if i < self.model_rows[m] and i not in own:
                    self.take[m].append((i, i))
                else:
                    pad[m].append(i)
        return pad

    def _spec(self, pad: dict[str, list[int]]) -> AlignSpec:
        spec = AlignSpec(self.rows, slots=self.slots, zero_tokens=self.zero_tokens)
        long = torch.long
        for m in self.models:
            take = sorted(self.take[m])
            prefix = 0  # models that share the base's ids copy those rows as one block
            while prefix < len(take) and take[prefix] == (prefix, prefix):
                prefix += 1
            spec.prefix[m] = prefix
            spec.take[m] = (torch.tensor([o for o, _ in take[prefix:]], dtype=long),
                            torch.tensor([s for _, s in take[prefix:]], dtype=long))
            spec.fill[m] = (torch.tensor([o for o, _ in self.fill[m]], dtype=long),
                            torch.tensor([s for _, s in self.fill[m]], dtype=long))
            spec.pad_mean[m] = torch.tensor(pad[m], dtype=long)
            if prefix == self.rows == self.model_rows[m]:
                spec.identity.add(m)
        spec.token_ids = torch.tensor(sorted(set(self.out_tokens.values())), dtype=long)
        for model in dict.fromkeys(p[1] for p in self.parts):
            mine = [p for p in self.parts if p[1] == model]
            spec.parts[model] = (torch.tensor([p[0] for p in mine], dtype=long),
                                 torch.tensor([p[2] for p in mine], dtype=long),
                                 torch.tensor([p[3] for p in mine], dtype=torch.float64))
        return spec


def build_spec(out_tokens: dict[str, int], rows: int, model_rows: dict[str, int],
               present: dict[str, dict[str, int]], overrides: dict[str, Override],
               base: str | None) -> AlignSpec:
    """The alignment of one vocabulary tensor whose inputs have `model_rows` rows."""
    return _Builder(out_tokens, rows, model_rows, present, overrides, base).run()


def apply_spec(spec: AlignSpec, tensors: dict[str, Any], extra: Any) -> dict[str, Any]:
    """Every model's tensor with the output's rows; `extra(model)` reads the tensor of a model
    that is a configured source but not an input of this tensor."""
    first = next(iter(tensors.values()))
    rest = tuple(first.shape[1:])
    wide = any(t.dtype == torch.float64 for t in tensors.values())
    compute = torch.float64 if wide else torch.float32
    filled = torch.zeros((spec.slots, *rest), dtype=compute)
    for model, (slot, row, weight) in spec.parts.items():
        source = tensors[model] if model in tensors else extra(model)
        scaled = source[row].to(compute) * weight.to(compute).view(-1, *([1] * len(rest)))
        filled.index_add_(0, slot, scaled)
    return {model: tensor if model in spec.identity else _aligned(spec, model, tensor, filled, compute)
            for model, tensor in tensors.items()}


def _aligned(spec: AlignSpec, model: str, tensor: Any, filled: Any, compute: Any) -> Any:
    # Every row is written below (kept, filled or padded), except padding of a non-float tensor.
    pad = spec.pad_mean[model]
    floating = tensor.is_floating_point()
    make = tensor.new_empty if floating or not pad.numel() else tensor.new_zeros
    aligned = make((spec.rows, *tensor.shape[1:]))
    prefix = spec.prefix[model]
    aligned[:prefix] = tensor[:prefix]
    ids, own = spec.take[model]
    if ids.numel():
        aligned.index_copy_(0, ids, tensor.index_select(0, own))
    ids, slots = spec.fill[model]
    if ids.numel():
        aligned.index_copy_(0, ids, filled.index_select(0, slots).to(tensor.dtype))
    if pad.numel() and floating:
        tokens = spec.token_ids
        count = tokens.numel()  # the usual case, tokens at 0..n-1, needs no gathered copy
        rows = aligned[:count] if count and int(tokens[-1]) == count - 1 else aligned.index_select(0, tokens)
        aligned[pad] = torch.mean(rows, dim=0, dtype=compute).to(tensor.dtype)
    return aligned
