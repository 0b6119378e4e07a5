"""Every public function against its slow float64 twin (tests/oracle.py).

Matrix: dtype x logical shape x memory layout x n_threads, with and without
ReLU; the output passes with plain and with streaming stores.  Error bounds are per element: k roundoffs of the result dtype times the
magnitude of the terms the result is made of (so cancellation is allowed for),
plus the accumulation allowance where batch statistics or the backward's sums enter
(conftest: float64 sums, and the float32 partials that float16 data and float32
backward sums take first).
"""

import contextlib

import numpy as np
import pytest

import cbn
import oracle
from conftest import (DTYPES, LAYOUTS, SHAPES, U64, assert_within, channel_shape,
                      compute_dtype, grad_sums_err, make_array, other_axes, per_channel, roundoff,
                      stats_mags, sums_err)

# Roundoffs allowed on top of the exact result, per output dtype: float16 is
# rounded once from float32 (half an ulp, plus float32's error: 1.01);
# float32/float64 take a few roundings (measured at most 4 for the forward pass,
# 3.5 for the backward).
K_OUT = {np.dtype(np.float16): 1.01, np.dtype(np.float32): 6, np.dtype(np.float64): 6}
K_GRAD = {np.dtype(np.float16): 1.01, np.dtype(np.float32): 8, np.dtype(np.float64): 8}

pytestmark = pytest.mark.usefixtures("kernels")  # every test on each kernel build


@contextlib.contextmanager
def _kernel_setting(name, value):
    """Run the body with the kernel setting `name` (a cbn._kernels setter such as
    eight_row_sums) at value, then put the old value back (checked both ways)."""
    from cbn import _dispatch
    setter = getattr(_dispatch.kernels, name)
    old = setter(value)
    try:
        assert setter() == value
        yield
    finally:
        setter(old)
    assert setter() == old




def full_matrix(test):
    """Parametrize over dtype x shape x layout x n_threads."""
    for mark in [pytest.mark.parametrize("n_threads", [1, 2]),
                 pytest.mark.parametrize("layout", LAYOUTS),
                 pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s))),
                 pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)]:
        test = mark(test)
    return test


def _rounded(dtype, k, mag):
    """k roundoffs of dtype relative to mag, plus half the subnormal spacing (float16
    results below 6e-5 are subnormal: their rounding error is absolute)."""
    return k * roundoff(dtype) * mag + float(np.finfo(dtype).smallest_subnormal) * 0.5


def _data(shape, layout, dtype, rng):
    x, axis = make_array(shape, layout, dtype, rng, scale=rng.uniform(0.1, 10),
                         offset=rng.uniform(-5, 5))
    C = x.shape[axis]
    params = dict(weight=rng.uniform(0.5, 2, C).astype(np.float32),
                  bias=rng.uniform(-1, 1, C).astype(np.float32))
    return x, axis, C, params


def _check_layout_kept(x, y):
    """A dense x gives an output laid out the same way (axis order of strides)."""
    if x.ndim and min(x.shape) > 1 and (x.flags.c_contiguous or x.flags.f_contiguous
                                        or np.moveaxis(x, 1, -1).flags.c_contiguous):
        assert np.argsort(x.strides).tolist() == np.argsort(y.strides).tolist()


@pytest.mark.usefixtures("streaming")
@full_matrix
def test_batch_norm_training(dtype, shape, layout, n_threads, rng):
    x, axis, C, params = _data(shape, layout, dtype, rng)
    rm0 = rng.standard_normal(C).astype(np.float32)
    rv0 = rng.uniform(0.5, 2, C).astype(np.float32)
    cs = channel_shape(x, axis)
    for relu in (False, True):
        rm, rv = rm0.copy(), rv0.copy()
        x_before = x.copy()
        y, mean, invstd = cbn.batch_norm(x, rm, rv, **params, training=True, axis=axis,
                                         relu=relu, return_stats=True, n_threads=n_threads)
        ry, rmean, rinv, nrm, nrv = oracle.batch_norm(x, rm0, rv0, **params, training=True,
                                                      axis=axis, relu=relu)
        np.testing.assert_array_equal(x, x_before)
        assert y.dtype == x.dtype and y.shape == x.shape
        assert mean.dtype == invstd.dtype == compute_dtype(dtype)
        _check_layout_kept(x, y)

        w, b = params["weight"].reshape(cs), params["bias"].reshape(cs)
        mx, dev2 = stats_mags(x, axis, rmean)
        var = oracle.batch_stats(x, axis)[1]
        xhat = (np.asarray(x, np.float64) - rmean.reshape(cs)) * rinv.reshape(cs)
        # float64 sums: the mean's error (against max |x|) and invstd's (half the
        # variance's, as checked below) reach y through xhat
        inv_err = sums_err(dtype) * (1 + dev2 / np.maximum(var, 1e-300)) / 2
        bound = (_rounded(dtype, K_OUT[x.dtype], np.abs(xhat * w) + np.abs(b))
                 + sums_err(dtype) * np.abs(w) * rinv.reshape(cs) * mx.reshape(cs)
                 + np.abs(xhat * w) * inv_err.reshape(cs))
        assert_within(y, ry, bound, f"y relu={relu}")

        cr = roundoff(compute_dtype(dtype)) * 1.01
        assert_within(mean, rmean, cr * np.abs(rmean) + sums_err(dtype) * mx, "mean")
        # invstd inherits half the relative error of the variance
        assert_within(invstd, rinv, rinv * (cr + sums_err(dtype) * (1 + dev2 / np.maximum(var, 1e-300))),
                      "invstd")
        n = x.size // C
        r32 = 1.01 * roundoff(np.float32)
        assert_within(rm, nrm, r32 * np.abs(nrm) + sums_err(dtype) * mx, "running_mean")
        assert_within(rv, nrv, r32 * np.abs(nrv) + sums_err(dtype) * (var + dev2) * n / (n - 1),
                      "running_var")


@pytest.mark.usefixtures("streaming")
@full_matrix
def test_batch_norm_eval(dtype, shape, layout, n_threads, rng):
    x, axis, C, params = _data(shape, layout, dtype, rng)
    rm = rng.uniform(-5, 5, C).astype(np.float32)
    rv = rng.uniform(0.01, 100, C).astype(np.float32)
    cs = channel_shape(x, axis)
    for relu in (False, True):
        y, mean, invstd = cbn.batch_norm(x, rm, rv, **params, axis=axis, relu=relu,
                                         return_stats=True, n_threads=n_threads)
        ry, rmean, rinv, _, _ = oracle.batch_norm(x, rm, rv, **params, axis=axis, relu=relu)
        assert y.dtype == x.dtype
        _check_layout_kept(x, y)
        xhat = (np.asarray(x, np.float64) - rmean.reshape(cs)) * rinv.reshape(cs)
        w, b = params["weight"].reshape(cs), params["bias"].reshape(cs)
        assert_within(y, ry, _rounded(dtype, K_OUT[x.dtype], np.abs(xhat * w) + np.abs(b)),
                      f"y relu={relu}")
        cr = 1.01 * roundoff(compute_dtype(dtype))
        assert_within(mean, rmean, cr * np.abs(rmean), "mean")
        assert_within(invstd, rinv, cr * rinv, "invstd")


@pytest.mark.usefixtures("streaming")
@full_matrix
def test_backward(dtype, shape, layout, n_threads, rng):
    x, axis, C, params = _data(shape, layout, dtype, rng)
    w = params["weight"]
    n = x.size // C
    cases = [(True, False), (True, True), (False, False), (False, True)]
    for training, relu in cases:
        if training and n < 2:
            continue
        if training:
            y, mean, invstd = cbn.batch_norm(x, **params, training=True, axis=axis, relu=relu,
                                             return_stats=True)
        else:
            rm = rng.uniform(-5, 5, C).astype(np.float32)
            rv = rng.uniform(0.01, 100, C).astype(np.float32)
            y, mean, invstd = cbn.batch_norm(x, rm, rv, **params, axis=axis, relu=relu,
                                             return_stats=True)
        dy = rng.standard_normal(x.shape).astype(dtype)
        _check_backward(dy, x, axis, mean, invstd, w, training, y if relu else None,
                        n_threads, f"training={training} relu={relu}")


def _check_backward(dy, x, axis, mean, invstd, w, training, y, n_threads, what):
    """cbn.batch_norm_backward against the float64 oracle, per element: the result's
    roundings and the sums' allowance (grad_sums_err) against the magnitudes summed."""
    dtype, C = x.dtype, x.shape[axis]
    cs = channel_shape(x, axis)
    axes = other_axes(x, axis)
    n = x.size // C
    dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, w, training=training, y=y,
                                         axis=axis, n_threads=n_threads)
    rdx, rdw, rdb = oracle.batch_norm_backward(dy, x, mean, invstd, w, training=training,
                                               y=y, axis=axis)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert dw.dtype == db.dtype == compute_dtype(dtype) and dw.shape == (C,)
    _check_layout_kept(x, dx)

    g = np.asarray(dy, np.float64)
    if y is not None:
        g = np.where(np.asarray(y, np.float64) <= 0, 0.0, g)
    xh = ((np.asarray(x, np.float64) - np.asarray(mean, np.float64).reshape(cs))
          * np.asarray(invstd, np.float64).reshape(cs))
    sg = np.abs(g).sum(axes, keepdims=True)
    sgx = np.abs(g * xh).sum(axes, keepdims=True)
    k = np.abs(np.asarray(w, np.float64).reshape(cs) * np.asarray(invstd, np.float64).reshape(cs))
    mag = k * (np.abs(g) + (sg + np.abs(xh) * sgx) / n) if training else k * np.abs(g)
    acc = grad_sums_err(dtype)
    assert_within(dx, rdx, _rounded(dtype, K_GRAD[dtype], mag) + acc * mag, "dx " + what)
    cr = 1.01 * roundoff(compute_dtype(dtype))
    assert_within(dw, rdw, (cr + acc) * sgx.ravel(), "dweight " + what)
    assert_within(db, rdb, (cr + acc) * sg.ravel(), "dbias " + what)


