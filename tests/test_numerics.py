"""Hard numerics: large |mean|/std, huge values, constant channels, eps=0, NaN and Inf."""

import numpy as np
import pytest

import cbn
import oracle
from conftest import assert_within

LAYOUTS = {  # (shape, axis): planar and interleaved kernels
    "NCHW": ((16, 3, 20, 20), 1),
    "NHWC": ((16, 20, 20, 3), -1),
    "NC": ((3000, 3), 1),
}

pytestmark = pytest.mark.usefixtures("kernels")  # every test on each kernel build



def _data(layout, rng, loc, scale, dtype=np.float32):
    shape, axis = LAYOUTS[layout]
    return (loc + scale * rng.standard_normal(shape)).astype(dtype), axis


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ratio", [1e2, 1e4, 1e6])
def test_large_mean_to_std_ratio(layout, ratio, rng):
    """float32, |mean|/std up to 1e6: error relative to the output's scale stays ~1e-7.

    (PyTorch 2.13 CPU, which normalizes as x * scale + shift, gives 1e-2 at 1e6,
    and 1.2 for channels-last: DESIGN.md section 4.)
    """
    x, axis = _data(layout, rng, loc=ratio * 3.0, scale=3.0)
    w = np.array([1.0, 2.0, 0.5], np.float32)
    b = np.array([0.0, 1.0, -1.0], np.float32)
    for training in (True, False):
        if training:
            y = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis)
            ry = oracle.batch_norm(x, weight=w, bias=b, training=True, axis=axis)[0]
        else:
            rm, rv = oracle.batch_stats(x, axis)   # float64 running stats
            y = cbn.batch_norm(x, rm, rv, w, b, axis=axis)
            ry = oracle.batch_norm(x, rm, rv, w, b, axis=axis)[0]
        # relative to the output's scale (|w| + |b| per channel: ~1)
        err = np.abs(y.astype(np.float64) - ry).max()
        assert err <= 4e-7 * 3, f"training={training}: error {err:.3g}"
    mean, var = cbn.batch_stats(x, axis=axis)
    rmean, rvar = oracle.batch_stats(x, axis)
    assert_within(mean, rmean, 2.0 ** -24 * np.abs(rmean))
    assert_within(var, rvar, 2.0 ** -23 * rvar)


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scale,loc", [(1e30, 0.0), (1e29, 1e30), (1e-30, 1e-29)])
def test_extreme_magnitudes_float32(layout, scale, loc, rng):
    """Values near 1e30 (squares overflow float32) and near 1e-30 (squares underflow)."""
    x, axis = _data(layout, rng, loc=loc, scale=scale)
    assert np.isfinite(x).all()
    y, mean, invstd = cbn.batch_norm(x, training=True, axis=axis, eps=0.0, return_stats=True)
    ry, rmean, rinv, _, _ = oracle.batch_norm(x, training=True, axis=axis, eps=0.0)
    assert np.isfinite(y).all() and np.isfinite(mean).all() and np.isfinite(invstd).all()
    assert_within(y, ry, 1e-6 * (np.abs(ry) + 1))
    assert_within(invstd, rinv, 1e-6 * rinv)
    # batch_stats returns the compute dtype, as np.var does: a variance of 1e60
    # overflows float32 (inf) and 1e-60 underflows (0); the mean stays exact
    mean, var = cbn.batch_stats(x, axis=axis)
    rmean, rvar = oracle.batch_stats(x, axis)
    assert_within(mean, rmean, 2.0 ** -24 * np.abs(rmean))
    want = rvar.astype(np.float32)
    assert_within(var, want, 2.0 ** -23 * np.abs(want.astype(np.float64)))
    # the backward's sums with gradients of ordinary size: no float32 partial sum
    # overflows or underflows (channels-last and (N, C) float32 data are summed in
    # float32 first)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, axis=axis)
    _, rdw, rdb, sgx, sg = _backward_oracle(dy, x, mean, invstd, axis)
    assert np.isfinite(dw).all() and np.isfinite(db).all()
    assert_within(dw, rdw, 1e-6 * sgx)
    assert_within(db, rdb, 1e-6 * sg)


