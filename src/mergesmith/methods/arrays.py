"""The array operations of methods that run on numpy arrays as well as on torch tensors.

Importing torch takes 2-3 s on a small machine, more than a whole merge of a small model, and
the elementwise methods most recipes use (linear, task arithmetic, passthrough) need nothing
of it. A method flagged ``numpy=True`` on its MethodSpec computes only through the functions
here (and the ``*`` operator by a Python number, which both array types round the same way), so
the CPU executor can hand it float32 numpy arrays and never import torch. Each function takes
torch tensors or numpy arrays and gives the **same bits** for both: the numpy versions
reproduce torch's float32 arithmetic, including its fused multiply-add (``x.add_(y,
alpha=w)`` rounds once; see :func:`_sum_to_float32`).

    zeros_like(x)                    a new array of zeros
    copy(x)                          a new array with x's values
    sub(a, b)                        a - b, new
    weighted_sum(xs, weights, out)   sum_i w_i x_i, accumulated from zero, each step rounded once
    add_scaled(a, b, alpha)          a + alpha * b, rounded once, new
    div_(out, value)                 out <- out / value, in place
"""

from __future__ import annotations

import threading
from typing import Any

_local = threading.local()
_SCRATCH_MAX = 16 << 20  # bytes; bigger requests get a fresh array

# float64 bits: below float32's 24-bit significand lie 29 more bits. A float64 sum whose low
# 29 bits are exactly 1000...0 lies halfway between two float32 values, the one case where
# rounding it again to float32 can differ from rounding the exact sum once.
_LOW_BITS = (1 << 29) - 1
_HALFWAY = 1 << 28
# Below 2**-126 float32 is subnormal and its halfway points follow another pattern.
_TINY_DOUBLED = (((1023 - 126) << 52) << 1) - 2


def _is_numpy(x: Any) -> bool:
    return type(x).__module__ == "numpy"


def scratch(slot: int, shape: tuple[int, ...], dtype: Any) -> Any:
    """A reusable buffer of this thread (contents undefined): fresh arrays of a few hundred KB
    cost a page fault per 4 KB each time, several times the arithmetic on them."""
    import numpy as np

    size = 1
    for d in shape:
        size *= d
    if size * np.dtype(dtype).itemsize > _SCRATCH_MAX:
        return np.empty(shape, dtype)
    buffers = _local.__dict__.setdefault("buffers", {})
    buffer = buffers.get((slot, dtype))
    if buffer is None or buffer.size < size:
        buffer = buffers[(slot, dtype)] = np.empty(size, dtype)
    return buffer[:size].reshape(shape)


def zeros_like(x: Any) -> Any:
    if _is_numpy(x):
        import numpy as np

        return np.zeros_like(x)
    from mergesmith.lazy_torch import torch

    return torch.zeros_like(x)


def copy(x: Any) -> Any:
    return x.copy() if _is_numpy(x) else x.clone()


def sub(a: Any, b: Any) -> Any:
    return a - b


def div_(out: Any, value: float) -> Any:
    if _is_numpy(out):
        import numpy as np

        np.divide(out, np.float32(value) if out.dtype == np.float32 else value, out=out)
        return out
    return out.div_(value)


def weighted_sum(tensors: list[Any], weights: list[float], out: Any = None) -> Any:
    """sum_i w_i x_i as torch's ``out.zero_(); out.add_(x_i, alpha=w_i)`` gives it (each step one
    rounding), into `out` when given (overwritten), else a new array."""
    if not _is_numpy(tensors[0]):
        out = zeros_like(tensors[0]) if out is None else out.zero_()
        for tensor, w in zip(tensors, weights, strict=True):
            out.add_(tensor, alpha=w)
        return out
    import numpy as np

    out = np.empty_like(tensors[0]) if out is None else out
    for i, (tensor, w) in enumerate(zip(tensors, weights, strict=True)):
        if i == 0 and out.dtype == np.float32:
            # 0 + w x: the exact product, rounded once; + 0.0 turns -0 to +0 as the addition would
            product = scratch(0, out.shape, np.float64)
            np.copyto(product, tensor)
            product *= float(np.float32(w))
            product += 0.0
            np.copyto(out, product, casting="same_kind")
        else:
            _fused(out if i else np.zeros_like(out), tensor, w, out)
    return out