@pytest.mark.parametrize("shape", [(37, 1100), (301, 64), (5, 3)])
def test_backward_float32_sums_with_a_float64_mean(shape, rng):
    """float32 backward sums over interleaved rows take the mean rounded to float32 and
    put its float64 remainder back per group of 16 rows (cbn_rows_gsums32_f32).  A
    float64 mean at |mean|/std = 1e4 (its remainder up to 2**-11: without it, dbias
    times the remainder, about 1e-3 here, would exceed the bound by 100x), ReLU-masked
    and not, rows not a multiple of 16, rows wider than one 512-channel chunk, 1 and 2
    threads, against the float64 oracle."""
    x = (rng.standard_normal(shape) + 1e4).astype(np.float32)
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    assert np.any(mean.astype(np.float32) != mean)
    invstd = 1.0 / np.sqrt(x64.var(0) + 1e-5)
    w = rng.uniform(0.5, 2, shape[1])
    y = ((x64 - mean) * invstd).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    for t in (1, 2):
        for yy in (None, y):
            _check_backward(dy, x, 1, mean, invstd, w, True, yy, t,
                            f"threads={t} relu={yy is not None}")


@full_matrix
def test_batch_stats(dtype, shape, layout, n_threads, rng):
    x, axis, C, _ = _data(shape, layout, dtype, rng)
    mean, var = cbn.batch_stats(x, axis=axis, n_threads=n_threads)
    rmean, rvar = oracle.batch_stats(x, axis)
    assert mean.dtype == var.dtype == compute_dtype(dtype)
    mx, dev2 = stats_mags(x, axis, rmean)
    cr = 1.01 * roundoff(compute_dtype(dtype))
    assert_within(mean, rmean, cr * np.abs(rmean) + sums_err(dtype) * mx, "mean")
    assert_within(var, rvar, cr * rvar + sums_err(dtype) * (rvar + dev2), "var")


@pytest.mark.usefixtures("streaming")
@full_matrix
def test_scale_shift(dtype, shape, layout, n_threads, rng):
    x, axis, C, _ = _data(shape, layout, dtype, rng)
    scale = rng.standard_normal(C)
    shift = rng.standard_normal(C).astype(np.float32)
    cs = channel_shape(x, axis)
    for relu in (False, True):
        y = cbn.scale_shift(x, scale, shift, axis=axis, relu=relu, n_threads=n_threads)
        ry = oracle.scale_shift(x, scale, shift, axis=axis, relu=relu)
        assert y.dtype == x.dtype
        _check_layout_kept(x, y)
        mag = np.abs(np.asarray(x, np.float64) * scale.reshape(cs)) + np.abs(shift.reshape(cs))
        # scale is rounded to the compute dtype, then one multiply and one add
        assert_within(y, ry, _rounded(dtype, K_OUT[x.dtype], mag), f"relu={relu}")


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_fold(dtype, rng):
    C = 13
    rm, rv = rng.standard_normal(C).astype(dtype), rng.uniform(0, 3, C).astype(dtype)
    w, b = rng.standard_normal(C).astype(dtype), rng.standard_normal(C).astype(dtype)
    rv[0] = 0.0
    for args in [(rm, rv), (rm, rv, w), (rm, rv, w, b), (rm, rv, None, b)]:
        for eps in (1e-5, 0.0):
            scale, shift = cbn.fold(*args, eps=eps)
            rscale, rshift = oracle.fold(*args, eps=eps)
            want = np.float64 if dtype == np.float64 else np.float32
            assert scale.dtype == shift.dtype == want
            cr = 1.01 * roundoff(want)
            assert_within(scale, rscale, cr * np.abs(rscale), "scale")
            assert_within(shift, rshift, cr * (np.abs(rshift) + 0) + 4 * U64 * np.abs(
                np.asarray(rm, np.float64) * rscale), "shift")
    # eps == 0 and var == 0: invstd is 0, not inf (PyTorch's rule)
    scale, shift = cbn.fold(rm, rv, w, b, eps=0.0)
    assert scale[0] == 0 and shift[0] == b[0].astype(scale.dtype)


def test_fold_matches_eval_batch_norm(rng):
    """scale_shift(fold(...)) is batch_norm in eval mode."""
    x = rng.standard_normal((4, 6, 5, 5)).astype(np.float32)
    rm, rv = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    y = cbn.batch_norm(x, rm, rv, w, b)
    y2 = cbn.scale_shift(x, *cbn.fold(rm, rv, w, b))
    ry = oracle.batch_norm(x, rm, rv, w, b)[0]
    mag = np.abs(ry) + np.abs(b).reshape(1, 6, 1, 1) + np.abs(
        (x * (w / np.sqrt(rv + 1e-5)).reshape(1, 6, 1, 1)))
    assert_within(y, ry, 6 * roundoff(np.float32) * mag)
    assert_within(y2, ry, 6 * roundoff(np.float32) * mag)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_matches_finite_differences(dtype, rng):
    """The analytic gradients against central differences of the forward pass (float64)."""
    x = rng.standard_normal((3, 2, 2, 3))
    w, b = rng.uniform(0.5, 2, 2), rng.standard_normal(2)
    dy = rng.standard_normal(x.shape)
    for training in (True, False):
        rm, rv = rng.standard_normal(2), rng.uniform(0.5, 2, 2)
        for relu in (False, True):
            def loss(x_, w_, b_):
                if training:
                    y_ = cbn.batch_norm(x_, weight=w_, bias=b_, training=True, relu=relu)
                else:
                    y_ = cbn.batch_norm(x_, rm, rv, w_, b_, relu=relu)
                return float((y_ * dy).sum())

            y, mean, invstd = (cbn.batch_norm(x, weight=w, bias=b, training=True, relu=relu,
                                              return_stats=True) if training else
                               cbn.batch_norm(x, rm, rv, w, b, relu=relu, return_stats=True))
            dx, dw, db = cbn.batch_norm_backward(dy.astype(dtype), x.astype(dtype), mean,
                                                 invstd, w, training=training,
                                                 y=y.astype(dtype) if relu else None)
            h = 1e-6
            num_dx = np.zeros_like(x)
            for i in np.ndindex(x.shape):
                e = np.zeros_like(x)
                e[i] = h
                num_dx[i] = (loss(x + e, w, b) - loss(x - e, w, b)) / (2 * h)
            num_dw = np.array([(loss(x, w + h * np.eye(2)[c], b) - loss(x, w - h * np.eye(2)[c], b))
                               / (2 * h) for c in range(2)])
            num_db = np.array([(loss(x, w, b + h * np.eye(2)[c]) - loss(x, w, b - h * np.eye(2)[c]))
                               / (2 * h) for c in range(2)])
            tol = 1e-6 if dtype == np.float64 else 1e-5
            np.testing.assert_allclose(dx, num_dx, atol=tol * 10, rtol=tol)
            np.testing.assert_allclose(dw, num_dw, atol=tol * 10, rtol=tol)
            np.testing.assert_allclose(db, num_db, atol=tol * 10, rtol=tol)


# Interleaved rows narrower than 64 values are processed R = ceil(64 / C) at a time
# once there are 512 values or more, R rounded up to rows of whole 32-byte vectors
# (output passes) or of whole vectors of 8 values (sums) where those rows span at most
# 1344 bytes, with the rows % R left over handled on their own, and threads used above
# 32768 values; float32 sums use register tiles for rows under 512 values and arrays
# up to 2**21 values: shapes at each of these edges.  With rows rounded up, and rows
# left over in every dtype: 5 channels (R 16), 3 (float32 24, float16 32: 1001 and
# 700001 rows, the latter past 2**21 values, where the sums take rows of 512 bytes or
# more), 6 (12 or 16), 7 (12 or 16), 33 (float32 8: 264 values); 12 (float16 8, the
# others' 6 rows already whole); 63 kept at 2 (rounded up, they would span more than
# 1344 bytes).
FOLD_SHAPES = [(102, 5), (103, 5), (104, 5), (105, 5), (6557, 5), (8, 63), (9, 63),
               (10, 63), (9, 64), (5, 300), (517, 32), (1100, 33), (40000, 3), (40, 511),
               (40, 520), (70000, 32), (1001, 3), (777, 6), (3001, 7), (5003, 12),
               (700001, 3)]


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", FOLD_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_interleaved_row_groups(shape, dtype, n_threads, rng):
    for check in (test_batch_norm_training, test_batch_norm_eval, test_backward,
                  test_batch_stats, test_scale_shift):
        check(dtype, shape, "C", n_threads, rng)