def _backward_oracle(dy, x, mean, invstd, axis, y=None):
    """The oracle's (dx, dweight, dbias), with the magnitudes the sums are made of:
    sum |g * xhat| and sum |g| per channel (g: dy, 0 where y <= 0)."""
    rdx, rdw, rdb = oracle.batch_norm_backward(dy, x, mean, invstd, axis=axis, y=y)
    axes = tuple(k for k in range(x.ndim) if k != axis % x.ndim)
    cs = [1] * x.ndim
    cs[axis] = -1
    g = dy.astype(np.float64)
    if y is not None:
        g = np.where(y <= 0, 0.0, g)
    xh = (x.astype(np.float64) - mean.astype(np.float64).reshape(cs)) * invstd.reshape(cs)
    return rdx, rdw, rdb, np.abs(g * xh).sum(axes), np.abs(g).sum(axes)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scale,loc", [(1e30, 0.0), (1e-30, 1e-29), (1e14, 0.0)])
def test_backward_dx_at_extreme_magnitudes_float32(layout, scale, loc, rng):
    """float32 data whose invstd lies beyond [2**-50, 2**50] take the backward in
    float64 (_rare.py backward_in_float64): the float32 tables would not hold dx's
    coefficient of x - mean, of order invstd**2 (without it: dx 10-30% off at 1e30, not
    finite at 1e-30).  1e14 (invstd about 2**-46) stays on the float32 path.  dx, out=
    (also x itself), dweight and dbias against the oracle."""
    x, axis = _data(layout, rng, loc=loc, scale=scale)
    y, mean, invstd = cbn.batch_norm(x, training=True, axis=axis, eps=0.0, return_stats=True)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    for yy in (None, y):
        rdx, rdw, rdb, sgx, sg = _backward_oracle(dy, x, mean, invstd, axis, yy)
        dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, y=yy, axis=axis)
        assert dx.dtype == dw.dtype == db.dtype == np.float32 and dx.shape == x.shape
        assert np.isfinite(dx).all()
        assert_within(dx, rdx, 1e-5 * np.abs(rdx).max())
        assert_within(dw, rdw, 1e-6 * sgx)
        assert_within(db, rdb, 1e-6 * sg)
        out = x.copy()
        got = cbn.batch_norm_backward(dy, out, mean, invstd, y=yy, axis=axis, out=out)[0]
        assert got is out
        np.testing.assert_array_equal(out, dx)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("inv", [1e20, 1e-20, 2.0 ** 20, 2.0 ** -49])
def test_backward_float16_with_an_extreme_invstd(layout, inv, rng):
    """float16 data given an invstd beyond [2**-50, 2**50] take the backward in float64
    too (the float32 tables would not hold invstd**2; at 1e20: NaN where x == mean, for
    the float64 result's inf).  2**20 and 2**-49 stay on the float16 path.  dx against
    the oracle rounded once to float16 (inf where it overflows), out= (x itself), dweight
    and dbias against the oracle; training or not, masked or not."""
    x, axis = _data(layout, rng, loc=0.0, scale=1.0, dtype=np.float16)
    x.flat[::7] = 0                     # x == mean
    dy = rng.standard_normal(x.shape).astype(np.float16)
    mean = np.zeros(3, np.float32)
    invstd = np.full(3, inv, np.float32)
    w = np.array([1.0, -2.0, 0.5], np.float32)
    for training in (True, False):
        for y in (None, x):
            rdx, rdw, rdb = oracle.batch_norm_backward(dy, x, mean, invstd, w, training,
                                                       y=y, axis=axis)
            dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, w, training=training,
                                                 y=y, axis=axis)
            assert dx.dtype == np.float16 and dw.dtype == db.dtype == np.float32
            with np.errstate(over="ignore"):
                want = rdx.astype(np.float16)
            assert not np.isnan(dx).any()
            np.testing.assert_array_equal(np.isinf(dx), np.isinf(want))
            assert_within(dx, want, 2.0 ** -10 * np.abs(want) + 2.0 ** -24)
            assert_within(dw, rdw, 1e-6 * np.abs(rdw) + 1e-30)
            assert_within(db, rdb, 1e-6 * np.abs(rdb) + 1e-30)
            if y is None:   # out= x itself: the float64 path reads x before it writes
                out = x.copy()
                got = cbn.batch_norm_backward(dy, out, mean, invstd, w, training=training,
                                              axis=axis, out=out)[0]
                assert got is out
                np.testing.assert_array_equal(out, dx)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("value", [12345.678, -3.0e-3, 0.0, 1e30])
