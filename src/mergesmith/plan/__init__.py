"""Recipe + checkpoint headers -> Plan: every output tensor resolved before any tensor is read.

    ops.py            the plan's data: TensorRef, TensorOp (one output tensor), Plan
    build.py          build_plan: recipe + opened checkpoints -> Plan, with every header check
    slices.py         a recipe's (or module's) `models:` or `slices:` -> a uniform list of slices
    modules.py        modules of vision-language models (`modules:`): which tensors, which layers
    tensor_params.py  the method's parameters resolved for one output tensor
    steps.py          multi-step recipes: dependency order, planning the whole chain up front
"""

from mergesmith.plan.build import build_plan, open_inputs
from mergesmith.plan.ops import Plan, TensorOp, TensorRef

__all__ = ["Plan", "TensorOp", "TensorRef", "build_plan", "open_inputs"]