def add_scaled(a: Any, b: Any, alpha: float) -> Any:
    """a + alpha * b with one rounding, as a new array (torch's ``torch.add(a, b, alpha=alpha)``)."""
    if _is_numpy(a):
        import numpy as np

        return _fused(a, b, alpha, np.empty_like(a))
    from mergesmith.lazy_torch import torch

    return torch.add(a, b, alpha=alpha)


def _fused(a: Any, x: Any, alpha: float, out: Any) -> Any:
    """out <- a + alpha * x on numpy arrays, rounded once as torch's CPU kernels do."""
    import numpy as np

    if alpha == 1.0:  # the product is x itself: one rounding either way
        return np.add(a, x, out=out)
    if a.dtype != np.float32:  # float64 has no wider type to round through: two roundings, as numpy does
        np.add(a, np.multiply(x, alpha), out=out)
        return out
    w = float(np.float32(alpha))  # torch rounds the scalar to the tensor's dtype first
    product = scratch(0, a.shape, np.float64)
    np.copyto(product, x)
    product *= w  # exact: two 24-bit significands need 48 bits
    addend = scratch(1, a.shape, np.float64)
    np.copyto(addend, a)
    total = np.add(addend, product, out=scratch(2, a.shape, np.float64))
    _sum_to_float32(total, addend, product, out)
    return out


def _sum_to_float32(total: Any, t0: Any, t1: Any, out: Any) -> None:
    """out <- the float32 nearest the exact t0 + t1, given total = t0 + t1 rounded to float64.

    Rounding total to float32 is exact rounding except where total is a float32 halfway point
    that the float64 sum reached by rounding (then the exact sum lies on one side of it), or
    where the result is float32-subnormal. Both are rare; those entries are redone with the
    float64 rounding error (Knuth's TwoSum), which tells on which side the exact sum lies.
    """
    import numpy as np

    bits = total.view(np.uint64)
    work = scratch(3, total.shape, np.uint64)
    suspect = np.equal(np.bitwise_and(bits, _LOW_BITS, out=work), _HALFWAY, out=scratch(4, total.shape, np.bool_))
    # 0 < |total| < 2**-126, on the bits: doubled, they lose the sign; 0 wraps to the top
    np.left_shift(bits, 1, out=work)
    work -= 2
    np.logical_or(suspect, np.less(work, _TINY_DOUBLED, out=scratch(5, total.shape, np.bool_)), out=suspect)
    np.copyto(out, total, casting="same_kind")
    if not suspect.any():
        return
    where = np.flatnonzero(suspect)
    s, a, b = total[where], t0[where], t1[where]
    b_part = s - a
    error = (a - (s - b_part)) + (b - b_part)  # exact: s + error == a + b (Knuth's TwoSum)
    inexact = np.flatnonzero(error)
    if inexact.size == 0:  # the usual case: bfloat16 inputs make many exact sums look suspect
        return
    where, s, error = where[inexact], s[inexact], error[inexact]
    near = s.astype(np.float32)  # ties to even
    other = np.nextafter(near, np.where(s > near, np.float32(np.inf), np.float32(-np.inf)))
    near_value = np.where(np.isinf(near), np.copysign(2.0**128, s), near)  # float32's overflow point
    halfway = (s != near_value) & (s - near_value == other.astype(np.float64) - s)
    # On a halfway point the exact sum lies on the side of its error: take that neighbour.
    take_other = halfway & ((error > 0) == (other > near))
    out[where] = np.where(take_other, other, near)