def test_constant_channel_gives_exactly_beta(dtype, layout, value, rng):
    if dtype == np.float16 and abs(value) > 6e4:
        value = 6e4
    x, axis = _data(layout, rng, loc=0.0, scale=1.0, dtype=dtype)
    idx = [slice(None)] * x.ndim
    idx[axis] = 1
    x[tuple(idx)] = value
    b = np.array([0.5, -0.25, 2.0], np.float32)
    w = np.array([1.5, 3.0, 0.5], np.float32)
    for relu in (False, True):
        y, mean, invstd = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis,
                                         relu=relu, return_stats=True)
        want = max(b[1], 0) if relu else b[1]
        assert np.all(y[tuple(idx)] == dtype(want)), np.unique(y[tuple(idx)])
        assert mean[1] == mean.dtype.type(dtype(value))
    mean, var = cbn.batch_stats(x, axis=axis)
    assert var[1] == 0 and mean[1] == mean.dtype.type(dtype(value))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_eps_zero_zero_variance_gives_zero_invstd(layout, rng):
    """PyTorch's rule: var + eps == 0 gives invstd 0, so y = bias (not NaN)."""
    x, axis = _data(layout, rng, 0.0, 1.0)
    idx = [slice(None)] * x.ndim
    idx[axis] = 0
    x[tuple(idx)] = 7.0
    b = np.array([0.25, 0.0, 0.0], np.float32)
    y, mean, invstd = cbn.batch_norm(x, bias=b, training=True, eps=0.0, axis=axis,
                                     return_stats=True)
    assert invstd[0] == 0 and np.all(y[tuple(idx)] == np.float32(0.25))
    y = cbn.batch_norm(x, np.zeros(3), np.array([0.0, 1.0, 1.0]), bias=b, eps=0.0, axis=axis)
    assert np.all(y[tuple(idx)] == np.float32(0.25))
    dx, dw, db = cbn.batch_norm_backward(np.ones_like(x), x, mean, invstd, axis=axis)
    assert np.all(dx[tuple(idx)] == 0) and np.isfinite(dx).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_stay_in_their_channel(layout, bad, dtype, rng):
    x, axis = _data(layout, rng, 0.0, 1.0, dtype)
    idx = [0] * x.ndim
    idx[axis] = 2
    x_bad = x.copy()
    x_bad[tuple(idx)] = bad
    others = [slice(None)] * x.ndim
    others[axis] = slice(0, 2)
    chan = [slice(None)] * x.ndim
    chan[axis] = 2
    # training: the whole channel becomes NaN (as PyTorch: mean or var is non-finite)
    y_ref = cbn.batch_norm(x, training=True, axis=axis)
    y = cbn.batch_norm(x_bad, training=True, axis=axis)
    assert np.isnan(y[tuple(chan)]).all()
    np.testing.assert_array_equal(y[tuple(others)], y_ref[tuple(others)])
    mean, var = cbn.batch_stats(x_bad, axis=axis)
    assert np.isfinite(mean[:2]).all() and np.isfinite(var[:2]).all()
    assert not np.isfinite(var[2])
    # eval: only the bad element is non-finite
    rm, rv = np.zeros(3), np.ones(3)
    y = cbn.batch_norm(x_bad, rm, rv, axis=axis)
    y_ref = cbn.batch_norm(x, rm, rv, axis=axis)
    bad_mask = ~np.isfinite(x_bad)
    assert np.array_equal(~np.isfinite(y), bad_mask)
    if np.isnan(bad):
        assert np.isnan(y[bad_mask]).all()
    else:
        assert (y[bad_mask] == bad).all()
    np.testing.assert_array_equal(y[~bad_mask], y_ref[~bad_mask])
    # ReLU keeps NaN (max(NaN, 0) is NaN in PyTorch)
    yr = cbn.batch_norm(x_bad, rm, rv, axis=axis, relu=True)
    if np.isnan(bad):
        assert np.isnan(yr[bad_mask]).all()
    # backward: NaN in dy stays in its channel
    _, m, inv = cbn.batch_norm(x, training=True, axis=axis, return_stats=True)
    dy = np.ones_like(x)
    dy[tuple(idx)] = bad
    dx, dw, db = cbn.batch_norm_backward(dy, x, m, inv, axis=axis)
    dx0 = cbn.batch_norm_backward(np.ones_like(x), x, m, inv, axis=axis)[0]
    np.testing.assert_array_equal(dx[tuple(others)], dx0[tuple(others)])
    assert np.isfinite(dw[:2]).all() and np.isfinite(db[:2]).all()
    # the ReLU mask of the backward pass: a NaN output keeps its gradient (NaN <= 0 is
    # false, as in the oracle); the frozen-statistics gradient is then exact to check
    y_nan = yr.copy()
    dxr = cbn.batch_norm_backward(np.ones_like(x), x, rm, oracle.invstd(rv, 1e-5),
                                  training=False, y=y_nan, axis=axis)[0]
    want = oracle.batch_norm_backward(np.ones_like(x), x, rm, oracle.invstd(rv, 1e-5),
                                      training=False, y=y_nan, axis=axis)[0]
    assert np.array_equal(dxr == 0, want == 0)
    if np.isnan(bad):
        assert (dxr[bad_mask] != 0).all()


