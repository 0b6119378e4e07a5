"""float16: the software conversions (used where the CPU has no F16C) against NumPy."""

import numpy as np

from cbn import _kernels


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
