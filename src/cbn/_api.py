"""The NumPy-facing functions: validation, dtype rules, ``out=``, dispatch.

Everything a user can get wrong is checked here, before anything is written;
the kernels in ``cbn._kernels`` only compute.  Data flows one way:
API -> layout (canonical ``(outer, C, inner)`` view) -> kernels.
"""

import math
import numbers
import sys

import numpy as np

from cbn import _kernels
from cbn._layout import canonical
from cbn._threads import resolve

_DATA_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


# ------------------------------------------------------------------ validation

def _dtype_name(dt):
    return dt.name if dt.isnative else dt.str


def _as_data(x, name="x"):
    """x as an ndarray of float16/32/64 (native byte order) with ndim >= 2."""
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name} must be array_like of floats: {e}") from None
    dt = x.dtype
    if not dt.isnative:
        x = x.astype(dt.newbyteorder("="))
        dt = x.dtype
    if dt not in _DATA_DTYPES:
        raise TypeError(f"{name} must have dtype float16, float32 or float64, "
                        f"got {_dtype_name(dt)}")
    if x.ndim < 2:
        raise ValueError(f"{name} must have ndim >= 2 (batch and channel axes), "
                         f"got shape {x.shape}")
    return x


def _check_axis(axis, ndim):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for x with ndim={ndim}")
    return int(axis) % ndim


def _check_bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {v!r}")
    return bool(v)


def _check_number(v, name, lo, hi, what):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{name} must be a real number {what}, got {v!r}")
    v = float(v)
    if not lo <= v <= hi:  # also rejects NaN
        raise ValueError(f"{name} must be {what}, got {v}")
    return v


def _check_eps(eps):
    return _check_number(eps, "eps", 0.0, sys.float_info.max, "finite and >= 0")


def _channel(a, name, C, default=None, *, array_required=False):
    """A per-channel parameter as a 1-D float64 array of length C.

    None gives ``default`` broadcast (or an error when default is None).
    """
    if a is None:
        if default is None:
            raise ValueError(f"{name} is required here (1-D array of length C={C})")
        return np.full(C, default)
    if array_required and not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place), "
                        f"got {type(a).__name__}")
    arr = a if isinstance(a, np.ndarray) else np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {_dtype_name(arr.dtype)}")
    if arr.ndim != 1 or arr.shape[0] != C:
        raise ValueError(f"{name} must be 1-D of length C={C}, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


def _check_array_out(out, shape, dtype, name):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or None, got {type(out).__name__}")
    if out.shape != shape:
        raise ValueError(f"{name}.shape={out.shape}, expected {shape}")
    if out.dtype != dtype:
        raise TypeError(f"{name}.dtype={_dtype_name(out.dtype)}, "
                        f"expected {_dtype_name(dtype)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")


def _like_x(a, x, name):
    """An array that must match x in shape and dtype (dy, y)."""
    a = _as_data(a, name)
    if a.shape != x.shape:
        raise ValueError(f"{name}.shape={a.shape}, expected x.shape={x.shape}")
    if a.dtype != x.dtype:
        raise TypeError(f"{name}.dtype={a.dtype.name}, expected x.dtype={x.dtype.name}")
    return a


def _compute_dtype(dt):
    return np.dtype(np.float64) if dt == np.float64 else np.dtype(np.float32)


def _invstd(var, eps):
    """1 / sqrt(var + eps) in float64, 0 where var + eps == 0 (PyTorch's rule)."""
    t = np.asarray(var, dtype=np.float64) + eps
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t == 0, 0.0, 1.0 / np.sqrt(t))


def _values_per_channel(x, axis):
    return math.prod(s for k, s in enumerate(x.shape) if k != axis)


# ------------------------------------------------------------------ plumbing

