"""cbn.dask.batch_stats: statistics of chunked Dask arrays against NumPy."""

import numpy as np
import pytest

import oracle
from conftest import assert_within

da = pytest.importorskip("dask.array")
cbn_dask = pytest.importorskip("cbn.dask")


@pytest.mark.parametrize("chunks,axis", [
    ((8, -1, -1, -1), 1),          # batch split only (synchronized BN)
    ((7, 2, 3, 4), 1),             # every axis split, channels too
    ((5, 4, 5, 3), -1),            # channels-last, channels split
    ((100, 3, 10, 10), 1),         # one chunk
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matches_numpy(chunks, axis, dtype, rng):
    shape = (30, 6, 10, 10) if axis == 1 else (30, 10, 10, 6)
    x = (rng.standard_normal(shape) * 2 + 50).astype(dtype)
    mean, var = cbn_dask.batch_stats(da.from_array(x, chunks=chunks), axis=axis)
    rmean, rvar = oracle.batch_stats(x, axis)
    # float32: one rounding of a float64 result; float64: float64 sums of 3000 values
    # per channel, blocked (ACC roundoffs of the summands' magnitude, as test_reference)
    u = 2.0 ** -24 if dtype == np.float32 else 64 * 2.0 ** -53
    assert mean.dtype == var.dtype == np.dtype(dtype)
    assert_within(mean, rmean, u * np.abs(rmean))
    assert_within(var, rvar, u * (rvar + (rmean - x.min()) ** 2))


def test_bad_input(rng):
    with pytest.raises(TypeError, match="dask array"):
        cbn_dask.batch_stats(np.ones((2, 3)))
    with pytest.raises(TypeError, match="dtype"):
        cbn_dask.batch_stats(da.ones((2, 3), dtype=int))
    with pytest.raises(ValueError, match="ndim >= 2"):
        cbn_dask.batch_stats(da.ones(3))
    with pytest.raises(ValueError, match="axis=3 is out of range"):
        cbn_dask.batch_stats(da.ones((2, 3)), axis=3)