@pytest.mark.parametrize("tiled", [False, True], ids=["rows", "tiled"])
@pytest.mark.parametrize("shape", [(70000, 32), (11000, 200), (2200, 1000)], ids=str)
def test_interleaved_statistics_from_memory_both_walks(shape, tiled, kernels, rng):
    """float32 statistics over more than 2**21 values take the register tiles or one
    row per step depending on the CPU (tiled_from_memory): both walks against the
    float64 oracle, on 1 and 2 threads (training and statistics; the backward sums
    do not switch)."""
    with _kernel_setting("tiled_from_memory", tiled):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_batch_stats):
                check(np.float32, shape, "C", t, rng)


@pytest.mark.parametrize("shape", [(35000, 64), (22000, 96), (10600, 200), (2100, 1000)],
                         ids=str)
def test_interleaved_float16_statistics_walks(shape, rng):
    """float16 statistics over more than 2**21 values walk about 8 KB of each row's
    values at a time, at least 16 rows (cbn_hwalk_stats): 64 rows of 64 channels, 42
    of 96 (walks not a multiple of the 16-row float32 groups, and each thread's rows
    not a multiple of the walk), 20 of 200, 16 of 1000; against the float64 oracle on
    1 and 2 threads, with the training pass that takes the same sums (and the backward,
    whose sums keep their 16-row walks)."""
    for t in (1, 2):
        for check in (test_batch_stats, test_batch_norm_training, test_backward):
            check(np.float16, shape, "C", t, rng)


@pytest.mark.parametrize("eight", [False, True], ids=["tiles", "eight"])
@pytest.mark.parametrize("shape", [(70000, 32), (2200, 1000), (203, 1027), (1500, 600),
                                   (9001, 61), (32771, 64)], ids=str)
def test_interleaved_sums_eight_rows(shape, eight, kernels, rng):
    """float32 interleaved sums go eight rows per step on Intel and AMD Zen 5 CPUs
    (eight_row_sums): statistics beyond L2 or in rows of 512 values or more (Zen 5:
    256, and 32 with the AVX-512 sums, which test_interleaved_float32_sums_avx512
    compares with these loops bit for bit), unmasked
    backward sums too up to 2**22 values per array (on Zen 5 masked too, at any size;
    without eight rows they go in float32 partials); on AMD Zen 4 only beyond L2 in rows
    under 512 values (eight_row_width), which the eight-row case lifts here so that
    every CPU runs the loop on every shape.  Both choices against the float64
    oracle on 1 and 2 threads: rows not a multiple of 8 (in each thread's 64-row
    blocks), channels not a multiple of 4, wide rows in cache and from memory, folded
    narrow rows (statistics past 2**21 values in rows of at least 512 bytes: 70000x32
    four rows to one, 32771x64 two with a row left over); backward masked and not
    (masked from memory: one row per step, prefetching ahead of each row)."""
    from cbn import _dispatch
    width = None if eight else _dispatch.kernels.eight_row_width()
    with _kernel_setting("eight_row_sums", eight), _kernel_setting("eight_row_width", width):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_batch_stats, test_backward):
                check(np.float32, shape, "C", t, rng)


@pytest.mark.parametrize("sixteen", [False, True], ids=["before", "sixteen"])
@pytest.mark.parametrize("shape", [(203, 1027), (1500, 600), (300, 1024), (9001, 61),
                                   (3001, 64), (12544, 64), (777, 40), (100, 17), (64, 16),
                                   (2200, 1000)], ids=str)
def test_interleaved_statistics_sixteen_channel_tiles(shape, sixteen, kernels, rng):
    """float32 interleaved statistics over at most 2**21 values go in tiles of 16
    channels on AMD Zen 4 (sixteen_channel_tiles), walking 8 rows at a time in rows of
    512 values or more (1500x600, 300x1024) or beyond 1 MB per thread (12544x64), else
    all of a block's rows (3001x64, 777x40, 100x17, 64x16: folded narrow rows);
    channels not a multiple of 16 (the 8-channel tiles and the one-row loop take the
    last: 1027, 600, 40 folded, 17 folded, 61 folded to 122), by columns (203x1027,
    300x1024), rows not a multiple of 8; 2200x1000 (past 2**21 values) keeps the other
    loops.  Both choices against the float64 oracle on 1 and 2 threads, training and
    statistics (the backward sums do not switch)."""
    with _kernel_setting("sixteen_channel_tiles", sixteen):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_batch_stats):
                check(np.float32, shape, "C", t, rng)


@pytest.mark.parametrize("eight", [False, True], ids=["tiles", "eight"])
@pytest.mark.parametrize("shape", [(70000, 32), (2200, 1000), (203, 1027), (1500, 600),
                                   (9001, 61), (3001, 136), (3001, 64), (16391, 128),
                                   (21847, 96)], ids=str)
def test_interleaved_float16_sums_eight_rows(shape, eight, kernels, rng):
    """float16 interleaved sums go eight rows per step on Intel and AMD Zen 4 CPUs
    (eight_row_sums_f16: float32 partial sums, into float64 every 32 rows, one call over
    a thread's rows): from memory with the prefetch stream (70000x32, 2200x1000; 9001x61
    on one thread), in L2 in rows of 64 values or more (3001x64, 3001x136, 9001x61
    folded eight rows to one), past 2**21 values in rows folded to at least 512 bytes
    (70000x32 eight rows to one, 16391x128 two, 21847x96 three, each with a row left
    over but the first), rows by columns (203x1027), a thread's rows not a multiple
    of 8 or 32, channels not a multiple of 8; statistics, and backward sums masked and
    not.  Both choices against the float64 oracle on 1 and 2 threads."""
    with _kernel_setting("eight_row_sums_f16", eight):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_batch_stats, test_backward):
                check(np.float16, shape, "C", t, rng)


def _cpu_flag(name):
    """Whether /proc/cpuinfo lists the CPU flag name; None where it cannot be read."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(name in line.split() for line in f if line.startswith("flags"))
    except OSError:
        return None


@contextlib.contextmanager
def _avx512_setting(name, kernels):
    """The body with the AVX-512F kernel setting `name` (wide_sums, wide_halves) turned
    on; it gets (the setter, the old value), or None where the setting refuses True
    (only where the CPU does not run AVX-512F, or in the baseline build).  The old value
    is put back (checked)."""
    from cbn import _dispatch
    setter = getattr(_dispatch.kernels, name)
    old = setter(True)
    try:
        if setter():
            assert kernels == "avx2"
            yield setter, old
        else:
            assert kernels == "baseline" or _cpu_flag("avx512f") is not True
            yield None
    finally:
        setter(old)
    assert setter() == old


@contextlib.contextmanager
def _setting_off(name):
    """The body with the kernel setting `name` (a flag) off; then put back (checked)."""
    from cbn import _dispatch
    setter = getattr(_dispatch.kernels, name)
    old = setter(False)
    try:
        yield
    finally:
        setter(old)
    assert setter() == old


@pytest.mark.parametrize("shape, layout", [((3001, 64), "C"), ((30, 64), "C"),
                                           ((40001, 64), "C"), ((2, 32, 33, 35), "last"),
                                           ((1, 16, 57, 61), "last"), ((3, 8, 41, 43), "last"),
                                           ((300001, 4), "C"), ((5, 64, 9, 11), "last")],
                         ids=str)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
def test_register_sums(shape, layout, dtype, kernels, rng):
    """float32 and float64 interleaved statistics and backward sums over rows of 64
    channels kept in AVX-512F registers (register_sums; on by default on AMD Zen 5, in
    the AVX2 build only; cbn_rows64_sums_f32_512, cbn_rows64_gsums_f32_512 and the _f64
    ones), and with the setting off (float32: the eight-row loops or the register tiles;
    float64: the one-row loops): statistics, training and the backward
    (masked and not) against the float64 oracle on 1 and 2 threads.  Rows of 64
    channels (one block of rows: 30; in L2; 40001 rows, whose threads' backward sums go
    through the mid-block), and narrow rows folded into rows of 64 values (32, 16, 8 and
    4 channels), row counts odd.  The float32 statistics take these loops only where a
    thread's rows span more than ROWS8_NEAR bytes in an array of at most TILED_MAX
    values (300001x4; beyond it, 40001x64, rows of 64 channels are summed 128 values at
    a time); the float64 ones at every size.  Where the setting refuses True (no AVX-512F, the baseline build),
    the default loops against the oracle."""
    with _avx512_setting("register_sums", kernels) as on:
        for flag in (True, False) if on else (None,):
            if on:
                on[0](flag)
            for t in (1, 2):
                test_batch_stats(dtype, shape, layout, t, rng)
                test_batch_norm_training(dtype, shape, layout, t, rng)
                test_backward(dtype, shape, layout, t, rng)


def _on_and_off(setter, run):
    """run()'s results with the setting on, then off (it is left on)."""
    got = run()
    setter(False)
    want = run()
    setter(True)
    return got, want