def test_float16_computed_in_float32_and_rounded_once(rng):
    """float16 near its range limit: no overflow inside, one rounding at the end."""
    x = np.clip(rng.standard_normal((64, 4, 8, 8)) * 2e4, -6e4, 6e4).astype(np.float16)
    x[:, 0] = 6.0e4
    x[0, 0] = -6.0e4
    y = cbn.batch_norm(x, training=True)
    ry = oracle.batch_norm(x, training=True)[0]
    assert np.isfinite(y).all()
    # exactly the float64 answer rounded to float16, but within float32's error of a tie
    direct = ry.astype(np.float16)
    assert np.mean(y == direct) > 0.999
    assert_within(y, ry, 2.0 ** -11 * np.abs(ry) * 1.01 + 3e-8)


@pytest.mark.parametrize("shape, axis", [((2, 1030, 3, 3), 1), ((3, 3, 1030), -1),
                                         ((5, 1030), 1), ((4, 2051), 1), ((64, 7), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_float32_columns_one_pass_table(shape, axis, dtype, n_threads, kernels, rng):
    """Float32 per-channel columns (or None) set up the float32 parameter table in one
    pass (cbn_params_f32); the same values as float64 columns take the general path
    (double columns, then the table).  Both give the same outputs bit for bit: variances
    across the float32 estimate's range and beyond it (the exact fallback), 0, inf and
    NaN; NaN and inf means and weights; eps 0 and 1e-5; None columns; scale_shift."""
    C = shape[axis]
    x = (rng.standard_normal(shape) * 3 + 0.5).astype(dtype)
    rm = (rng.standard_normal(C) * 2).astype(np.float32)
    rv = np.exp2(rng.uniform(-130, 126, C)).astype(np.float32)
    w = rng.uniform(-4, 4, C).astype(np.float32)
    b = rng.standard_normal(C).astype(np.float32)
    rv[::7], rv[1::11], rv[2::13] = 0.0, np.inf, np.nan
    rm[3::17], rm[4::19], w[5::23] = np.nan, -np.inf, np.nan

    def wide(a):
        return None if a is None else a.astype(np.float64)

    for cols in ((rm, rv, w, b), (rm, rv, None, None), (rm, rv, None, b)):
        for eps in (0.0, 1e-5):
            got = cbn.batch_norm(x, *cols, training=False, eps=eps, axis=axis,
                                 n_threads=n_threads)
            want = cbn.batch_norm(x, *map(wide, cols), training=False, eps=eps, axis=axis,
                                  n_threads=n_threads)
            assert got.dtype == dtype
            np.testing.assert_array_equal(got.view(np.uint16 if dtype == np.float16
                                                   else np.uint32),
                                          want.view(np.uint16 if dtype == np.float16
                                                    else np.uint32))
    got = cbn.scale_shift(x, w, b, axis=axis, n_threads=n_threads)
    want = cbn.scale_shift(x, wide(w), wide(b), axis=axis, n_threads=n_threads)
    np.testing.assert_array_equal(got, want)


def test_float64_precision_at_large_ratio(rng):
    x = 1e9 + rng.standard_normal((200, 5, 7))
    y = cbn.batch_norm(x, training=True)
    ry = oracle.batch_norm(x, training=True)[0]
    assert np.abs(y - ry).max() < 1e-6  # limited by x's own digits: 1e9 * 2**-53 ~ 1e-7


@pytest.mark.parametrize("shape, axis", [((2, 1030, 3, 3), 1), ((3, 3, 1030), -1),
                                         ((5, 1030), 1), ((4, 2051), 1)])
@pytest.mark.parametrize("n_threads", [1, 2])
def test_inference_scale_rounded_once(shape, axis, n_threads, rng):
    """float32 inference's per-channel scale weight / sqrt(var + eps) is the float64
    value rounded once (to within 2^-10 of half an ulp): x = 1 with mean 0 and bias 0
    gives it as the output.  Variances over 2^-140..2^140 with eps = 0 (float64
    running stats), so that the float32 estimate's range and the exact fallback both
    run, vectors mixing the two; then 0, inf and NaN among ordinary ones.  Channels
    beyond a chunk of 512 and a last partial vector; planar, channels-last and (N, C)
    (the last by columns)."""
    C = shape[axis]
    x = np.ones(shape, np.float32)
    rm = np.zeros(C)
    w = rng.uniform(-4, 4, C).astype(np.float32)
    for rv, eps in ((np.exp2(rng.uniform(-140, 140, C)), 0.0),
                    (rng.uniform(0, 3, C), 1e-5)):
        y = cbn.batch_norm(x, rm, rv, w, np.zeros(C), eps=eps, axis=axis,
                           n_threads=n_threads)
        ref = w.astype(np.float64) * (1.0 / np.sqrt(rv + eps))
        got = np.moveaxis(y, axis, -1).reshape(-1, C).astype(np.float64)
        half_ulp = 0.5 * np.spacing(np.abs(ref).astype(np.float32)).astype(np.float64)
        assert np.all(np.abs(got - ref) <= half_ulp * (1 + 2.0 ** -10))
    rv = rng.uniform(0.5, 2, C)
    rv[[0, 5, 9]] = 0.0, np.inf, np.nan
    y = cbn.batch_norm(x, rm, rv, w, np.zeros(C), eps=0.0, axis=axis, n_threads=n_threads)
    got = np.moveaxis(y, axis, -1).reshape(-1, C)
    np.testing.assert_array_equal(got[:, [0, 5, 9]], np.broadcast_to([0, 0, np.nan],
                                                                       (got.shape[0], 3)))
