"""Shared helpers: arrays in every memory layout, and per-dtype error bounds."""

import zlib

import numpy as np
import pytest

DTYPES = [np.float16, np.float32, np.float64]

# Unit roundoff of each dtype.  float16 data is computed in float32 and rounded
# once, so its outputs are off by at most half an ulp plus float32's error.
ROUNDOFF = {np.dtype(np.float16): 2.0 ** -11, np.dtype(np.float32): 2.0 ** -24,
            np.dtype(np.float64): 2.0 ** -53}
U64 = 2.0 ** -53
# Rounding allowance of a sum accumulated in float64 (blocked sums), in float64
# roundoffs of the summands' magnitude: measured at most 35 on the test data.
ACC = 64
# float16 data: each vector lane sums 32 values of d = x - pivot (d * d, g * d) in
# float32 before the float64 sums take them (_kernels_c.h, CBN_HREDUCE, CBN_HK = 8), at
# most 12 float32 roundings per value (the subtraction, the product, 8 chained
# additions, 2 of a tree; channels-last, cbn_tiles32_f16: 16 rows, 8 for the backward
# sums, in chains of 4 and a tree, 8 roundings); |x - pivot| is up to twice the
# magnitudes the allowances are written against (max |x|, max |x - mean|), so squares
# up to 4x.  The allowance was 56 roundings for the variance (the largest) when the
# planar chains were 4 long (8 roundings per value); it grows with them: 84.
F16_ACC = 84
# float32 data: interleaved backward sums add g and g * (x - rf) (rf: the mean rounded to
# float32) in float32 over groups of 16 rows before the float64 sums take them
# (_kernels_c.h, cbn_rows_gsums32_f32): at most 11 float32 roundings per value (the
# subtraction, the product, a pair's sum, 8 chained additions).
F32_GRAD_ACC = 11


def sums_err(dtype):
    """Rounding allowance of the statistics' and the backward's sums over `dtype`
    data, relative to the magnitudes of the summands."""
    return ACC * U64 + (F16_ACC * roundoff(np.float32) if np.dtype(dtype) == np.float16
                        else 0.0)


def grad_sums_err(dtype):
    """The same for the backward's sums (float32 data: sums_err plus F32_GRAD_ACC)."""
    return sums_err(dtype) + (F32_GRAD_ACC * roundoff(np.float32)
                              if np.dtype(dtype) == np.float32 else 0.0)


def roundoff(dtype):
    return ROUNDOFF[np.dtype(dtype)]


def compute_dtype(dtype):
    return np.dtype(np.float64) if np.dtype(dtype) == np.float64 else np.dtype(np.float32)


# Logical shapes with the channel axis at position 1.
SHAPES = [
    (2, 3),            # (N, C)
    (7, 1),            # C = 1
    (1, 4, 3, 3),      # N = 1
    (3, 2, 1, 1),      # 1x1 spatial
    (4, 5, 7),         # (N, C, L)
    (2, 3, 3, 4, 5),   # (N, C, D, H, W)
    (3, 7, 9, 11),     # odd sizes
    (8, 16, 24, 24),   # large planar: above the serial threshold
    (4096, 24),        # large interleaved
]

# How the array is laid out in memory, and which axis holds the channels.
LAYOUTS = ["C", "last", "cl_strides", "fortran", "negative", "sliced", "axis0"]


def make_array(shape, layout, dtype, rng, scale=1.0, offset=0.0):
    """(x, axis): data of logical shape `shape` (channels at 1) laid out as `layout`.

    "last" and "axis0" move the channel axis (to -1, to 0); the others keep it
    at 1 and vary the strides: channels-last strides (np.asarray of a PyTorch
    channels_last tensor), Fortran order, negative strides, and a strided slice.
    """
    def rand(s):
        return (rng.standard_normal(s) * scale + offset).astype(dtype)

    shape = tuple(shape)
    if layout == "C":
        return rand(shape), 1
    if layout == "last":
        return rand(shape[:1] + shape[2:] + shape[1:2]), -1
    if layout == "axis0":
        return rand(shape[1:2] + shape[:1] + shape[2:]), 0
    if layout == "cl_strides":
        base = rand(shape[:1] + shape[2:] + shape[1:2])
        return np.moveaxis(base, -1, 1), 1
    if layout == "fortran":
        return np.asfortranarray(rand(shape)), 1
    if layout == "negative":
        return rand(shape)[::-1, ..., ::-1], 1
    if layout == "sliced":
        return rand(shape[:-1] + (2 * shape[-1],))[..., 1::2], 1
    raise ValueError(layout)


def per_channel(C, rng, dtype=np.float32, lo=0.5, hi=2.0):
    return rng.uniform(lo, hi, C).astype(dtype)


def assert_within(got, ref, bound, what=""):
    """|got - ref| <= bound element-wise (NaN matches NaN; bound broadcasts to ref)."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{what}: shape {got.shape}, expected {ref.shape}"
    bound = np.broadcast_to(bound, ref.shape)
    with np.errstate(invalid="ignore"):  # inf - inf where both are inf
        err = np.abs(got - ref)
    bad = ~((err <= bound) | (np.isnan(got) & np.isnan(ref)) | (got == ref))
    if bad.any():
        i = np.argmax(np.where(bad, np.nan_to_num(err - bound, nan=np.inf), -np.inf))
        raise AssertionError(
            f"{what}: {bad.sum()} of {bad.size} values off; worst at flat index {i}: "
            f"got {got.flat[i]!r}, expected {ref.flat[i]!r}, error {err.flat[i]:.3g} > "
            f"bound {bound.flat[i]:.3g}")


def channel_shape(x, axis):
    """Shape that broadcasts a per-channel vector along x's channel axis."""
    s = [1] * x.ndim
    s[axis] = x.shape[axis]
    return s


def other_axes(x, axis):
    return tuple(k for k in range(x.ndim) if k != axis % x.ndim)


def stats_mags(x, axis, mean):
    """Per channel: max |x|, and max (x - mean)**2 (what float64 sums are rounded against)."""
    x64 = np.asarray(x, np.float64)
    axes = other_axes(x, axis)
    dev2 = ((x64 - mean.reshape(channel_shape(x, axis))) ** 2).max(axes)
    return np.abs(x64).max(axes), dev2


@pytest.fixture
def rng(request):
    # A seed per test, stable across runs.
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture(params=sorted(__import__("cbn._dispatch", fromlist=["VARIANTS"]).VARIANTS))
def kernels(request):
    """Run a test once per kernel build this machine can run (baseline, avx2)."""
    from cbn import _dispatch
    old = _dispatch.use(request.param)
    yield request.param
    _dispatch.use(old)


@pytest.fixture(params=[False, True], ids=["plain", "streamed"])
def streaming(request, kernels):
    """Run a test with the output passes' plain stores, and again with streaming
    (non-temporal) stores forced on: by default they serve only passes over as much
    data as the last-level cache holds, too large for the test matrix."""
    from cbn import _dispatch
    old = _dispatch.kernels.stream_from(0 if request.param else None)
    yield request.param
    _dispatch.kernels.stream_from(old)
