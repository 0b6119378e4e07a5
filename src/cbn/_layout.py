"""Any array plus a channel axis -> the canonical ``(outer, C, inner)`` description.

The kernels see arrays whose elements lie at ``data[(o * C + c) * inner + i]``:
NCHW is ``(N, C, H*W)``, NHWC is ``(N*H*W, C, 1)``, ``(N, C)`` is ``(N, C, 1)``.
That description follows the memory order of x, not its shape: any array that is
dense in some axis order is used as it is.  An NCHW-shaped array with
channels-last strides (what ``np.asarray`` of a PyTorch channels_last tensor
gives) is the same memory as NHWC and maps to ``(N*H*W, C, 1)``; a Fortran-ordered
array maps without a copy too.  Only arrays whose elements do not form one dense
block (slices with gaps, negative or zero strides), or whose elements are not
aligned to their size (views into a byte buffer at an odd offset), are copied.

A layout is ``perm``: x's axes from slowest to fastest in memory, or None for C
order (the common case, kept cheap).  Every other array of a call (out, dy, y) is
used in place when it is dense in the same order.
"""

import numpy as np

from cbn._dispatch import baseline as _k

_ALIGNED, _C_CONTIGUOUS = _k.FLAG_ALIGNED, _k.FLAG_C_CONTIGUOUS


def canonical(x, axis):
    """(x, perm, (outer, C, inner)): x itself when it is dense in some axis order,
    else a C-ordered copy."""
    dims = _k.c_dims(x, axis)  # the common case, tested in C
    if dims is not None:
        return x, None, dims
    shape = x.shape
    perm = tuple(sorted(range(x.ndim), key=lambda k: -x.strides[k]))
    if not (x.flags.aligned and x.transpose(perm).flags.c_contiguous):
        x = np.array(x, order="C")     # aligned, dense
        perm = None
    C = shape[axis]
    order = range(len(shape)) if perm is None else perm
    outer = inner = 1
    before = True
    for k in order:     # a plain loop: this runs on every call, and Cython compiles it
        if k == axis:
            before = False
        elif before:
            outer *= shape[k]
        else:
            inner *= shape[k]
    if C == 1:  # one channel: the whole array is one plane
        outer, inner = 1, outer * inner
    return x, perm, (outer, C, inner)


def matches(a, perm, flags=None):
    """Whether a is aligned and dense in x's axis order (then the kernels can use it as
    is).  flags: a's flag bits (cbn._kernels.flags) when the caller has them."""
    if flags is None:
        flags = _k.flags(a)
    if not flags & _ALIGNED:
        return False
    if perm is None:
        return flags & _C_CONTIGUOUS != 0
    return a.transpose(perm).flags.c_contiguous


def empty_like(x, perm):
    """A new array of x's shape and dtype, laid out like x."""
    if perm is None:
        return np.empty(x.shape, x.dtype)
    buf = np.empty([x.shape[k] for k in perm], x.dtype)
    return buf.transpose(np.argsort(perm))


def adopt(a, x, perm):
    """a itself when it is laid out like x (and has its dtype), else such a copy."""
    if a.dtype == x.dtype and matches(a, perm):
        return a
    b = empty_like(x, perm)
    np.copyto(b, a, casting="unsafe")
    return b