@pytest.mark.parametrize("shape", [(256, 1024), (1003, 259), (77, 1027), (30001, 44),
                                   (70000, 32), (3001, 64), (4001, 40)], ids=str)
def test_interleaved_float32_sums_avx512(shape, kernels, rng):
    """The eight-row float32 sums in AVX-512F vectors (wide_sums; taken by default on
    AMD Zen 5, in the AVX2 build only) give bit-identical statistics, training outputs
    and backward results (masked, with NaN in y, and not) to the AVX2 loops, on 1 and 2
    threads: rows in cache and from memory (70000x32, with the prefetch), channels not a
    multiple of 8 (259, 1027) or of 4 (259; 44 leaves 4 to the AVX2 loop), rows not a
    multiple of 8; and against the float64 oracle.  Rows under 256 values in L2
    (3001x64, 4001x40) take the AVX-512 loop's statistics but the register tiles
    without it: there the statistics are checked against the oracle only (the
    backward sums take eight rows both ways on Zen 5).  Where the setting is not on
    by default (CPUs other than Zen 5, where it changes which loops run), the
    oracle alone.  Where the CPU does not run AVX-512F, or in the baseline build,
    the setting refuses True.  The sums in registers over rows of 64 channels
    (register_sums: 3001x64, 70000x32 folded) are off throughout, so that those rows
    take the eight-row loops (test_register_sums)."""
    with _avx512_setting("wide_sums", kernels) as on, _setting_off("register_sums"):
        if on is None:
            return
        wide, old = on
        x = (100.0 + 3.0 * rng.standard_normal(shape)).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        y = rng.standard_normal(shape).astype(np.float32)
        y[::3] = np.nan
        mean, var = oracle.batch_stats(x, 1)
        invstd = (1.0 / np.sqrt(var + 1e-5)).astype(np.float32)
        for t in (1, 2):
            def run():
                out = list(cbn.batch_stats(x, axis=1, n_threads=t))
                out.append(cbn.batch_norm(x, training=True, axis=1, n_threads=t))
                for yy in (None, y):
                    out += cbn.batch_norm_backward(dy, x, mean, invstd, y=yy, axis=1,
                                                   n_threads=t)
                return out
            got, want = _on_and_off(wide, run)
            # on by default (AMD Zen 5): both settings take eight rows where compared
            exact = old and (shape[1] >= 256 or shape[0] * shape[1] > 1 << 20)
            for a, b in zip(got if exact else got[3:] if old else [],
                            want if exact else want[3:]):
                np.testing.assert_array_equal(a, b)
            test_batch_stats(np.float32, shape, "C", t, rng)
            test_batch_norm_training(np.float32, shape, "C", t, rng)
            test_backward(np.float32, shape, "C", t, rng)


def _wide_passes_identical(name, dtype, shape, layout, kernels, rng, checks):
    """With the AVX-512F kernel setting `name` on and off (_avx512_setting): statistics,
    inference and scale_shift with and without ReLU (NaN in x: ReLU keeps it), training,
    and the backward (training and not, masked with NaN in y and not) give bit-identical
    results on 1 and 2 threads; then each of `checks` against the float64 oracle.  Where
    the CPU does not run AVX-512F, or in the baseline build, the setting refuses True."""
    with _avx512_setting(name, kernels) as on:
        if on is None:
            return
        wide = on[0]
        x, axis = make_array(shape, layout, dtype, rng, scale=3.0, offset=1.0)
        dy = make_array(shape, layout, dtype, rng)[0]
        y = make_array(shape, layout, dtype, rng)[0]
        y[..., ::3] = np.nan
        xn = x.copy()
        xn[..., ::5] = np.nan
        C = shape[1]
        w, b = per_channel(C, rng), per_channel(C, rng, lo=-1.0, hi=1.0)
        rm, rv = per_channel(C, rng, lo=-1.0, hi=1.0), per_channel(C, rng)
        mean, var = oracle.batch_stats(x, axis)
        invstd = (1.0 / np.sqrt(var + 1e-5)).astype(np.float32)
        for t in (1, 2):
            def run():
                out = list(cbn.batch_stats(x, axis=axis, n_threads=t))
                for relu in (False, True):
                    out.append(cbn.batch_norm(xn, rm, rv, w, b, axis=axis, relu=relu,
                                              n_threads=t))
                    out.append(cbn.scale_shift(xn, w, b, axis=axis, relu=relu, n_threads=t))
                    out.append(cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis,
                                              relu=relu, n_threads=t))
                for training in (True, False):
                    for yy in (None, y):
                        out += cbn.batch_norm_backward(dy, x, mean, invstd, w, y=yy,
                                                       training=training, axis=axis,
                                                       n_threads=t)
                return out
            got, want = _on_and_off(wide, run)
            assert len(got) == len(want) == 20
            for a, b_ in zip(got, want):
                np.testing.assert_array_equal(a.view(np.uint8), b_.view(np.uint8))
            for check in checks:
                check(dtype, shape, layout, t, rng)


@pytest.mark.parametrize("shape, layout", [((2, 8, 56, 56), "C"), ((3, 5, 17, 19), "C"),
                                           ((2, 40, 14, 14), "C"), ((4, 6, 7, 7), "C"),
                                           ((5, 3, 4, 4), "C"), ((5, 3, 3, 5), "C"),
                                           ((1, 24, 56, 56), "C"), ((1, 64, 56, 56), "last"),
                                           ((3, 40, 9, 9), "last"), ((7, 17, 5, 5), "last"),
                                           ((333, 48), "C"), ((61, 1040), "C")], ids=str)
def test_float16_passes_avx512(shape, layout, kernels, rng):
    """The float16 passes in cache in AVX-512F vectors of 16 (wide_halves; on by default
    on AMD Zen 5, in the AVX2 build only): planar runs (a whole number of vectors and
    not: 3136, 323 values; short ones of 196, 49 and 16 values, and of 15: the AVX2
    passes), channels-last rows of 16k channels (64, 48, folded 40 and 24), rows that
    leave 8 channels to the AVX2 tiles (40, 1040) or are no whole vector (17, folded 16
    rows to 272 values: the 15 rows left over, in the AVX2 passes), an odd last row: as
    _wide_passes_identical."""
    _wide_passes_identical("wide_halves", np.float16, shape, layout, kernels, rng,
                           (test_batch_stats, test_batch_norm_eval, test_batch_norm_training,
                            test_backward))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(700, 100), (300, 100), (51, 13), (40, 250), (3, 61),
                                   (16, 9), (333, 17), (500, 101)], ids=str)
def test_rows_not_whole_vectors(shape, dtype, rng):
    """Interleaved rows in cache that are no whole number of vectors.  float16 rows of
    more than 8 values, not a multiple of 8: each row in vectors from its first value and
    one more over its last 8, computed before any of the row's stores (cbn_rows_affine_f16,
    cbn_rows_dx_f16), and the channels the sums' tiles leave (100: 4, 250: 10 or 2, 61:
    13 or 5) a group of rows per float32 call (cbn_rows_sums_f16, cbn_rows_gsums_f16,
    groups of 256 // m rows and a shorter last one).  float32 and float64: the channels
    the register tiles leave (100: 4, 101: 5 or 1, 250: 2, 61: 5 or 1, 9: 1) in one
    masked vector per row (CBN_TAIL_AFFINE, CBN_TAIL_DX).  Rows of 100 and 101 (on two
    threads at 500 and 700 rows), 250, 61 (too few values to fold), 9, 13 and 17 folded to
    whole vectors with rows left over (51 = 3 * 16 + 3, 333 = 20 * 16 + 13).  In place
    (out=x; the backward out=dy and out=x) equals out apart bit for bit on 1 and 2
    threads, and every op holds against the float64 oracle."""
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    C = shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.uniform(0.5, 2, C), rng.uniform(-1, 1, C)
    for t in (1, 2):
        _, mean, invstd = cbn.batch_norm(x, weight=w, bias=b, training=True,
                                         return_stats=True, n_threads=t)
        y = cbn.batch_norm(x, rm, rv, w, b, n_threads=t)
        calls = [lambda a, o, relu=relu: cbn.batch_norm(a, rm, rv, w, b, relu=relu, out=o,
                                                        n_threads=t)
                 for relu in (False, True)]
        calls += [lambda a, o: cbn.batch_norm(a, weight=w, bias=b, training=True, out=o,
                                              n_threads=t),
                  lambda a, o: cbn.scale_shift(a, w, b, relu=True, out=o, n_threads=t)]
        for f in calls:
            a = x.copy()
            np.testing.assert_array_equal(f(a, a).view(np.uint8),
                                          f(x, np.empty_like(x)).view(np.uint8))
        for yy in (None, y):
            want = cbn.batch_norm_backward(dy, x, mean, invstd, w, y=yy, n_threads=t)
            for on_x in (False, True):
                d, xx = dy.copy(), x.copy()
                got = cbn.batch_norm_backward(d, xx, mean, invstd, w, y=yy, n_threads=t,
                                              out=xx if on_x else d)
                for g, h in zip(got, want):
                    np.testing.assert_array_equal(g.view(np.uint8), h.view(np.uint8))
    _check_every_op(dtype, shape, rng)
    for t in (1, 2):
        test_batch_stats(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("shape, layout", [((256, 1024), "C"), ((77, 1027), "C"),
                                           ((33, 1040), "C"), ((301, 400), "C"),
                                           ((9, 4100), "C"), ((40, 2048), "C"),
                                           ((2, 1024, 7, 7), "last"), ((3001, 64), "C"),
                                           ((3, 32, 17, 19), "last"), ((5, 96, 9, 9), "last"),
                                           ((4, 128, 7, 7), "last"), ((7, 48, 6, 6), "last"),
                                           ((3, 80, 5, 7), "last"), ((2, 112, 5, 5), "last"),
                                           ((301, 144), "C")],
                         ids=str)
def test_float32_rows_avx512(shape, layout, kernels, rng):
    """The float32 output passes over interleaved rows in cache that do not take the
    register tiles (rows of 342 values or more) in AVX-512F vectors of 16 (wide_rows; on
    by default on AMD Zen 5, in the AVX2 build only): rows a whole number of vectors and
    not (1027, 1040, 400, 4100 values), each row's output at its own offset in a cache
    line (1027, 4100), few wide rows that go by columns (9x4100, 40x2048 inference),
    channels-last; contiguous rows of 64 to 128 values, a multiple of 16, as one run with
    the tables in registers (64: 3001x64, 32 channels folded; 80, 96, 112, 128, 48
    folded to 96; dx: 64 only), the run's first values before an aligned store and its
    last ones (fewer than a row) in masked vectors; and rows of 144 values, which keep
    the tiles: as _wide_passes_identical."""
    _wide_passes_identical("wide_rows", np.float32, shape, layout, kernels, rng,
                           (test_batch_norm_eval, test_batch_norm_training, test_backward))


def test_interleaved_backward_sums_beyond_eight_rows(kernels, rng):
    """float32 backward sums over more than 2**22 values per array go in float32
    partials (cbn_rows_gsums32_f32; on AMD Zen 5 eight rows per step): against the
    float64 oracle on 1 and 2 threads, masked and not (65600 rows of 64 channels)."""
    for t in (1, 2):
        test_backward(np.float32, (65600, 64), "C", t, rng)


@pytest.mark.parametrize("back", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(70000, 32), (9001, 61), (2200, 1000), (3001, 64),
                                   (257, 1000)], ids=str)