class _Call:
    """x in canonical form, and where the kernel's output goes."""

    def __init__(self, x, axis, out, n_threads):
        self.x = x
        self.cdt = _compute_dtype(x.dtype)
        self.nt = resolve(n_threads, x.size)
        x3, self.lay = canonical(x, axis)
        self.x3 = x3 if x3.dtype == self.cdt else x3.astype(self.cdt)
        self.out = out

    def operand(self, a):
        """Another input of x's shape (dy, y) in the same canonical form."""
        return self.lay.copy_in(a, self.cdt)

    def target(self, *reads):
        """(result, buf): the kernel writes buf; finish() returns result.

        buf is out's own canonical view when out is laid out like x, has the
        compute dtype and is either disjoint from or identical to each array the
        kernel reads; otherwise a scratch buffer that finish() copies into out.
        """
        out = self.out
        if out is None:
            if self.x.dtype == self.cdt:
                self._result, buf = self.lay.empty(self.cdt)
                self._copy = False
                return buf
            self._result = self.lay.empty(self.x.dtype)[0]
        else:
            self._result = out
            v = self.lay.view(out) if out.dtype == self.cdt else None
            if v is not None and all(_disjoint_or_same(v, r) for r in reads):
                self._copy = False
                return v
        self._copy = True
        return np.empty(self.lay.shape3, self.cdt)

    def finish(self, buf):
        if self._copy:
            self.lay.copy_out(buf, self._result)
        return self._result


def _disjoint_or_same(a, b):
    if not np.may_share_memory(a, b):
        return True
    return (a.__array_interface__["data"][0] == b.__array_interface__["data"][0]
            and a.strides == b.strides)


# ------------------------------------------------------------------ public API

def batch_norm(x, running_mean=None, running_var=None, weight=None, bias=None, *,
               training=False, momentum=0.1, eps=1e-5, axis=1, relu=False, out=None,
               return_stats=False, n_threads=None):
    """Batch normalization with PyTorch's semantics (``torch.nn.functional.batch_norm``).

    ``y = (x - mean) / sqrt(var + eps) * weight + bias`` per channel, with the
    batch statistics (``training=True``) or the running ones.

    Parameters
    ----------
    x : array_like of shape (N, C, ...) (channel axis at `axis`)
        float16, float32 or float64; ndim >= 2.
    running_mean, running_var : ndarray of shape (C,), optional
        Any float dtype.  Required when ``training=False``.  With
        ``training=True`` they are updated in place (both or neither):
        ``r = (1 - momentum) * r + momentum * batch``, the variance with the
        unbiased ``n / (n - 1)`` correction.
    weight, bias : array_like of shape (C,), optional
        gamma and beta; None means ones and zeros.
    training : bool
        Normalize with the batch mean and biased variance (needs more than one
        value per channel).
    momentum : float in [0, 1]
    eps : float >= 0
    axis : int
        The channel axis: 1 for NCHW, -1 for NHWC / channels-last.
    relu : bool
        Apply ``max(y, 0)`` in the same pass.
    out : ndarray, optional
        x's shape and dtype; may be x itself (in place).  Returned.
    return_stats : bool
        Also return the per-channel ``mean`` and ``invstd`` (compute dtype: the
        batch's in training, the running ones otherwise), which
        :func:`batch_norm_backward` takes.
    n_threads : int >= 1, optional
        None: the library default (:func:`cbn.set_num_threads`).

    Returns
    -------
    y : ndarray of x's shape and dtype, or ``(y, mean, invstd)``

    Notes
    -----
    Statistics accumulate in float64; float16 data is computed in float32 and
    rounded once.  The compute dtype is float64 for float64 data, float32
    otherwise.  x and out are used without copies when they are dense in any
    axis order (C, Fortran, channels-last strides); others are copied.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> x = np.array([[1.0, 10.0], [3.0, 30.0]], dtype=np.float32)   # (N=2, C=2)
    >>> rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    >>> cbn.batch_norm(x, rm, rv, training=True, eps=0.0)
    array([[-1., -1.],
           [ 1.,  1.]], dtype=float32)
    >>> rm, rv
    (array([0.2, 2. ], dtype=float32), array([ 1.1, 20.9], dtype=float32))
    """
    x = _as_data(x)
    ax = _check_axis(axis, x.ndim)
    C = x.shape[ax]
    training = _check_bool(training, "training")
    relu = _check_bool(relu, "relu")
    return_stats = _check_bool(return_stats, "return_stats")
    eps = _check_eps(eps)
    w = _channel(weight, "weight", C, 1.0)
    b = _channel(bias, "bias", C, 0.0)
    n = _values_per_channel(x, ax)
    if training:
        momentum = _check_number(momentum, "momentum", 0.0, 1.0, "in [0, 1]")
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must be given together "
                             "(or both None) in training")
        for name, r in (("running_mean", running_mean), ("running_var", running_var)):
            if r is not None:
                _channel(r, name, C, array_required=True)
                if not r.flags.writeable:
                    raise ValueError(f"{name} is read-only; training updates it in place")
        if n < 2:
            raise ValueError(f"training needs more than 1 value per channel, got x.shape="
                             f"{x.shape} with channel axis {ax}")
    else:
        rm = _channel(running_mean, "running_mean", C)
        rv = _channel(running_var, "running_var", C)
    if out is not None:
        _check_array_out(out, x.shape, x.dtype, "out")

    call = _Call(x, ax, out, n_threads)
    buf = call.target(call.x3)
    if training:
        mean, var = np.empty(C), np.empty(C)
        if x.size:
            _kernels.train_forward(call.x3, buf, w, b, eps, relu, mean, var, call.nt)
        else:
            mean.fill(np.nan)
            var.fill(np.nan)
        invstd = _invstd(var, eps)
        if running_mean is not None:
            _update_running(running_mean, mean, momentum)
            _update_running(running_var, var * (n / (n - 1)), momentum)
    else:
        mean, invstd = rm, _invstd(rv, eps)
        if x.size:
            _kernels.affine(call.x3, buf, mean, w * invstd, b, relu, call.nt)
    y = call.finish(buf)
    if return_stats:
        return y, mean.astype(call.cdt), invstd.astype(call.cdt)
    return y


