"""The NumPy-facing functions: validation, dtype rules, ``out=``, dispatch.

Everything a user can get wrong is checked here, before anything is written;
the kernels (cbn._kernels, chosen by cbn._dispatch) only compute.  Data flows
one way: API -> layout (canonical ``(outer, C, inner)`` description) -> kernels.

The common case (ndarray inputs, C-contiguous data, float32/float64 parameter
arrays) takes short paths: each check is a type test and a comparison.
"""

import math
import numbers
import sys

import numpy as np

from cbn import _dispatch, _rare
from cbn._layout import adopt, canonical, empty_like, matches
from cbn._threads import resolve

_k = _dispatch.baseline      # the fast-path predicates (the same in every build)
_like, _c_plan, _plain_params = _k.like, _k.c_plan, _k.plain_params   # bound once
_WRITEABLE = _k.FLAG_WRITEABLE

_F16, _F32, _F64 = np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64)
_DATA = frozenset((_F16, _F32, _F64))      # data dtypes
_PARAM = frozenset((_F32, _F64))            # per-channel dtypes the kernels read directly
_FMAX = sys.float_info.max
_ndarray = np.ndarray


# ------------------------------------------------------------------ validation

def _dtype_name(dt):
    return dt.name if dt.isnative else dt.str


def _as_data(x, name="x"):
    """x as an ndarray of float16/32/64 (native byte order) with ndim >= 2."""
    if type(x) is not _ndarray:
        x = _as_data_slow(x, name)
    else:
        dt = x.dtype    # identity first: the common dtypes are singletons
        if dt is not _F32 and dt is not _F64 and dt is not _F16 and dt not in _DATA:
            x = _as_data_slow(x, name)
    if x.ndim < 2:
        raise ValueError(f"{name} must have ndim >= 2 (batch and channel axes), "
                         f"got shape {x.shape}")
    return x


def _as_data_slow(x, name):
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as e:  # ragged lists and the like
            raise TypeError(f"{name} must be array_like of floats: {e}") from None
    dt = x.dtype
    if dt.kind == "f" and not dt.isnative:
        x = x.astype(dt.newbyteorder("="))
    if x.dtype not in _DATA:
        raise TypeError(f"{name} must have dtype float16, float32 or float64, "
                        f"got {_dtype_name(dt)}")
    return x


def _pass_work(x):
    """The work a single output pass over x (inference, scale_shift) counts against the
    serial threshold (cbn._threads.resolve): its values, float16 ones at half weight.
    Such a pass over float16 data in cache takes 0.8-0.9 of float32's time per value on
    one thread, and two threads' fork and join cost the same: measured (2-core AMD EPYC
    VM, Zen 5, in one process, 7-9 rounds), float16 inference of 32768-50176 values took
    1.14-1.56x its one-thread time on two (NCHW, NHWC, (N, C)), 65536 values 0.99-1.06x;
    float32 inference of 32768 values 0.91-1.15x.  Training and the backward (two passes,
    more work per value) count whole values: float16 training of 32768-50176 values took
    0.83-1.25x, the backward 0.77-1.00x."""
    return x.size >> 1 if x.dtype is _F16 else x.size


def _check_axis(axis, ndim):
    if type(axis) is not int:
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise TypeError(f"axis must be an integer, got {axis!r}")
        axis = int(axis)
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for x with ndim={ndim}")
    return axis % ndim


def _check_bool(v, name):
    if v is True or v is False:
        return v
    if isinstance(v, np.bool_):
        return bool(v)
    raise TypeError(f"{name} must be True or False, got {v!r}")


def _check_number(v, name, lo, hi, what):
    if type(v) is not float:
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name} must be a real number {what}, got {v!r}")
        v = float(v)
    if not lo <= v <= hi:  # also rejects NaN
        raise ValueError(f"{name} must be {what}, got {v}")
    return v


def _check_eps(eps):
    return _check_number(eps, "eps", 0.0, _FMAX, "finite and >= 0")