def test_interleaved_second_pass_reversed(shape, dtype, back, rng):
    """Interleaved training and backward write rows that are not streamed in 32 KB
    blocks from the last (second_pass_reversed): rows beyond L2 not a multiple of the
    block, folded narrow rows with a leftover row, wide rows; register-tiled rows
    within L2 (3001x64, 257x1000); both walks against the float64 oracle on 1 and 2
    threads."""
    with _kernel_setting("second_pass_reversed", back):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_backward):
                check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("limit", [None, 1 << 16], ids=["any", "64KB"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_interleaved_reversed_rows_to(limit, dtype, rng):
    """Interleaved second passes walk from their last rows only while a thread's rows of
    x span at most reversed_rows_to bytes (None: any), as on Zen 4 (1 MB): with 64 KB
    these shapes (0.1-1 MB) walk forward, and with no limit reversed, register-tiled and
    folded rows with a leftover row among them; against the float64 oracle on 1 and 2
    threads."""
    with _kernel_setting("second_pass_reversed", True), \
            _kernel_setting("reversed_rows_to", limit):
        for shape in [(9001, 7), (3001, 64), (257, 1000)]:
            for t in (1, 2):
                for check in (test_batch_norm_training, test_backward):
                    check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("back", [False, True], ids=["forward", "reversed"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(5, 8, 23, 29), (7, 6, 3, 64), (2, 12, 40, 40)], ids=str)
def test_planar_second_pass_reversed(shape, dtype, back, streaming, rng):
    """Planar training and backward on channels of one task each write a channel's
    runs from its last plane back (second_pass_reversed), streamed or not: odd runs of
    667 values in 5 planes, 7 runs of 192, 2 planes of 1600; both walks against the
    float64 oracle on 1 and 2 threads (channels a multiple of 2: not split)."""
    with _kernel_setting("second_pass_reversed", back):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_backward):
                check(dtype, shape, "C", t, rng)


def _check_every_op(dtype, shape, rng):
    """Inference, training, backward and scale_shift on C-ordered data of shape against
    the float64 oracle, on 1 and 2 threads."""
    for t in (1, 2):
        for check in (test_batch_norm_eval, test_batch_norm_training, test_backward,
                      test_scale_shift):
            check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("tiled", [None, 1 << 40], ids=["per-thread", "all"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(70000, 32), (9001, 61), (2200, 1000), (4099, 200)],
                         ids=str)
def test_interleaved_output_tiled_in_cache(shape, dtype, tiled, rng):
    """Interleaved output passes store through the register tiles up to 1 MB per
    thread, and beyond while their arrays total at most 5/8 of the last-level cache
    (tiled_stores_to; None: per thread only).  Both choices, on arrays over 1 MB,
    against the float64 oracle on 1 and 2 threads: inference, training, backward and
    scale_shift; folded narrow rows (9001x61), rows too wide for tiles (2200x1000),
    float32 rows of 25 vectors (4099x200: tiles of four vectors and of one)."""
    with _kernel_setting("tiled_stores_to", tiled):
        _check_every_op(dtype, shape, rng)


@pytest.mark.parametrize("fold", [False, True], ids=["wide", "tile"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(517, 16), (1001, 8), (333, 32), (4097, 4), (2049, 1),
                                   (70001, 16), (1203, 24)], ids=str)
def test_interleaved_rows_fold_to_tiles(shape, dtype, fold, rng):
    """Narrow interleaved rows stored through the register tiles go as rows of one
    tile's width where their channels divide it (fold_to_tiles), else R rows of WIDE
    values or more: both choices against the float64 oracle on 1 and 2 threads, with
    leftover rows (517x16, 1001x8, 4097x4, 2049x1 in every dtype's fold), rows of
    exactly one tile (333x32 float32), 4.5 MB of them (70001x16) and rows that do not
    divide it (1203x24)."""
    with _kernel_setting("fold_to_tiles", fold):
        _check_every_op(dtype, shape, rng)


@pytest.mark.parametrize("block", [None, 1, 3], ids=["4KiB", "1", "3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1001, 64), (3001, 100), (257, 200), (5000, 32)], ids=str)
def test_interleaved_tile_blocks(shape, dtype, block, rng):
    """Register-tiled rows that span several tiles go in blocks of at most
    tile_block_rows rows (Zen 4: 3), else as many as fit 4 KiB: every limit against the
    float64 oracle on 1 and 2 threads, rows of two or more tiles with a last block short
    of the limit (1001x64, 257x200), tiles of four vectors and of one (3001x100), and the
    backward's narrower tiles on rows of one output tile (5000x32)."""
    with _kernel_setting("tile_block_rows", block):
        _check_every_op(dtype, shape, rng)


@pytest.mark.parametrize("pf, stream", [(None, False), (0, False), (0, True)],
                         ids=["head", "next-run", "stream"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(3, 18, 1030), (2, 16, 4099), (5, 4, 2, 1500)], ids=str)
def test_planar_sums_prefetch_next_run(shape, dtype, pf, stream, rng):
    """Planar sums over runs of 1024+ values prefetch each block's counterpart in the
    next run when a call's arrays are large (prefetch_runs_from; 0: always, None:
    never, the next run's head only), or, with prefetch_stream (Intel CPUs), as a
    stream 2048 values ahead that goes on into the next run (runs of 1030 and 1500
    values: all of it in the next run; 4099: from the middle of a block on).  Each walk
    against the float64 oracle on 1 and 2 threads for statistics, training and backward
    (masked and not): runs not a multiple of the 1024-value block, the last run of each
    channel."""
    with _kernel_setting("prefetch_runs_from", pf), _kernel_setting("prefetch_stream", stream):
        for t in (1, 2):
            for check in (test_batch_norm_training, test_batch_stats, test_backward):
                check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_planar_short_runs(dtype, kernels, rng):
    """Planar output runs under 512 bytes go whole vectors from each run's first value,
    the last one overlapping the one before (short_runs_below; None: never).  Every run
    length from 1 to 130 values, on 1 and 2 threads, out apart from x and in place:
    inference with and without ReLU, training, backward (dx with and without the ReLU
    mask) equal the plain passes' results bit for bit (the same arithmetic per value,
    dx's multiply-adds in one order: CBN_DXV), and the float64 oracle holds for runs of
    7, 49 and 100 values."""
    from cbn import _dispatch
    K = _dispatch.kernels

    def calls(x, dy, rm, rv, t, in_place):
        o = (lambda a: a.copy()) if in_place else (lambda a: np.empty_like(a))
        out = []
        for relu in (False, True):
            a = o(x)
            out.append(cbn.batch_norm(a if in_place else x, rm, rv, relu=relu, n_threads=t,
                                      out=a))
        a = o(x)
        y, mean, invstd = cbn.batch_norm(a if in_place else x, training=True, n_threads=t,
                                         out=a, return_stats=True)
        out.append(y.copy())
        for yy in (None, y):
            a = o(dy)
            out.append(cbn.batch_norm_backward(a if in_place else dy, x, mean, invstd,
                                               y=yy, n_threads=t, out=a)[0])
        return out

    old = K.short_runs_below()
    assert old == 512
    try:
        for inner in range(1, 131):
            shape = (3, 2, inner) if inner % 7 else (4, 33, inner)
            x = rng.standard_normal(shape).astype(dtype)
            dy = rng.standard_normal(shape).astype(dtype)
            rm, rv = rng.standard_normal(shape[1]), rng.uniform(0.5, 2, shape[1])
            for t in (1, 2):
                for in_place in (False, True):
                    K.short_runs_below(None)
                    ref = calls(x, dy, rm, rv, t, in_place)
                    K.short_runs_below(old)
                    got = calls(x, dy, rm, rv, t, in_place)
                    for k in range(5):
                        np.testing.assert_array_equal(
                            got[k], ref[k], f"output {k}, runs of {inner}, {t} threads, "
                            f"in place {in_place}")
    finally:
        K.short_runs_below(old)
    for shape in [(3, 5, 7), (2, 40, 7, 7), (2, 9, 100)]:
        _check_every_op(dtype, shape, rng)


@pytest.mark.parametrize("fused", [None, 512], ids=["fused", "two-phase"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 300, 7, 7), (3, 5, 13), (2, 9, 16, 16), (1, 7, 511),
                                   (1, 3, 512)], ids=str)
def test_planar_training_few_values(shape, dtype, fused, rng):
    """Planar training on channels of fewer than 512 values computes the statistics of
    all channels first, then one output pass (fused_training_from; None: each channel
    fused).  Both choices against the float64 oracle on 1, 2 and 3 threads (with ReLU,
    running statistics, the returned mean and invstd): one sample and several, the
    last channel size below the threshold and the first at it."""
    with _kernel_setting("fused_training_from", fused):
        for t in (1, 2, 3):
            test_batch_norm_training(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("below", [None, 512], ids=["per-channel", "two-phase"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 300, 7, 7), (3, 5, 13), (2, 9, 5, 5), (24, 3, 7, 7),
                                   (1, 7, 127), (2, 3, 128), (3, 4, 255), (2, 3, 256),
                                   (4, 6, 1)], ids=str)
def test_planar_short_runs_two_phase(shape, dtype, below, rng):
    """Planar float32 and float16 training and backward over runs under 512 bytes take
    all channels' sums, then one output pass (two_phase_below; None: a task per
    channel, for training from 512 values per channel, fused_training_from).  Both
    choices against the float64 oracle on 1, 2 and 3 threads (training with ReLU and
    running statistics; backward with training and frozen statistics, with and without
    the ReLU mask): one sample and several, channels of fewer and more than 512 values,
    the last run length below the threshold and the first at it (127 and 128 values of
    float32, 255 and 256 of float16), and rows (inner 1, not planar)."""
    with _kernel_setting("two_phase_below", below):
        for t in (1, 2, 3):
            test_batch_norm_training(dtype, shape, "C", t, rng)
            test_backward(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("to", [None, 1024, 1 << 20], ids=["never", "default", "always"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 67, 640), (2, 67, 256), (1, 67, 1100)], ids=str)
def test_planar_pipelined_tasks(shape, dtype, to, rng):
    """Planar training and backward's per-channel tasks take the next channel's sums
    before this channel's output pass up to pipelined_to values per channel (all arrays
    read; None: never).  Each choice against the float64 oracle on 1, 2 and 3 threads
    (ranges of 22-67 channels per thread, 67 not a multiple of either): training with
    ReLU and running statistics, backward with training and frozen statistics, masked
    and not; channels of 512-1100 values, whose backward (2 or 3 arrays) lies on either
    side of the default."""
    with _kernel_setting("pipelined_to", to):
        for t in (1, 2, 3):
            test_batch_norm_training(dtype, shape, "C", t, rng)
            test_backward(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("by_runs", [False, True], ids=["per-run", "runs"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(50, 3, 25), (40, 3, 5, 5), (30, 4, 3), (9, 2, 127),
                                   (5, 3, 64), (1, 6, 49), (70, 2, 17)], ids=str)
def test_planar_sums_by_runs(shape, dtype, by_runs, rng):
    """Planar sums over short runs (under 512 bytes, more than one sample) take a
    channel's runs 1024 values at a time in one call (runs_sums; False: a call per
    run).  Both choices against the float64 oracle on 1, 2 and 3 threads: statistics,
    training, backward masked and not; runs of 3 values (no vector), 17, 25, 64 and
    127 (float16: 32-value loops, 8 at a time, the last 0-7 one by one), one block per
    channel and several (50 x 25, 70 x 17), one sample."""
    with _kernel_setting("runs_sums", by_runs):
        for t in (1, 2, 3):
            for check in (test_batch_stats, test_batch_norm_training, test_backward):
                check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "stream"])
@pytest.mark.parametrize("fma", [False, True], ids=["plain", "fma"])
@pytest.mark.parametrize("shape", [(1, 3, 5001), (4, 8, 300), (40, 3, 25), (1, 6, 49),
                                   (2, 5, 97, 101)], ids=str)
def test_planar_sums_fma_or_plain_adds(shape, fma, stream, kernels, rng):
    """float32 planar sums add as FMAs on AMD CPUs and plainly elsewhere (fma_adds),
    the streamed ones (prefetching ahead: runs of 1024 values or more) too.  Both
    choices against the float64 oracle on 1 and 2 threads: statistics, training,
    backward masked and not; long runs (one call per run, rests of 1-15 values), short
    runs taken several per call (40 x 25), one sample; with stream, every call's runs
    of 1024+ values (5001, 9797) through the streamed sums."""
    with _kernel_setting("fma_adds", fma), \
            _kernel_setting("prefetch_runs_from", 0 if stream else None), \
            _kernel_setting("prefetch_stream", stream):
        for t in (1, 2):
            for check in (test_batch_stats, test_batch_norm_training, test_backward):
                check(np.float32, shape, "C", t, rng)


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "stream"])
@pytest.mark.parametrize("shape", [(3, 16, 1000), (40, 3, 25), (1, 6, 49), (2, 4, 3001)],
                         ids=str)
