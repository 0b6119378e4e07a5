"""cbn.moments / cbn.merge_moments: partial statistics merged across workers."""

import numpy as np
import pytest

import cbn
import oracle
from conftest import assert_within


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_merged_partials_equal_the_whole_batch(dtype, layout, rng):
    x = (rng.standard_normal((40, 6, 5, 5)) * 3 + 1e3).astype(dtype)
    axis = 1
    if layout == "NHWC":
        x, axis = np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1
    cuts = sorted(rng.choice(np.arange(1, 40), 5, replace=False))
    parts = [cbn.moments(p, axis=axis) for p in np.split(x, cuts)]
    parts.append(cbn.moments(x[:0], axis=axis))          # an empty worker
    rng.shuffle(parts)
    while len(parts) > 1:                                 # any merge order
        a, b = parts.pop(), parts.pop()
        parts.insert(int(rng.integers(0, len(parts) + 1)), cbn.merge_moments(a, b))
    n, mean, m2 = parts[0]
    rmean, rvar = oracle.batch_stats(x, axis)
    assert n == x.size // 6
    assert mean.dtype == m2.dtype == np.float64
    assert_within(mean, rmean, 1e-13 * np.abs(rmean))
    assert_within(m2 / n, rvar, 1e-9 * rvar)
    n2, mean2, m22 = cbn.moments(x, axis=axis)
    assert n2 == n
    assert_within(mean2, rmean, 1e-13 * np.abs(rmean))


def test_merge_is_chan_formula():
    a = (3, np.array([1.0, 2.0]), np.array([2.0, 0.0]))
    b = (1, np.array([5.0, 2.0]), np.array([0.0, 0.0]))
    n, mean, m2 = cbn.merge_moments(a, b)
    assert n == 4
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(m2, [2.0 + 16.0 * 3 / 4, 0.0])


@pytest.mark.parametrize("a,b,exc,text", [
    ((1, [0.0], [0.0]), (1, [0.0, 1.0], [0.0, 0.0]), ValueError, "different channel counts"),
    ((-1, [0.0], [0.0]), (1, [0.0], [0.0]), ValueError, "count"),
    ((1.5, [0.0], [0.0]), (1, [0.0], [0.0]), ValueError, "count"),
    ((1, 2), (1, [0.0], [0.0]), TypeError, "must be a \\(count, mean, m2\\) tuple"),
    ((1, [[0.0]], [[0.0]]), (1, [0.0], [0.0]), ValueError, "1-D"),
])
def test_merge_bad_input(a, b, exc, text):
    with pytest.raises(exc, match=text):
        cbn.merge_moments(a, b)
