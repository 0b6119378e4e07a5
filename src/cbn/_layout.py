"""Any array plus a channel axis -> the canonical ``(outer, C, inner)`` description.

The kernels see arrays whose elements lie at ``data[(o * C + c) * inner + i]``:
NCHW is ``(N, C, H*W)``, NHWC is ``(N*H*W, C, 1)``, ``(N, C)`` is ``(N, C, 1)``.
That description follows the memory order of x, not its shape: any array that is
dense in some axis order is used as it is.  An NCHW-shaped array with
channels-last strides (what ``np.asarray`` of a PyTorch channels_last tensor
gives) is the same memory as NHWC and maps to ``(N*H*W, C, 1)``; a Fortran-ordered
array maps without a copy too.  Only arrays whose elements do not form one dense
block (slices with gaps, negative or zero strides) are copied.
"""

import math

import numpy as np


class Layout:
    """How x is laid out: ``perm`` lists its axes from slowest to fastest in memory
    (None: C order), and ``shape3 = (outer, C, inner)``.  Every other array of the
    call (out, dy, y) is used in place when it is dense in the same order."""

    __slots__ = ("perm", "shape", "shape3")

    def __init__(self, perm, shape, axis):
        self.perm = perm
        self.shape = shape
        order = perm if perm is not None else range(len(shape))
        tshape = [shape[k] for k in order]
        p = list(order).index(axis)
        C = shape[axis]
        outer = math.prod(tshape[:p])
        inner = math.prod(tshape[p + 1:])
        if C == 1:  # one channel: the whole array is one plane
            outer, inner = 1, outer * inner
        self.shape3 = (outer, C, inner)

    def matches(self, a):
        """Whether a is dense in this axis order (then the kernels can use it as is)."""
        if self.perm is None:
            return a.flags.c_contiguous
        return a.transpose(self.perm).flags.c_contiguous

    def empty(self, dtype):
        """A new array of x's shape, laid out like x."""
        if self.perm is None:
            return np.empty(self.shape, dtype)
        buf = np.empty([self.shape[k] for k in self.perm], dtype)
        return buf.transpose(np.argsort(self.perm))

    def adopt(self, a, dtype):
        """a itself when it is dense in this order with this dtype, else a copy that is."""
        if a.dtype == dtype and self.matches(a):
            return a
        b = self.empty(dtype)
        np.copyto(b, a, casting="unsafe")
        return b


def _dense_order(a):
    """Axes of a from largest to smallest stride if a is dense in that order, else False."""
    perm = tuple(sorted(range(a.ndim), key=lambda k: -a.strides[k]))
    return perm if a.transpose(perm).flags.c_contiguous else False


def canonical(x, axis):
    """(x, layout): x itself when it is dense in some axis order, else a C-ordered copy."""
    if x.flags.c_contiguous:
        return x, Layout(None, x.shape, axis)
    perm = _dense_order(x)
    if perm is False:
        x = np.ascontiguousarray(x)
        perm = None
    return x, Layout(perm, x.shape, axis)