def test_planar_sums_fma_adds_change_no_bit(shape, stream, kernels, rng):
    """An FMA by 1.0 rounds as the addition: both choices of fma_adds give the same
    statistics, outputs and gradients, bit for bit, the streamed sums (runs of 3001
    values with stream) too."""
    x = rng.standard_normal(shape).astype(np.float32) * 3 + 100
    dy = rng.standard_normal(shape).astype(np.float32)
    C = shape[1]
    w = rng.uniform(0.5, 2, C).astype(np.float32)
    b = rng.uniform(-1, 1, C).astype(np.float32)
    got = []
    for fma in (False, True):
        with _kernel_setting("fma_adds", fma), \
                _kernel_setting("prefetch_runs_from", 0 if stream else None), \
                _kernel_setting("prefetch_stream", stream):
            mean, var = cbn.batch_stats(x)
            y, m, inv = cbn.batch_norm(x, None, None, w, b, training=True, relu=True,
                                       return_stats=True)
            grads = cbn.batch_norm_backward(dy, x, m, inv, w, y=y)
            got.append([mean, var, y, m, inv, *grads])
    for a, c in zip(*got):
        np.testing.assert_array_equal(a, c)


@pytest.mark.usefixtures("streaming")
@pytest.mark.parametrize("split", [False, True], ids=["channels", "split"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 1, 70001), (5, 3, 4099), (2, 5, 97, 101)], ids=str)
def test_planar_few_channels_split(shape, dtype, split, rng):
    """Planar work on few channels (not a multiple of the threads) splits the values
    among threads (split_few_channels) for statistics, training and backward sums, and
    every planar output pass cuts its blocks by values, mid-plane.  Both choices against
    the float64 oracle on 2 and 3 threads, plain and streamed: one channel, three and
    five, planes not a multiple of the 16-value cut unit; backward masked and not."""
    with _kernel_setting("split_few_channels", split):
        for t in (2, 3):
            for check in (test_batch_norm_training, test_batch_stats, test_backward,
                          test_batch_norm_eval):
                check(dtype, shape, "C", t, rng)


@pytest.mark.usefixtures("streaming")
@pytest.mark.parametrize("own", [False, True], ids=["shared", "per-block"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(1, 37, 301), (1, 1500, 50), (3, 5, 1001), (3, 700, 20),
                                   (2, 8200, 3), (150, 300)], ids=str)
def test_inference_params_per_block(shape, dtype, own, rng):
    """Inference gives each block of its output pass a parameter table of its own, set
    up for the channels the block touches (params_per_block).  Both choices against the
    float64 oracle on 1, 2 and 3 threads, plain and streamed: planar blocks that start
    and end mid-channel, that touch more than one 512-channel chunk, that run from one
    image's last channels into the next image's first (in one chunk and split at C);
    8200 channels on two images (per block on 3 threads, shared on 1 and 2); rows."""
    with _kernel_setting("params_per_block", own):
        for t in (1, 2, 3):
            test_batch_norm_eval(dtype, shape, "C", t, rng)
            test_scale_shift(dtype, shape, "C", t, rng)


