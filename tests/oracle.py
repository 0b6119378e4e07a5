"""Slow float64 NumPy twins of cbn's functions: the test oracle.

Written from the definitions (two-pass statistics in float64, textbook
backward formulas), sharing no code with cbn.  Every function takes array_like
data of any float dtype and returns float64.
"""

import numpy as np


def _rows(x, axis):
    """x as float64 of shape (n, C): the values of each channel in a column."""
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
    return x.reshape(-1, x.shape[-1])


def _unrows(r, shape, axis):
    moved = list(shape)
    moved.append(moved.pop(axis))
    return np.moveaxis(r.reshape(moved), -1, axis)


def _per_channel(a, C, default):
    return np.full(C, default) if a is None else np.asarray(a, dtype=np.float64)


def invstd(var, eps):
    t = np.asarray(var, dtype=np.float64) + eps
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(t == 0, 0.0, 1.0 / np.sqrt(t))


def batch_stats(x, axis=1):
    r = _rows(x, axis)
    m0 = r.mean(axis=0)
    mean = m0 + (r - m0).mean(axis=0)   # corrected: exact to float64 rounding of the mean
    return mean, ((r - mean) ** 2).mean(axis=0)


def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None,
               training=False, momentum=0.1, eps=1e-5, axis=1, relu=False):
    """(y, mean, invstd, new_running_mean, new_running_var), all float64."""
    x = np.asarray(x)
    r = _rows(x, axis)
    n, C = r.shape
    w = _per_channel(weight, C, 1.0)
    b = _per_channel(bias, C, 0.0)
    new_rm = new_rv = None
    if training:
        mean, var = batch_stats(x, axis)
        if running_mean is not None:
            new_rm = (1 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean
            new_rv = ((1 - momentum) * np.asarray(running_var, np.float64)
                      + momentum * var * n / (n - 1))
    else:
        mean = np.asarray(running_mean, np.float64)
        var = np.asarray(running_var, np.float64)
    inv = invstd(var, eps)
    y = (r - mean) * inv * w + b
    if relu:
        y = np.where(y < 0, 0.0, y)
    return _unrows(y, x.shape, axis), mean, inv, new_rm, new_rv


def batch_norm_backward(dy, x, mean, invstd, weight=None, training=True, y=None, axis=1):
    """(dx, dweight, dbias), all float64."""
    x = np.asarray(x)
    r = _rows(x, axis)
    g = _rows(dy, axis)
    if y is not None:
        g = np.where(_rows(y, axis) <= 0, 0.0, g)
    n, C = r.shape
    w = _per_channel(weight, C, 1.0)
    mean = np.asarray(mean, np.float64)
    inv = np.asarray(invstd, np.float64)
    xhat = (r - mean) * inv
    dbias = g.sum(axis=0)
    dweight = (g * xhat).sum(axis=0)
    if training:
        dx = w * inv * (g - dbias / n - xhat * dweight / n)
    else:
        dx = g * w * inv
    return _unrows(dx, x.shape, axis), dweight, dbias


def fold(running_mean, running_var, weight=None, bias=None, eps=1e-5):
    C = len(running_mean)
    scale = _per_channel(weight, C, 1.0) * invstd(running_var, eps)
    return scale, _per_channel(bias, C, 0.0) - np.asarray(running_mean, np.float64) * scale


def scale_shift(x, scale, shift, axis=1, relu=False):
    x = np.asarray(x)
    y = _rows(x, axis) * np.asarray(scale, np.float64) + np.asarray(shift, np.float64)
    if relu:
        y = np.where(y < 0, 0.0, y)
    return _unrows(y, x.shape, axis)
