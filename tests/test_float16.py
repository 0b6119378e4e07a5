"""float16: the software conversions (used where the CPU has no F16C) against NumPy, and
the float16 sums over runs of every length."""

import numpy as np
import pytest

import cbn
import oracle
from cbn import _kernels
from conftest import assert_within, channel_shape, other_axes, roundoff, stats_mags, sums_err


def _roundtrip(h_bits, f):
    h_as_float = np.empty(h_bits.size, np.float32)
    f_as_half = np.empty(f.size, np.uint16)
    _kernels.half_soft_roundtrip(h_bits, f, h_as_float, f_as_half)
    return h_as_float, f_as_half


def test_half_to_float_all_65536_values():
    bits = np.arange(1 << 16, dtype=np.uint16)
    got, _ = _roundtrip(bits, np.zeros(1, np.float32))
    want = bits.view(np.float16).astype(np.float32)
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), want[~nan].view(np.uint32))


def test_float_to_half_rounds_like_numpy(rng):
    # every float16 value, the midpoints between neighbours (ties to even), values
    # a hair either side of them, random bit patterns, and the range edges
    h = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
    h = h[np.isfinite(h)].astype(np.float32)
    h = np.unique(h)
    mid = (h[:-1].astype(np.float64) + h[1:]) / 2
    f = np.concatenate([
        h, mid.astype(np.float32), np.nextafter(mid.astype(np.float32), np.float32(np.inf)),
        np.nextafter(mid.astype(np.float32), np.float32(-np.inf)),
        rng.integers(0, 1 << 32, 200000, dtype=np.uint64).astype(np.uint32).view(np.float32),
        np.array([65504, 65519.99, 65520, 1e10, -1e10, 2.0 ** -24, 2.0 ** -25, 2.0 ** -26,
                  3 * 2.0 ** -26, 1e-30, np.inf, -np.inf, np.nan, -0.0], np.float32),
    ])
    _, got = _roundtrip(np.zeros(1, np.uint16), f)
    with np.errstate(over="ignore"):
        want = f.astype(np.float16).view(np.uint16)
    nan = np.isnan(f)
    assert np.array_equal(got[~nan], want[~nan])
    assert np.isnan(got[nan].view(np.float16)).all()


def _check_sums(x, axis, y, rng):
    """batch_stats and batch_norm_backward's sums (y: the ReLU mask's forward output, or
    None) on float16 x against the float64 oracle within the allowance of test_reference."""
    x64 = x.astype(np.float64)
    mean, var = cbn.batch_stats(x, axis=axis)
    rmean, rvar = oracle.batch_stats(x, axis=axis)
    mx, dev2 = stats_mags(x, axis, rmean)
    cr = 1.01 * roundoff(np.float32)
    assert_within(mean, rmean, cr * np.abs(rmean) + sums_err(np.float16) * mx, "mean")
    assert_within(var, rvar, cr * rvar + sums_err(np.float16) * (rvar + dev2), "var")

    dy = (rng.standard_normal(x.shape) + 1).astype(np.float16)   # sum(dy) ~ its count
    rinv = oracle.invstd(rvar, 1e-5)
    _, dw, db = cbn.batch_norm_backward(dy, x, rmean, rinv, training=True, y=y, axis=axis)
    _, rdw, rdb = oracle.batch_norm_backward(dy, x, rmean, rinv, training=True, y=y,
                                             axis=axis)
    g = dy.astype(np.float64) if y is None else np.where(y <= 0, 0.0, dy.astype(np.float64))
    cs = channel_shape(x, axis)
    sgx = np.abs(g * (x64 - rmean.reshape(cs)) * rinv.reshape(cs)).sum(other_axes(x, axis))
    assert_within(dw, rdw, (cr + sums_err(np.float16)) * sgx, "dweight")
    assert_within(db, rdb, (cr + sums_err(np.float16)) * np.abs(g).sum(other_axes(x, axis)),
                  "dbias")


def _far(shape, offset, scale, rng):
    return np.clip(rng.standard_normal(shape) * scale + offset, -65504, 65504).astype(np.float16)


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("n", [1, 31, 32, 33, 127, 128, 129, 200, 1023, 1025, 3000])
@pytest.mark.parametrize("offset,scale", [(300.0, 2.0), (6e4, 100.0)])
def test_planar_sums_every_run_length(n, offset, scale, rng):
    """Statistics and backward sums over planar runs of every length the float16
    summation distinguishes (vectors of 8, four at a time, groups of four such steps
    in float32, the scalar tail, blocks of 1024), about a mean far from zero and given
    in float64 (not a float32 value, so the sums' pivot correction counts)."""
    _check_sums(_far((3, 4, n), offset, scale, rng), 1, None, rng)


@pytest.mark.usefixtures("kernels")
@pytest.mark.parametrize("rows,C", [(37, 13), (600, 24), (300, 67), (40, 520), (70011, 33),
                                    (2102, 1030)], ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["plain", "relu"])
def test_interleaved_sums_every_tile_path(rows, C, masked, rng):
    """Channels-last statistics and backward sums through each way the float16 sums walk
    interleaved rows: grouped short rows, register tiles of 8 channels over all rows in
    cache with a channel tail, tiles a few rows at a time for rows of 512 values or
    more, and walks of 16 rows past 2**21 values (the row counts leave partial walks
    and float32 groups on 1, 2 or 4 threads), with and without the ReLU mask, about a
    mean far from zero."""
    x = _far((rows, C), 6e4, 100.0, rng)
    y = rng.standard_normal(x.shape).astype(np.float16) if masked else None
    _check_sums(x, -1, y, rng)