@pytest.mark.usefixtures("streaming")
@pytest.mark.parametrize("cols", [False, True], ids=["rows", "columns"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(2, 4099), (9, 2048), (64, 2500), (1, 40001), (33, 1100),
                                   (100, 1100), (300, 1030)], ids=str)
def test_wide_rows_by_columns(shape, dtype, cols, rng):
    """Inference, training, statistics and backward on few wide interleaved rows go by
    columns (by_columns): each thread takes chunks of at most 512 channels from their
    sums and parameters to their outputs.  Both choices against the float64 oracle on 1,
    2 and 3 threads, plain and streamed: a last chunk of 3 channels, rows of exactly
    four chunks, 64 rows, one row of 79 chunks (no training: it needs two values per
    channel), 1100 channels (by columns but for inference; at 100 rows too), 300 rows
    (statistics by columns, the rest by rows); and running statistics and weight given
    as strided float64 views must give exactly the output of their contiguous float32
    copies (each chunk reads its own channels)."""
    with _kernel_setting("by_columns", cols):
        for t in (1, 2, 3):
            test_batch_norm_eval(dtype, shape, "C", t, rng)
            test_scale_shift(dtype, shape, "C", t, rng)
            if shape[0] > 1:
                test_batch_norm_training(dtype, shape, "C", t, rng)
            test_batch_stats(dtype, shape, "C", t, rng)
            test_backward(dtype, shape, "C", t, rng)
        x, axis, C, params = _data(shape, "C", dtype, rng)
        rm = rng.uniform(-5, 5, C).astype(np.float32)
        rv = rng.uniform(0.01, 100, C).astype(np.float32)
        w = params["weight"]
        wide = np.zeros((3, C, 2))
        wide[0, :, 1], wide[1, :, 1], wide[2, :, 1] = rm, rv, w
        for t in (1, 2):
            y = cbn.batch_norm(x, rm, rv, w, params["bias"], n_threads=t)
            ys = cbn.batch_norm(x, wide[0, :, 1], wide[1, :, 1], wide[2, :, 1], params["bias"],
                                n_threads=t)
            np.testing.assert_array_equal(ys, y)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(33, 1100), (64, 2500), (5, 1030), (17, 4099),
                                   (100, 1100)], ids=str)
def test_by_columns_independent_of_threads(shape, dtype, kernels, rng):
    """By columns, the channels are cut into as many chunks as suit the threads
    (_col_chunks: 1100 channels on two threads in four chunks of 280, 280, 280, 260; on
    three, in three of 368, 368, 364; on sixteen, sixteen of 72 but the last, of 20,
    no narrower than COL_NARROW): a channel's statistics, outputs and gradients are
    the same bit for bit on 1, 2, 3 and 16 threads."""
    x, axis, C, params = _data(shape, "C", dtype, rng)
    dy = rng.standard_normal(shape).astype(dtype)
    rm = rng.uniform(-5, 5, C).astype(np.float32)
    rv = rng.uniform(0.01, 100, C).astype(np.float32)
    w, b = params["weight"], params["bias"]
    _, mean, invstd = cbn.batch_norm(x, weight=w, bias=b, training=True, return_stats=True)
    got = []
    for t in (1, 2, 3, 16):
        rmt, rvt = rm.copy(), rv.copy()
        y, m, s = cbn.batch_norm(x, rmt, rvt, w, b, training=True, return_stats=True,
                                 n_threads=t)
        dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, w, n_threads=t)
        got.append((y, m, s, rmt, rvt, dx, dw, db, *cbn.batch_stats(x, n_threads=t),
                    cbn.batch_norm(x, rm, rv, w, b, n_threads=t)))
    for other in got[1:]:
        for k, (a, c) in enumerate(zip(got[0], other)):
            np.testing.assert_array_equal(a, c, f"output {k}")


@pytest.mark.parametrize("match, shift", [(False, None), (True, None), (True, 2048),
                                          (True, 1000)], ids=["line", "page", "half", "odd"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(37, 1024), (300, 64), (9, 2048), (3, 5, 40)], ids=str)
def test_parameter_tables_at_the_outputs_offset(shape, dtype, match, shift, kernels, rng):
    """Parameter tables start at their output's offset in a 4 KiB page
    (tables_match_output), or table_shift bytes past it (half a page; 1000, not a
    multiple of a vector: the tables' vectors then unaligned), or at a 64-byte line:
    wide rows (a table per block), narrow folded rows (the repeated table), rows by
    columns (tables on each thread's stack), planar.  Either way, for outputs starting
    at every 8-byte phase of a line, on 1 and 2 threads, inference, training and
    backward write exactly what they write into a fresh array; and they are within the
    float64 oracle's bounds."""
    x, axis, C, params = _data(shape, "C", dtype, rng)
    rm = rng.uniform(-5, 5, C).astype(np.float32)
    rv = rng.uniform(0.01, 100, C).astype(np.float32)
    dy = rng.standard_normal(shape).astype(dtype)
    size = np.dtype(dtype).itemsize
    base = np.empty(x.size + 128 // size, dtype)
    with _kernel_setting("tables_match_output", match), _kernel_setting("table_shift", shift):
        for t in (1, 2):
            y, m, inv = cbn.batch_norm(x, training=True, return_stats=True, n_threads=t,
                                       **params)
            want = [cbn.batch_norm(x, rm, rv, n_threads=t, **params), y,
                    cbn.batch_norm_backward(dy, x, m, inv, params["weight"], n_threads=t)[0]]
            for off in range(0, 64 // size, max(1, 8 // size)):
                out = _at(base, off, shape)
                got = [cbn.batch_norm(x, rm, rv, n_threads=t, out=out, **params).copy(),
                       cbn.batch_norm(x, training=True, n_threads=t, out=out,
                                      **params).copy(),
                       cbn.batch_norm_backward(dy, x, m, inv, params["weight"], n_threads=t,
                                               out=out)[0].copy()]
                for k in range(3):
                    np.testing.assert_array_equal(got[k], want[k],
                                                  f"output {k}, out at {off}, {t} threads")
            for check in (test_batch_norm_eval, test_batch_norm_training, test_backward):
                check(dtype, shape, "C", t, rng)


@pytest.mark.parametrize("shape", [(70003, 37), (2103, 1100)], ids=str)
def test_float16_sums_from_memory(shape, kernels, rng):
    """float16 reductions over more than 2**21 values walk a few rows at a time
    (CBN_HWALK), prefetching the next walk: rows not a multiple of the walk or of the
    float32 group, channels not a multiple of the tile, rows wider than a reduction
    tile (CTILE), against the float64 oracle on 1 and 2 threads."""
    for t in (1, 2):
        for check in (test_batch_norm_training, test_batch_stats, test_backward):
            check(np.float16, shape, "C", t, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_planar_short_runs_sample_by_sample(dtype, rng):
    """Planar sums over runs shorter than 2 KB in arrays of 4 MB or more go sample by
    sample (per-thread, per-channel partials; backward then takes a pass over the
    planes in memory order): training, statistics and backward (with and without the
    ReLU mask) against the float64 oracle on 1, 2 and 3 threads (3 splits the samples
    unevenly), with runs of 15 values (no whole number of runs per block)."""
    n = (1 << 22) // (np.dtype(dtype).itemsize * 64 * 15) + 3
    for t in (1, 2, 3):
        for check in (test_batch_norm_training, test_batch_stats, test_backward):
            check(dtype, (n, 64, 3, 5), "C", t, rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", [((3, 5, 37), 1), ((50, 7), 1), ((4, 9, 9, 67), -1),
                                        ((300, 5), 1), ((2, 3, 1100), 1), ((20, 300), 1),
                                        ((4, 3000), 1)],
                         ids=str)
def test_streamed_outputs_match_plain(shape, axis, dtype, kernels, rng):
    """Streaming stores start at the first vector-aligned element of each run, or of
    a task's rows taken as one run (vectors that cross a row's end take their
    parameters lane by lane; (300, 5) goes as rows of 13 * 5 channels): for every start
    offset (8: every vector phase of float32 and float16) the outputs equal the plain
    passes' bit for bit (inference, training, backward with and without the ReLU mask:
    the same arithmetic, dx's multiply-adds in one order)."""
    from cbn import _dispatch
    K = _dispatch.kernels
    n = int(np.prod(shape))
    C = shape[axis]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    dy = rng.standard_normal(shape).astype(dtype)
    base = rng.standard_normal(n + 8).astype(dtype)
    old = K.stream_from()
    try:
        for off in range(8):
            x = base[off:off + n].reshape(shape)
            got = {}
            for streamed in (False, True):
                K.stream_from(0 if streamed else None)
                y, m, inv = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis,
                                           relu=True, return_stats=True, n_threads=2)
                got[streamed] = (cbn.batch_norm(x, rm, rv, w, b, axis=axis, n_threads=2), y,
                                 *cbn.batch_norm_backward(dy, x, m, inv, w, axis=axis),
                                 *cbn.batch_norm_backward(dy, x, m, inv, w, y=y, axis=axis))
            plain, streamed = got[False], got[True]
            for k in range(8):
                np.testing.assert_array_equal(streamed[k], plain[k], f"output {k}, offset {off}")
    finally:
        K.stream_from(old)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(2, 3, 1100), (1, 2, 1031), (3, 2, 1537), (2, 3, 1104)],
                         ids=str)
