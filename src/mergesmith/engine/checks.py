"""What a merged tensor with NaN or infinity is blamed on (no such tensor is ever written).

Both compute paths check every float output in its output dtype and, when it is not finite,
call :func:`explain_non_finite` with their own way of checking an input.
"""

from __future__ import annotations

from collections.abc import Callable

from mergesmith.errors import CheckpointError, MethodError
from mergesmith.io.checkpoint import Checkpoint
from mergesmith.io.safetensors_format import TORCH_NAMES
from mergesmith.plan.ops import TensorOp, TensorRef


def explain_non_finite(op: TensorOp, checkpoints: dict[str, Checkpoint],
                       input_finite: Callable[[TensorRef], bool]) -> None:
    """Blame the input that holds NaN/inf, else the output dtype's range, else the method."""
    for ref in op.refs():
        if not input_finite(ref):
            ckpt = checkpoints[ref.model]
            file = ckpt.tensors[ref.name].file
            where = file if file.name else ckpt.where
            raise CheckpointError(f"model {ref.model!r}: tensor {ref.name!r} holds NaN or infinite values "
                                  f"(in {where})",
                                  hint="the model's weights are damaged: fetch it again, or leave it out")
    if op.out_dtype in ("F16", "BF16", "F8_E4M3", "F8_E5M2"):
        raise MethodError(f"tensor {op.name!r}: the merged values exceed the range of "
                          f"{TORCH_NAMES[op.out_dtype]} and would be written as infinity",
                          hint="set `out_dtype: float32` (or bfloat16, whose range is float32's) in the recipe")
    raise MethodError(f"{op.method.name} produced NaN or infinite values in tensor {op.name!r}",
                      hint="check the weights and parameters for this tensor")
