"""Folding an inference-mode batch norm into the layer before it (Conv, Linear, ConvTranspose)."""

import numpy as np

from cbn._api import _channel, _check_eps, _invstd


def fold_into(weight, bias, running_mean, running_var, gamma=None, beta=None, *, eps=1e-5,
              axis=0):
    """Fold ``BN(layer(x))`` into one layer: returns ``(new_weight, new_bias)``.

    With ``scale = gamma / sqrt(running_var + eps)``, the output channels of the
    layer (along `axis` of its weight) are scaled by ``scale`` and the bias becomes
    ``(bias - running_mean) * scale + beta`` -- the same numbers as PyTorch's
    ``torch.nn.utils.fusion.fuse_conv_bn_weights`` / ``fuse_linear_bn_weights``.

    Parameters
    ----------
    weight : array_like
        Conv ``(O, I, kh, kw)`` or Linear ``(out, in)``: ``axis=0``; ConvTranspose
        ``(I, O / groups, kh, kw)``: ``axis=1``.  Any ndim >= 1, float dtype.
    bias : array_like of shape (O,), or None (zeros)
    running_mean, running_var : array_like of shape (O,)
    gamma, beta : array_like of shape (O,), optional
        The BN's weight and bias (ones and zeros when None).
    eps : float >= 0
    axis : int
        The output-channel axis of `weight`.

    Returns
    -------
    new_weight : ndarray, weight's shape and dtype
    new_bias : ndarray of shape (O,), bias's dtype (weight's when bias is None)
        Computed in float64, rounded once.

    Examples
    --------
    >>> import numpy as np, cbn
    >>> w, b = np.ones((2, 3), np.float32), np.array([1.0, 0.0], np.float32)
    >>> nw, nb = cbn.fold_into(w, b, np.array([1.0, 2.0]), np.array([4.0, 1.0]), eps=0.0)
    >>> nw
    array([[0.5, 0.5, 0.5],
           [1. , 1. , 1. ]], dtype=float32)
    >>> nb
    array([ 0., -2.], dtype=float32)
    """
    w = np.asarray(weight)
    if w.dtype.kind != "f":
        raise TypeError(f"weight must have a floating dtype, got {w.dtype}")
    if w.ndim < 1:
        raise ValueError(f"weight must have ndim >= 1, got shape {w.shape}")
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if not -w.ndim <= axis < w.ndim:
        raise ValueError(f"axis={axis} is out of range for weight of shape {w.shape}")
    C = w.shape[axis]
    rm = _channel(running_mean, "running_mean", C, required=True).astype(np.float64)
    rv = _channel(running_var, "running_var", C, required=True).astype(np.float64)
    g = _channel(gamma, "gamma", C)
    be = _channel(beta, "beta", C)
    b = _channel(bias, "bias", C)
    eps = _check_eps(eps)
    scale = _invstd(rv, eps) * (1.0 if g is None else g.astype(np.float64))
    shape = [1] * w.ndim
    shape[axis] = C
    new_w = (w.astype(np.float64) * scale.reshape(shape)).astype(w.dtype)
    new_b = (0.0 if b is None else b.astype(np.float64)) - rm
    new_b = new_b * scale + (0.0 if be is None else be.astype(np.float64))
    out_dtype = w.dtype if bias is None else np.asarray(bias).dtype
    return new_w, new_b.astype(out_dtype)
