"""Rarely taken paths, kept in plain Python: compiled (the kernels twice, once per
build; _api.py once), they cost the wheel several KB, and the packaging check holds it
under 1 MB.  The value check of the kernels' size settings (the setters of
cbn._kernels, for tests and measurements), and the float32 and float16 backward at
extreme scales."""

import operator
import sys

import numpy as np


def count(n):
    """n as a count: an int (or NumPy integer, not a bool) in [0, sys.maxsize], else
    TypeError / ValueError (the setter that passed n is the traceback's last frame
    above this one; each takes one value, n or nbytes)."""
    if not isinstance(n, bool):
        try:
            n = operator.index(n)
        except TypeError:
            pass
        else:
            if n < 0 or n > sys.maxsize:
                raise ValueError(f"a kernel size setting (n or nbytes) must be >= 0 and at "
                                 f"most 2**63 - 1, or None, got {n}")
            return n
    raise TypeError(f"a kernel size setting (n or nbytes) must be an int >= 0 or None, "
                    f"got {n!r}")


def backward_in_float64(dy, x, y, mean, invstd, weight, training, axis, out, n_threads):
    """cbn.batch_norm_backward of float32 or float16 data whose invstd has a finite,
    nonzero value beyond [2**-50, 2**50] (float32 x near 1e30 or 1e-30, or a float16
    call given such an invstd; the kernels decline it, writing nothing): computed on
    float64 copies and rounded once.  The float32 tables of those passes would not hold
    dx's coefficient of x - mean, of order invstd**2 (measured: float32 dx 10-30% off
    at 1e30, not finite at 1e-30; float16 dx NaN where x == mean, for inf, at 1e20).
    out was checked; dx may overflow float16 (inf, as the float64 result rounds)."""
    from cbn._api import batch_norm_backward
    f64 = [None if a is None else a.astype(np.float64) for a in (dy, x, y)]
    dx, dweight, dbias = batch_norm_backward(f64[0], f64[1], mean, invstd, weight,
                                             training=training, y=f64[2], axis=axis,
                                             n_threads=n_threads)
    with np.errstate(over="ignore"):
        if out is None:
            out = dx.astype(x.dtype)
        else:
            np.copyto(out, dx)
    return out, dweight.astype(np.float32), dbias.astype(np.float32)
