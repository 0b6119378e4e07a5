"""Any array plus a channel axis -> the canonical C-contiguous ``(outer, C, inner)`` view.

The kernels see only 3-D C-contiguous arrays: NCHW is ``(N, C, H*W)``, NHWC is
``(N*H*W, C, 1)``, ``(N, C)`` is ``(N, C, 1)``.  The view follows the memory
order of x, not its shape: an NCHW-shaped array with channels-last strides (what
``np.asarray`` of a PyTorch channels_last tensor gives) is the same memory as
NHWC and maps to ``(N*H*W, C, 1)``; a Fortran-ordered array maps without a copy
too.  Only arrays whose elements do not form one dense block in some axis order
(slices with gaps, negative or zero strides) are copied.
"""

import math

import numpy as np


class Layout:
    """The axis order in which x is dense, and the canonical 3-D shape.

    ``perm`` lists x's axes from slowest to fastest in memory (None: C order);
    every array of the call (out, dy, y) is used in place when it is dense in the
    same order.
    """

    __slots__ = ("perm", "shape", "shape3", "_tshape")

    def __init__(self, perm, shape, axis):
        self.perm = perm
        self.shape = shape
        order = perm if perm is not None else tuple(range(len(shape)))
        self._tshape = tuple(shape[k] for k in order)
        p = order.index(axis)
        C = shape[axis]
        outer = math.prod(self._tshape[:p])
        inner = math.prod(self._tshape[p + 1:])
        if C == 1:  # one channel: the whole array is one plane
            outer, inner = 1, outer * inner
        self.shape3 = (outer, C, inner)

    def view(self, a):
        """a as the canonical 3-D view, or None when a is not dense in this order."""
        if self.perm is None:
            return a.reshape(self.shape3) if a.flags.c_contiguous else None
        t = a.transpose(self.perm)
        return t.reshape(self.shape3) if t.flags.c_contiguous else None

    def empty(self, dtype):
        """A new array of x's shape laid out like x: (array, its canonical view)."""
        buf = np.empty(self._tshape, dtype)
        a = buf if self.perm is None else buf.transpose(np.argsort(self.perm))
        return a, buf.reshape(self.shape3)

    def copy_in(self, a, dtype):
        """The canonical view of a, copied (and cast to dtype) only where needed."""
        v = self.view(a)
        if v is not None and v.dtype == dtype:
            return v
        full, v3 = self.empty(dtype)
        np.copyto(full, a, casting="unsafe")
        return v3

    def copy_out(self, src3, out):
        """Write a canonical buffer into out (any strides), casting to out.dtype."""
        t = out if self.perm is None else out.transpose(self.perm)
        np.copyto(t, src3.reshape(self._tshape), casting="unsafe")


def _dense_order(a):
    """Axes of a from largest to smallest stride if a is dense in that order, else None."""
    if a.flags.c_contiguous:
        return None  # identity (fast path)
    perm = tuple(sorted(range(a.ndim), key=lambda k: -a.strides[k]))
    return perm if a.transpose(perm).flags.c_contiguous else False


def canonical(x, axis):
    """(x3, layout): the canonical view of x (a copy only for irregular strides)."""
    perm = _dense_order(x)
    if perm is False:
        x = np.ascontiguousarray(x)
        perm = None
    lay = Layout(perm, x.shape, axis)
    return lay.view(x), lay