def _update_running(r, batch, momentum):
    r[...] = (1.0 - momentum) * r.astype(np.float64) + momentum * batch


def batch_norm_backward(dy, x, mean, invstd, weight=None, *, training=True, y=None, axis=1,
                        out=None, n_threads=None):
    """Gradients of :func:`batch_norm`: ``(dx, dweight, dbias)``.

    Parameters
    ----------
    dy : array_like of x's shape and dtype
        Gradient of the loss with respect to the forward output.
    x : array_like of shape (N, C, ...)
        The forward input.
    mean, invstd : array_like of shape (C,)
        As returned by ``batch_norm(..., return_stats=True)``.
    weight : array_like of shape (C,), optional
        gamma (None: ones).
    training : bool
        True: the forward used the batch statistics, and the gradient flows
        through them.  False: frozen statistics, ``dx = dy * invstd * weight``.
    y : array_like of x's shape and dtype, optional
        The output of a ``relu=True`` forward: the gradient is zero where
        ``y <= 0``.
    axis : int
    out : ndarray, optional
        For dx: x's shape and dtype (may be dy or x itself).
    n_threads : int >= 1, optional

    Returns
    -------
    dx : ndarray of x's shape and dtype
    dweight, dbias : ndarray of shape (C,), compute dtype
        ``dbias = sum(dy)``, ``dweight = sum(dy * (x - mean) * invstd)``.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> x = np.array([[1.0], [3.0]])
    >>> y, mean, invstd = cbn.batch_norm(x, training=True, eps=0.0, return_stats=True)
    >>> cbn.batch_norm_backward(np.array([[1.0], [0.0]]), x, mean, invstd)
    (array([[0.],
           [0.]]), array([-1.]), array([1.]))
    """
    x = _as_data(x)
    dy = _like_x(dy, x, "dy")
    ax = _check_axis(axis, x.ndim)
    C = x.shape[ax]
    m = _channel(mean, "mean", C)
    inv = _channel(invstd, "invstd", C)
    w = _channel(weight, "weight", C, 1.0)
    training = _check_bool(training, "training")
    if y is not None:
        y = _like_x(y, x, "y")
    if out is not None:
        _check_array_out(out, x.shape, x.dtype, "out")

    call = _Call(x, ax, out, n_threads)
    dy3 = call.operand(dy)
    y3 = call.operand(y) if y is not None else call.x3
    buf = call.target(call.x3, dy3, y3)
    dweight, dbias = np.zeros(C), np.zeros(C)
    if x.size:
        _kernels.backward(dy3, call.x3, y3, y is not None, m, inv, w, training, buf,
                          dweight, dbias, call.nt)
    return call.finish(buf), dweight.astype(call.cdt), dbias.astype(call.cdt)


