"""The merge-method contract.

A method is a pure function ``fn(tensors, base, params, rng) -> tensor``:

- ``tensors``: the inputs the method combines, float32 (float64 if the inputs are), on the
  target device, all of one shape. For methods that use a base model (``base="required"``
  or ``"optional"``) these are the *non-base* models in recipe order and ``base`` is the
  base tensor; for methods that ignore the base, ``tensors`` holds every input (the base
  among them when the recipe lists it) and ``base`` is ``None``.
- ``params``: an instance of the method's parameter model (one pydantic model per method,
  ``extra="forbid"``, ``frozen=True``). Per-model fields (declared with :func:`per_model`)
  are lists aligned with ``tensors``.
- ``rng``: a ``torch.Generator`` seeded from (recipe seed, tensor name) for methods with
  ``randomized=True``; ``None`` otherwise.

No I/O, no device moves, no dtype policy, no logging: the executor upcasts, places, calls,
and casts back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

BasePolicy = Literal["required", "optional", "ignored"]

_REQUIRED = object()

# Common value types, with their ranges, for parameter models.
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class MethodParams(BaseModel):
    """Base class of every method's parameter model."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def per_model(*, description: str, default: Any = _REQUIRED, alias: str | None = None) -> Any:
    """Declare a per-model parameter (one value per input model, e.g. ``weight``).

    The field's annotation is ``list[T]`` (with the item's range in ``T``); ``default`` is the
    value each model gets when the recipe sets none, or required when omitted.
    """
    extra: dict[str, Any] = {"per_model": True}
    if default is not _REQUIRED:
        extra["default_each"] = default
    return Field(description=description, json_schema_extra=extra, alias=alias)


@dataclass(frozen=True)
class ParamInfo:
    """What the planner needs to know of one parameter."""

    name: str  # the name recipes use (the alias, e.g. "lambda")
    field_name: str  # the attribute on the params model (e.g. "lambda_")
    per_model: bool
    required: bool
    default: Any
    description: str


@dataclass(frozen=True)
class MethodSpec:
    """A registered merge method: its function, parameters and input contract."""

    name: str
    func: Callable[..., Any]
    params: type[MethodParams]
    summary: str
    paper: str = ""
    base: BasePolicy = "ignored"
    min_models: int = 1  # inputs in `tensors` (non-base ones when the base is separate)
    max_models: int | None = None
    randomized: bool = False
    # Tensors present in only some inputs (e.g. a head only one model has) are copied
    # through from the single model that has them instead of being an error.
    passthrough_singletons: bool = False
    # The result at each position depends only on the inputs at that position (linear, task
    # arithmetic): the executor may then run the method on chunks of the flattened tensors,
    # which keeps every pass in the CPU cache and never holds float32 copies of whole inputs.
    elementwise: bool = False
    # The function computes only through methods/arrays.py (and `*` by a Python number), so it
    # runs on float32 numpy arrays as well as on torch tensors, with the same bits: the CPU
    # executor then runs it without importing torch.
    numpy: bool = False
    aliases: tuple[str, ...] = ()
    # `returns_input(params)` is true when the method returns its one input unchanged for these
    # parameters (passthrough without scale): the executor then copies the tensor as it is.
    returns_input: Callable[[Any], bool] | None = None
    # Data-aware methods (fisher, regmean) read a statistic of each model computed from its
    # calibration data: "fisher" (diagonal Fisher) or "gram" (input Gram matrices of linear
    # layers). Their params have per-model `calibration` and `stats` (a statistics file) and
    # `tensor_names`, which the planner fills with the input tensor names so the method can
    # look each statistic up; the api computes the files before the merge (mergesmith.datamerge).
    statistics: str | None = None
    # Parameters read only when a flag is set: (parameter, flag) pairs, e.g. karcher's
    # ("weight", "weighted"). mergekit's same method ignores the parameter, so a mergekit
    # recipe that gives it means the method without it; the flag is the explicit opt-in.
    opt_in: tuple[tuple[str, str], ...] = ()
    param_infos: tuple[ParamInfo, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_infos", tuple(_param_infos(self.params)))

    def param(self, name: str) -> ParamInfo | None:
        for info in self.param_infos:
            if info.name == name:
                return info
        return None

    @property
    def uses_base(self) -> bool:
        return self.base != "ignored"


def _param_infos(model: type[MethodParams]) -> list[ParamInfo]:
    infos = []
    for field_name, finfo in model.model_fields.items():
        extra = finfo.json_schema_extra if isinstance(finfo.json_schema_extra, dict) else {}
        is_per_model = bool(extra.get("per_model"))
        if is_per_model:
            required = "default_each" not in extra
            default = extra.get("default_each")
        else:
            required = finfo.is_required()
            default = None if required else finfo.get_default(call_default_factory=True)
        infos.append(
            ParamInfo(
                name=finfo.alias or field_name,
                field_name=field_name,
                per_model=is_per_model,
                required=required,
                default=default,
                description=finfo.description or "",
            )
        )
    return infos
