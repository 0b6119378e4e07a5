"""Batch statistics of chunked Dask arrays (needs ``dask``; cbn itself does not).

Each chunk is reduced to its per-channel ``(count, mean, m2)`` by cbn's kernels
(:func:`cbn.moments`), and the partials of the chunks that share a range of
channels are merged pairwise in a balanced tree (:func:`cbn.merge_moments`,
Chan's formula), so the result is as accurate as one pass over all the data and
no chunk is ever concatenated with another.

This is synchronized batch norm on an existing distributed engine: the batch
lives in chunks (on workers), the statistics are the whole batch's::

    import dask.array as da, numpy as np, cbn, cbn.dask

    x = da.from_array(batch, chunks=(16, -1, -1, -1))   # (N, C, H, W), 16 samples a chunk
    mean, var = cbn.dask.batch_stats(x)                  # statistics of the whole batch
    invstd = 1.0 / np.sqrt(var + 1e-5)
    # every worker normalizes its own chunk with the shared statistics ...
    y = x.map_blocks(cbn.batch_norm, mean, var, weight, bias, dtype=x.dtype)
    # ... and in training the gradient uses them too:
    # dx = cbn.batch_norm_backward(dy, x, mean, invstd, weight, training=True)
    # with the sums of the backward pass all-reduced the same way.
"""

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as e:  # pragma: no cover - exercised only without dask
    raise ImportError("cbn.dask needs dask: pip install 'dask[array]'") from e

from cbn._api import _check_axis, _compute_dtype, merge_moments, moments

__all__ = ["batch_stats", "moments_of"]


def _tree(parts):
    """Merge delayed partials pairwise: depth log2(len(parts))."""
    merge = dask.delayed(merge_moments, pure=True)
    while len(parts) > 1:
        parts = [merge(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
                 for k in range(0, len(parts), 2)]
    return parts[0]


def moments_of(x, *, axis=1):
    """Delayed ``(count, mean, m2)`` of a Dask array, per channel along `axis`."""
    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, got {type(x).__name__}")
    if x.dtype not in (np.float16, np.float32, np.float64):
        raise TypeError(f"x must have dtype float16, float32 or float64, got {x.dtype}")
    if x.ndim < 2:
        raise ValueError(f"x must have ndim >= 2 (batch and channel axes), got shape {x.shape}")
    ax = _check_axis(axis, x.ndim)
    if any(np.isnan(c) for chunks in x.chunks for c in chunks):
        raise ValueError("x has unknown chunk sizes; call x.compute_chunk_sizes() first")
    blocks = x.to_delayed()
    chunk_moments = dask.delayed(moments, pure=True)
    groups = []
    for j in range(x.numblocks[ax]):            # one channel range at a time
        sel = [slice(None)] * x.ndim
        sel[ax] = j
        parts = [chunk_moments(b, axis=ax) for b in blocks[tuple(sel)].ravel()]
        groups.append(_tree(parts))
    return dask.delayed(_concat, pure=True)(groups)


def _concat(groups):
    counts = {g[0] for g in groups}
    if len(counts) != 1:    # cannot happen for a rectangular array
        raise ValueError(f"channel groups disagree on counts: {counts}")
    return (groups[0][0], np.concatenate([g[1] for g in groups]),
            np.concatenate([g[2] for g in groups]))


def batch_stats(x, *, axis=1):
    """Per-channel mean and biased variance of a chunked Dask array.

    Parameters
    ----------
    x : dask.array.Array of shape (N, C, ...), float16/32/64
    axis : int
        The channel axis.  Chunks may split any axis, the channel axis included.

    Returns
    -------
    mean, var : ndarray of shape (C,)
        Computed (not lazy), in the compute dtype (float64 for float64 data,
        float32 otherwise), like :func:`cbn.batch_stats`.

    Examples
    --------
    >>> import numpy as np, dask.array as da, cbn.dask
    >>> x = da.from_array(np.arange(12.0).reshape(6, 2), chunks=(2, 1))
    >>> cbn.dask.batch_stats(x)
    (array([5., 6.]), array([11.66666667, 11.66666667]))
    """
    count, mean, m2 = moments_of(x, axis=axis).compute()
    if count == 0:
        raise ValueError(f"x has no values per channel (shape {x.shape})")
    cdt = _compute_dtype(np.dtype(x.dtype))
    return mean.astype(cdt), (m2 / count).astype(cdt)