def _channel(a, name, C, required=False):
    """A per-channel array: 1-D of length C, float dtype.  Returns it as float32 or
    float64 (other float dtypes are converted), or None when absent and optional."""
    if type(a) is _ndarray:
        dt = a.dtype    # the dtype singletons first: the cheapest test that fails
        if (dt is _F32 or dt is _F64 or dt in _PARAM) and a.ndim == 1 and a.shape[0] == C:
            return a
    if a is None:
        if required:
            raise ValueError(f"{name} is required here (1-D array of length C={C})")
        return None
    arr = np.asarray(a)
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must have a floating dtype, got {_dtype_name(arr.dtype)}")
    if arr.ndim != 1 or arr.shape[0] != C:
        raise ValueError(f"{name} must be 1-D of length C={C}, got shape {arr.shape}")
    return arr if arr.dtype in _PARAM else arr.astype(np.float64)


def _running(a, name, C):
    """A running statistic that training updates in place."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array (it is updated in place), "
                        f"got {type(a).__name__}")
    _channel(a, name, C)
    if not a.flags.writeable:
        raise ValueError(f"{name} is read-only; training updates it in place")
    return a


def _check_out(out, x, name="out"):
    """out's flag bits (cbn._kernels.flags) once it is a writeable array of x's shape
    and dtype."""
    flags = _like(out, x)       # the common case, tested in C
    if flags >= 0 and flags & _WRITEABLE:
        return flags
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array or None, got {type(out).__name__}")
    if out.shape != x.shape:
        raise ValueError(f"{name}.shape={out.shape}, expected {x.shape}")
    dt = out.dtype
    if dt != x.dtype:
        raise TypeError(f"{name}.dtype={_dtype_name(dt)}, expected {_dtype_name(x.dtype)}")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    return _k.flags(out)


def _like_x(a, x, name):
    """An array that must match x in shape and dtype (dy, y)."""
    if _like(a, x) >= 0:        # the common case, tested in C
        return a
    a = _as_data(a, name)
    if a.shape != x.shape:
        raise ValueError(f"{name}.shape={a.shape}, expected x.shape={x.shape}")
    if a.dtype != x.dtype:
        raise TypeError(f"{name}.dtype={a.dtype.name}, expected x.dtype={x.dtype.name}")
    return a


def _compute_dtype(dt):
    # identity first: == on dtypes costs a cast lookup, and float32 is the common case
    return _F64 if dt is _F64 or (dt is not _F32 and dt == _F64) else _F32


def _invstd(var, eps):
    """1 / sqrt(var + eps) in float64, 0 where var + eps == 0 (PyTorch's rule)."""
    t = np.asarray(var, dtype=np.float64) + eps
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(t == 0, 0.0, 1.0 / np.sqrt(t))


# ------------------------------------------------------------------ plumbing

def _prepare(x, ax, out, dy=None, y=None):
    """x, dy and y (None, or arrays like x) in one layout, and where the kernel writes:
    (x, dy, y, (outer, C, inner), result, target).  The kernel writes target;
    _finish() copies it into result when they differ.  target is out itself when out
    is laid out like x and is disjoint from, or identical to, every array the kernel
    reads; a new array otherwise.  out is checked (_check_out) before anything is
    copied."""
    plan = _c_plan(x, ax, out, dy, y)     # the common case, tested in C
    if plan is not None:
        return x, dy, y, plan[0], out, plan[1]
    oflags = None if out is None else _check_out(out, x)
    x, perm, dims = canonical(x, ax)
    if dy is not None:
        dy = adopt(dy, x, perm)
    if y is not None:
        y = adopt(y, x, perm)
    overlap = _k.overlap
    if out is not None and matches(out, perm, oflags) and all(
            r is None or r is out or overlap(out, r) != 2 for r in (x, dy, y)):
        return x, dy, y, dims, out, out
    return x, dy, y, dims, out, empty_like(x, perm)


def _finish(result, target):
    if result is None:
        return target
    if target is not result:
        np.copyto(result, target)
    return result


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
    Statistics accumulate in float64 (float16 data: in float32 over 16 values
    per vector lane first, with F16C); float16 data is computed in float32 and
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
    # the common argument types are tested inline: this function's overhead is what
    # small tensors pay
    nd = x.ndim
    ax = axis % nd if type(axis) is int and -nd <= axis < nd else _check_axis(axis, nd)
    C = x.shape[ax]
    if training is not False and training is not True:
        training = _check_bool(training, "training")
    if relu is not False and relu is not True:
        relu = _check_bool(relu, "relu")
    if return_stats is not False and return_stats is not True:
        return_stats = _check_bool(return_stats, "return_stats")
    if type(eps) is not float or not 0.0 <= eps <= _FMAX:
        eps = _check_eps(eps)
    plain = _plain_params(C, weight, bias, running_mean, running_var)
    if plain:
        w, b = weight, bias
    else:
        w = _channel(weight, "weight", C)
        b = _channel(bias, "bias", C)
    if training:
        momentum = _check_number(momentum, "momentum", 0.0, 1.0, "in [0, 1]")
        if (running_mean is None) != (running_var is None):
            raise ValueError("running_mean and running_var must be given together "
                             "(or both None) in training")
        if running_mean is not None:
            _running(running_mean, "running_mean", C)
            _running(running_var, "running_var", C)
        n = x.size // C if C else math.prod(x.shape[:ax] + x.shape[ax + 1:])
        if n < 2:
            raise ValueError(f"training needs more than 1 value per channel, got x.shape="
                             f"{x.shape} with channel axis {ax}")
    else:
        rm, rv = running_mean, running_var
        if not plain or rm is None or rv is None:
            rm = _channel(running_mean, "running_mean", C, required=True)
            rv = _channel(running_var, "running_var", C, required=True)
    x, _, _, (outer, _, inner), result, target = _prepare(x, ax, out)
    size = x.size
    nt = resolve(n_threads, size if training else _pass_work(x))
    K = _dispatch.kernels
    if training:
        cdt = _compute_dtype(x.dtype)
        mean = invstd = None
        if return_stats:
            mean, invstd = np.empty(C, cdt), np.empty(C, cdt)
        rm, rv = running_mean, running_var
        if rm is not None and not (rm.dtype in _PARAM and rv.dtype in _PARAM):
            rm, rv = rm.astype(np.float64), rv.astype(np.float64)   # updated, then copied back
        if size:
            K.bn_train(x, target, outer, C, inner, w, b, eps, relu, rm, rv, momentum, mean,
                       invstd, nt, target is not result)
        elif return_stats:
            mean.fill(np.nan)
            invstd.fill(np.nan)
        if rm is not running_mean:
            running_mean[...] = rm
            running_var[...] = rv
    else:
        if size:
            K.bn_eval(x, target, outer, C, inner, rm, rv, w, b, eps, relu, nt,
                      target is not result)
        if return_stats:
            cdt = _compute_dtype(x.dtype)
            mean, invstd = rm.astype(cdt), _invstd(rv, eps).astype(cdt)
    y = _finish(result, target)
    if return_stats:
        return y, mean, invstd
    return y


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
    m, inv, w = mean, invstd, weight
    if not _plain_params(C, m, inv, w, None) or m is None or inv is None:
        m = _channel(mean, "mean", C, required=True)
        inv = _channel(invstd, "invstd", C, required=True)
        w = _channel(weight, "weight", C)
    training = _check_bool(training, "training")
    if y is not None:
        y = _like_x(y, x, "y")
    args = dy, x, y
    x, dy, y, (outer, _, inner), result, target = _prepare(x, ax, out, dy, y)
    nt = resolve(n_threads, x.size)
    cdt = _compute_dtype(x.dtype)
    dweight, dbias = np.zeros(C, cdt), np.zeros(C, cdt)
    if x.size and _dispatch.kernels.bn_backward(dy, x, y, target, outer, C, inner, m, inv, w,
                                                training, dweight, dbias, nt,
                                                target is not result):
        return _rare.backward_in_float64(*args, m, inv, w, training, ax, out, n_threads)
    return _finish(result, target), dweight, dbias


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
    if math.prod(x.shape[:ax] + x.shape[ax + 1:]) == 0:
        raise ValueError(f"x has no values per channel (x.shape={x.shape}, axis={ax})")
    x, _, (outer, _, inner) = canonical(x, ax)
    nt = resolve(n_threads, x.size)
    cdt = _compute_dtype(x.dtype)
    mean, var = np.empty(C, cdt), np.empty(C, cdt)
    if C:
        _dispatch.kernels.bn_stats(x, outer, C, inner, mean, var, nt)
    return mean, var


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
    given = {"running_mean": running_mean, "running_var": running_var,
             "weight": weight, "bias": bias}
    vals = {k: _channel(a, k, C, required=k.startswith("running")) for k, a in given.items()}
    eps = _check_eps(eps)
    dt = np.float64 if any(np.asarray(a).dtype.itemsize >= 8
                           for a in given.values() if a is not None) else np.float32
    scale = _invstd(vals["running_var"], eps)
    if vals["weight"] is not None:
        scale = scale * vals["weight"]
    shift = -vals["running_mean"] * scale
    if vals["bias"] is not None:
        shift = shift + vals["bias"]
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
    s, t = scale, shift
    if not _plain_params(C, s, t, None, None) or s is None or t is None:
        s = _channel(scale, "scale", C, required=True)
        t = _channel(shift, "shift", C, required=True)
    relu = _check_bool(relu, "relu")
    x, _, _, (outer, _, inner), result, target = _prepare(x, ax, out)
    nt = resolve(n_threads, _pass_work(x))
    if x.size:
        _dispatch.kernels.scale_shift(x, target, outer, C, inner, s, t, relu, nt,
                                      target is not result)
    return _finish(result, target)


def moments(x, *, axis=1, n_threads=None):
    """Per-channel ``(count, mean, m2)``: the partial statistics data-parallel training
    merges across workers (:func:`merge_moments`).

    Parameters
    ----------
    x : array_like of shape (N, C, ...)
    axis : int
    n_threads : int >= 1, optional

    Returns
    -------
    count : int
        Values per channel.
    mean, m2 : ndarray of shape (C,), float64
        The mean and the sum of squared deviations from it (``var = m2 / count``).

    Examples
    --------
    >>> import numpy as np, cbn
    >>> x = np.arange(8.0).reshape(4, 2)
    >>> a, b = cbn.moments(x[:1]), cbn.moments(x[1:])
    >>> cbn.merge_moments(a, b)
    (4, array([3., 4.]), array([20., 20.]))
    >>> cbn.moments(x)
    (4, array([3., 4.]), array([20., 20.]))
    """
    x = _as_data(x)
    ax = _check_axis(axis, x.ndim)
    C = x.shape[ax]
    n = math.prod(x.shape[:ax] + x.shape[ax + 1:])
    mean, m2 = np.zeros(C), np.zeros(C)
    if n and C:
        x, _, (outer, _, inner) = canonical(x, ax)
        _dispatch.kernels.bn_stats(x, outer, C, inner, mean, m2, resolve(n_threads, x.size))
        m2 *= n
    elif n_threads is not None:
        resolve(n_threads, 0)   # still validated
    return n, mean, m2


def merge_moments(a, b):
    """Merge two ``(count, mean, m2)`` partials (Chan, Golub and LeVeque's parallel
    formula, in float64): the moments of the union of both sets of values.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> cbn.merge_moments((2, np.array([1.0]), np.array([2.0])), (0, np.array([0.0]), np.array([0.0])))
    (2, array([1.]), array([2.]))
    """
    (na, ma, sa), (nb, mb, sb) = (_check_moments(a, "a"), _check_moments(b, "b"))
    if ma.shape != mb.shape:
        raise ValueError(f"a and b have different channel counts: {ma.shape[0]} and {mb.shape[0]}")
    n = na + nb
    if n == 0:
        return 0, np.zeros_like(ma), np.zeros_like(ma)
    delta = mb - ma
    return n, ma + delta * (nb / n), sa + sb + delta * delta * (na * nb / n)


def _check_moments(m, name):
    try:
        count, mean, m2 = m
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a (count, mean, m2) tuple") from None
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
        raise ValueError(f"{name}[0] (count) must be an integer >= 0, got {count!r}")
    mean = np.asarray(mean, dtype=np.float64)
    m2 = np.asarray(m2, dtype=np.float64)
    if mean.ndim != 1 or mean.shape != m2.shape:
        raise ValueError(f"{name}: mean and m2 must be 1-D of one length, got shapes "
                         f"{mean.shape} and {m2.shape}")
    return int(count), mean, m2