def test_streamed_outputs_every_line_phase(shape, dtype, kernels, rng):
    """Planar streamed passes (runs of 2048 bytes or more) store whole cache lines with
    vectors and the values around them one by one (float32 and float64: streaming too;
    float16: plainly, and a run of whole vectors from 16-byte alignment all streamed):
    with out= at every element's phase in a 64-byte line (16 for float32, 8 for float64,
    32 for float16), over runs of 1100, 1031, 1537 and 1104 values (every head, several
    tails, float16 runs of whole vectors), the outputs of inference (with and without
    ReLU), training and the backward's dx equal the plain passes' bit for bit (the
    ReLU-masked dx too), and x, dy and y are untouched."""
    from cbn import _dispatch
    K = _dispatch.kernels
    dtype = np.dtype(dtype)
    n, C = int(np.prod(shape)), shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    y, m, inv = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=1, relu=True,
                               return_stats=True)
    keep = [a.copy() for a in (x, dy, y)]
    buf = np.empty(n * dtype.itemsize + 128, np.uint8)
    start = (-buf.ctypes.data) % 64

    def calls(out):
        return [lambda: cbn.batch_norm(x, rm, rv, w, b, axis=1, out=out),
                lambda: cbn.batch_norm(x, rm, rv, w, b, axis=1, relu=True, out=out),
                lambda: cbn.batch_norm(x, weight=w, bias=b, training=True, axis=1, out=out),
                lambda: cbn.batch_norm_backward(dy, x, m, inv, w, axis=1, out=out)[0],
                lambda: cbn.batch_norm_backward(dy, x, m, inv, w, y=y, axis=1, out=out)[0]]

    old = K.stream_from()
    try:
        for phase in range(64 // dtype.itemsize):
            k = start + phase * dtype.itemsize
            out = buf[k:k + n * dtype.itemsize].view(dtype).reshape(shape)
            for j, call in enumerate(calls(out)):
                got = {}
                for streamed in (False, True):
                    K.stream_from(0 if streamed else None)
                    out[...] = np.nan
                    got[streamed] = call().copy()
                np.testing.assert_array_equal(got[True], got[False],
                                              f"call {j}, out at phase {phase}")
    finally:
        K.stream_from(old)
    for a, a0 in zip((x, dy, y), keep):
        np.testing.assert_array_equal(a, a0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape", [(3, 7, 36001), (3, 7, 60001)], ids=str)
def test_prefetching_outputs_match_plain(shape, dtype, kernels, rng):
    """Planar output passes on two threads over arrays of 2 to 8 MB per thread prefetch
    their input block by block (prefetch_outputs): runs not a multiple of the block,
    for every start offset (8: every vector phase of float32), with and without ReLU,
    equal the plain passes' (the same arithmetic), and the float64 oracle's bounds
    (float64 3x7x60001 lies beyond the window: both settings take the plain pass)."""
    n = int(np.prod(shape))
    C = shape[1]
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    base = rng.standard_normal(n + 8).astype(dtype)
    for off in range(8):
        x = base[off:off + n].reshape(shape)
        got = {}
        for pf in (False, True):
            with _kernel_setting("prefetch_outputs", pf):
                got[pf] = [cbn.batch_norm(x, rm, rv, w, b, relu=relu, n_threads=2)
                           for relu in (False, True)]
                got[pf].append(cbn.scale_shift(x, w, b, n_threads=2))
        for k in range(3):
            np.testing.assert_array_equal(got[True][k], got[False][k],
                                          f"output {k}, offset {off}")
    with _kernel_setting("prefetch_outputs", True):
        test_batch_norm_eval(dtype, shape, "C", 2, rng)


def _at(base, off, shape):
    """A dense array of shape in base, starting off items past base's first 64-byte
    boundary (base has room for 128 bytes more than shape)."""
    n = int(np.prod(shape))
    k = (-base.ctypes.data % 64) // base.itemsize + off
    return base[k:k + n].reshape(shape)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shape,axis", [((40, 64), 1), ((3, 7, 9, 8), -1), ((30, 24), 1),
                                        ((12, 256), 1), ((9, 336), 1), ((9, 168), 1),
                                        ((25, 5), 1), ((3, 4, 6, 7), 1), ((2, 3, 37), 1),
                                        ((70, 32), 1), ((65, 16), 1)],
                         ids=str)
def test_output_passes_any_alignment(shape, axis, dtype, kernels, rng):
    """The output passes store from the first vector-aligned value on; tiled rows whose
    output starts misaligned walk windows that straddle rows, with the per-channel
    arrays rotated.  For every start of x and out within a 64-byte line (together and
    apart), on 1, 2 and 3 threads: inference, training and backward (dx with and
    without the ReLU mask) equal the same calls on 64-byte-aligned arrays bit for bit
    (the same arithmetic per value; dx's multiply-adds in one order, CBN_DXV, where
    the masked dx had changed in its last bit with the output's address)."""
    n = int(np.prod(shape))
    C = shape[axis]
    step = 64 // np.dtype(dtype).itemsize
    rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    src = rng.standard_normal(shape).astype(dtype)
    gsrc = rng.standard_normal(shape).astype(dtype)
    bx, bo, bg = (np.empty(n + 2 * step, dtype) for _ in range(3))

    def run(ox, oo, t):
        x, out, dy = _at(bx, ox, shape), _at(bo, oo, shape), _at(bg, ox, shape)
        x[...], dy[...] = src, gsrc
        res = [cbn.batch_norm(x, rm, rv, w, b, axis=axis, n_threads=t, out=out).copy()]
        y, m, inv = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis, relu=True,
                                   return_stats=True, n_threads=t, out=out)
        res += [y.copy(), m, inv]
        for yy in (None, y.copy()):
            dx, dw, db = cbn.batch_norm_backward(dy, x, m, inv, w, y=yy, axis=axis,
                                                 n_threads=t, out=out)
            res += [dx.copy(), dw, db]
        return res

    for t in (1, 2, 3):
        ref = run(0, 0, t)
        offs = [(k, k) for k in range(1, step)] + [(0, k) for k in range(1, step)]
        for ox, oo in offs + [(k, 0) for k in range(1, step)]:
            got = run(ox, oo, t)
            for k in range(10):
                np.testing.assert_array_equal(got[k], ref[k], f"output {k}, x at {ox}, out "
                                              f"at {oo}, {t} threads")


@pytest.mark.parametrize("name, key, default", [
    ("stream_from", "streaming_stores_from_bytes", lambda llc: min(llc, 36 << 20) or None),
    ("prefetch_runs_from", "prefetch_runs_from_bytes",
     lambda llc: (min(llc, 36 << 20) or 32 << 20) // 2),
    ("tiled_stores_to", "tiled_stores_to_bytes",
     lambda llc: min(llc, 36 << 20) * 5 // 8 or None),
    ("short_runs_below", "short_runs_below_bytes", lambda llc: 512),
    ("fused_training_from", "fused_training_from_values", lambda llc: 512),
    ("two_phase_below", "two_phase_below_bytes", lambda llc: 512),
    ("eight_row_width", "eight_row_sums_below_width", lambda llc: 512),
    ("tile_block_rows", "tiled_rows_per_block_max", lambda llc: 3),
    ("reversed_rows_to", "reversed_rows_to_bytes", lambda llc: 1 << 20),
    ("table_shift", "tables_shift_bytes", lambda llc: 2048)])
def test_threshold_api(kernels, name, key, default):
    from cbn import _dispatch
    setter = getattr(_dispatch.kernels, name)
    old = setter()
    assert old == default(_dispatch.kernels.llc_bytes()) or old is None
    try:
        assert setter(123) == old
        assert setter() == 123
        assert setter(None) == 123
        assert setter() is None
        with pytest.raises(TypeError):
            setter("big")
    finally:
        setter(old)
    assert setter() == old
    cfg = cbn.show_config(print_out=False)
    assert cfg[key] == setter()
    assert cfg["tiled_stats_from_memory"] is _dispatch.kernels.tiled_from_memory()
    assert cfg["planar_sums_prefetch_stream"] is _dispatch.kernels.prefetch_stream()
    assert cfg["eight_row_sums_f16"] is _dispatch.kernels.eight_row_sums_f16()
    assert cfg["eight_row_sums_avx512"] is _dispatch.kernels.wide_sums()
    assert cfg["register_sums_avx512"] is _dispatch.kernels.register_sums()
    assert cfg["float16_passes_avx512"] is _dispatch.kernels.wide_halves()
    assert cfg["float32_rows_avx512"] is _dispatch.kernels.wide_rows()
    assert cfg["sixteen_channel_sums"] is _dispatch.kernels.sixteen_channel_tiles()
    assert cfg["narrow_rows_fold_to_tiles"] is _dispatch.kernels.fold_to_tiles()