def batch_stats(x, *, axis=1, n_threads=None):
    """Per-channel mean and biased variance over every axis but `axis`.

    Parameters
    ----------
    x : array_like of shape (N, C, ...)
    axis : int
    n_threads : int >= 1, optional

    Returns
    -------
    mean, var : ndarray of shape (C,), compute dtype

    Examples
    --------
    >>> import numpy as np, cbn
    >>> cbn.batch_stats(np.array([[1.0, 5.0], [3.0, 5.0]]))
    (array([2., 5.]), array([1., 0.]))
    """
    x = _as_data(x)
    ax = _check_axis(axis, x.ndim)
    C = x.shape[ax]
    if _values_per_channel(x, ax) == 0:
        raise ValueError(f"x has no values per channel (x.shape={x.shape}, axis={ax})")
    call = _Call(x, ax, None, n_threads)
    mean, var = np.empty(C), np.empty(C)
    if C:
        _kernels.stats(call.x3, mean, var, call.nt)
    return mean.astype(call.cdt), var.astype(call.cdt)


def fold(running_mean, running_var, weight=None, bias=None, *, eps=1e-5):
    """Fold inference-mode batch norm into one per-channel multiply-add.

    ``scale = weight / sqrt(running_var + eps)``, ``shift = bias - running_mean * scale``,
    so that ``batch_norm(x, ...) == x * scale + shift`` (see :func:`scale_shift`).

    Parameters
    ----------
    running_mean, running_var : array_like of shape (C,)
    weight, bias : array_like of shape (C,), optional
    eps : float >= 0

    Returns
    -------
    scale, shift : ndarray of shape (C,)
        float64 when any input is float64, else float32.  Computed in float64.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> cbn.fold(np.array([1.0]), np.array([4.0]), np.array([2.0]), np.array([0.5]), eps=0.0)
    (array([1.]), array([-0.5]))
    """
    rm = np.asarray(running_mean) if running_mean is not None else None
    if rm is None or rm.ndim != 1:
        raise ValueError("running_mean must be 1-D of length C, got "
                         f"{None if rm is None else f'shape {rm.shape}'}")
    C = rm.shape[0]
    arrays = {"running_mean": running_mean, "running_var": running_var,
              "weight": weight, "bias": bias}
    vals = {k: _channel(a, k, C, None if k.startswith("running") else
                        (1.0 if k == "weight" else 0.0)) for k, a in arrays.items()}
    eps = _check_eps(eps)
    given = [np.asarray(a).dtype for a in arrays.values() if a is not None]
    dt = np.float64 if any(d.itemsize >= 8 for d in given) else np.float32
    scale = vals["weight"] * _invstd(vals["running_var"], eps)
    shift = vals["bias"] - vals["running_mean"] * scale
    return scale.astype(dt), shift.astype(dt)


def scale_shift(x, scale, shift, *, axis=1, relu=False, out=None, n_threads=None):
    """The folded inference kernel: ``y = x * scale[c] + shift[c]`` (optionally ReLU).

    Parameters
    ----------
    x : array_like of shape (N, C, ...)
    scale, shift : array_like of shape (C,)
        Any float dtype; used in the compute dtype (float32 unless x is float64).
    axis : int
    relu : bool
    out : ndarray, optional
        x's shape and dtype; may be x itself.
    n_threads : int >= 1, optional

    Returns
    -------
    y : ndarray of x's shape and dtype

    Examples
    --------
    >>> import numpy as np, cbn
    >>> cbn.scale_shift(np.ones((1, 2, 2), np.float32), np.array([2.0, 3.0]), np.array([0.0, -5.0]), relu=True)
    array([[[2., 2.],
            [0., 0.]]], dtype=float32)
    """
    x = _as_data(x)
    ax = _check_axis(axis, x.ndim)
    C = x.shape[ax]
    s = _channel(scale, "scale", C)
    t = _channel(shift, "shift", C)
    relu = _check_bool(relu, "relu")
    if out is not None:
        _check_array_out(out, x.shape, x.dtype, "out")
    call = _Call(x, ax, out, n_threads)
    buf = call.target(call.x3)
    if x.size:
        _kernels.affine(call.x3, buf, np.zeros(C), s, t, relu, call.nt)
    return call.finish(buf)
