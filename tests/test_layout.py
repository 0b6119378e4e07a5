"""Canonical views without copies, out= in every arrangement, and odd inputs."""

import numpy as np
import pytest

import cbn
import oracle
from cbn import _layout
from cbn import _dispatch
from cbn._api import _prepare
from conftest import assert_within

TOL32 = 8 * 2.0 ** -24

pytestmark = pytest.mark.usefixtures("kernels")  # every test on each kernel build



def _close(got, ref, mag=None):
    mag = np.abs(ref) + 1 if mag is None else mag
    assert_within(got, ref, TOL32 * mag)


def _nchw_channels_last(rng, shape=(2, 5, 4, 3), dtype=np.float32):
    """What np.asarray(torch_tensor.to(memory_format=torch.channels_last)) gives."""
    n, c, h, w = shape
    return np.moveaxis(rng.standard_normal((n, h, w, c)).astype(dtype), -1, 1)


@pytest.mark.parametrize("make,axis,shape3", [
    (lambda r: r.standard_normal((2, 5, 4, 3)), 1, (2, 5, 12)),                      # NCHW
    (lambda r: r.standard_normal((2, 4, 3, 5)), -1, (24, 5, 1)),                     # NHWC
    (lambda r: _nchw_channels_last(r), 1, (24, 5, 1)),                               # NCHW, CL strides
    (lambda r: np.asfortranarray(r.standard_normal((2, 5, 4, 3))), 1, (12, 5, 2)),   # Fortran
    (lambda r: r.standard_normal((6, 5)), 1, (6, 5, 1)),                             # (N, C)
    (lambda r: r.standard_normal((2, 5, 3, 4, 2)), 1, (2, 5, 24)),                   # NCDHW
    (lambda r: r.standard_normal((6, 1, 3)), 1, (1, 1, 18)),                         # one channel
    (lambda r: r.standard_normal((5, 6)), 0, (1, 5, 6)),                             # channels first
])
def test_canonical_is_a_view(make, axis, shape3, rng):
    x = make(rng)
    xd, perm, got_shape3 = _layout.canonical(x, axis % x.ndim)
    assert got_shape3 == shape3
    assert xd is x, "a dense array was copied"
    assert _layout.matches(x, perm)
    # memory, read as (outer, C, inner), holds each channel's values in its middle axis
    order = perm if perm is not None else range(x.ndim)
    x3 = x.transpose(order).reshape(shape3)
    assert np.shares_memory(x3, x)
    ref = np.moveaxis(x, axis, -1).reshape(-1, x.shape[axis])
    got = np.moveaxis(x3, 1, -1).reshape(-1, x.shape[axis])
    np.testing.assert_array_equal(np.sort(got, axis=0), np.sort(ref, axis=0))


@pytest.mark.parametrize("make", [
    lambda r: r.standard_normal((2, 5, 4, 6))[..., ::2],   # gaps
    lambda r: r.standard_normal((2, 5, 4, 3))[::-1],       # negative stride
    lambda r: np.broadcast_to(r.standard_normal((1, 5, 1, 3)), (2, 5, 4, 3)),  # zero strides
])
def test_irregular_strides_are_copied_and_correct(make, rng):
    x = make(rng)
    xd, perm, _ = _layout.canonical(x, 1)
    assert not np.shares_memory(xd, x) and _layout.matches(xd, perm)
    y = cbn.batch_norm(x, training=True)
    ry = oracle.batch_norm(x, training=True)[0]
    _close(y, ry)


def test_channels_last_out_is_written_in_place(rng):
    """An out laid out like x (channels-last strides) is the kernel's own target."""
    x = _nchw_channels_last(rng)
    out = _nchw_channels_last(rng)
    xd, perm, _ = _layout.canonical(x, 1)
    assert perm is not None
    assert _dispatch.baseline.c_plan(x, 1, out, None, None) is None     # not C-ordered
    _, _, _, _, result, target = _prepare(x, 1, out)
    assert target is out and result is out
    y = cbn.batch_norm(x, training=True, out=out)
    assert y is out
    _close(out, oracle.batch_norm(x, training=True)[0])


@pytest.mark.parametrize("out_kind", ["C", "fortran", "channels_last", "sliced", "negative"])
@pytest.mark.parametrize("x_kind", ["C", "channels_last"])
def test_out_any_arrangement(out_kind, x_kind, rng):
    shape = (3, 4, 5, 6)
    x = (rng.standard_normal(shape).astype(np.float32) if x_kind == "C"
         else _nchw_channels_last(rng, shape))
    base = {
        "C": lambda: np.zeros(shape, np.float32),
        "fortran": lambda: np.zeros(shape, np.float32, order="F"),
        "channels_last": lambda: _nchw_channels_last(rng, shape),
        "sliced": lambda: np.zeros(shape[:-1] + (12,), np.float32)[..., ::2],
        "negative": lambda: np.zeros(shape, np.float32)[::-1],
    }
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    dy = rng.standard_normal(shape).astype(np.float32)
    runs = [
        (lambda o: cbn.batch_norm(x, training=True, out=o),
         oracle.batch_norm(x, training=True)[0]),
        (lambda o: cbn.batch_norm(x, rm, rv, out=o), oracle.batch_norm(x, rm, rv)[0]),
        (lambda o: cbn.scale_shift(x, rv, rm, out=o), oracle.scale_shift(x, rv, rm)),
    ]
    _, mean, invstd = cbn.batch_norm(x, training=True, return_stats=True)
    rdx = oracle.batch_norm_backward(dy, x, mean, invstd)[0]
    runs.append((lambda o: cbn.batch_norm_backward(dy, x, mean, invstd, out=o)[0], rdx))
    for run, ref in runs:
        out = base[out_kind]()
        got = run(out)
        assert got is out
        _close(out, ref, np.abs(ref) + 1)


@pytest.mark.parametrize("layout", ["C", "channels_last", "NHWC"])
def test_in_place(layout, rng):
    shape = (4, 6, 5, 5)
    make = {"C": lambda: rng.standard_normal(shape).astype(np.float32),
            "channels_last": lambda: _nchw_channels_last(rng, shape),
            "NHWC": lambda: rng.standard_normal((4, 5, 5, 6)).astype(np.float32)}[layout]
    axis = -1 if layout == "NHWC" else 1
    x = make()
    rm, rv = rng.standard_normal(6), rng.uniform(0.5, 2, 6)
    for fn, ref_fn in [
        (lambda a: cbn.batch_norm(a, training=True, axis=axis, out=a, relu=True),
         lambda a: oracle.batch_norm(a, training=True, axis=axis, relu=True)[0]),
        (lambda a: cbn.batch_norm(a, rm, rv, axis=axis, out=a),
         lambda a: oracle.batch_norm(a, rm, rv, axis=axis)[0]),
        (lambda a: cbn.scale_shift(a, rv, rm, axis=axis, out=a),
         lambda a: oracle.scale_shift(a, rv, rm, axis=axis)),
    ]:
        a = x.copy(order="K")
        ref = ref_fn(a)
        assert fn(a) is a
        _close(a, ref)


def test_backward_in_place_on_dy_and_x(rng):
    x = rng.standard_normal((4, 6, 5, 5)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, mean, invstd = cbn.batch_norm(x, training=True, return_stats=True)
    ref = oracle.batch_norm_backward(dy, x, mean, invstd)
    d = dy.copy()
    dx, dw, db = cbn.batch_norm_backward(d, x, mean, invstd, out=d)
    assert dx is d
    _close(dx, ref[0])
    xx = x.copy()
    dx, dw2, db2 = cbn.batch_norm_backward(dy, xx, mean, invstd, out=xx)
    assert dx is xx
    _close(dx, ref[0])
    np.testing.assert_array_equal(dw, dw2)


def test_out_partially_overlapping_x(rng):
    """out shifted by one element against x: computed into scratch, then copied."""
    base = rng.standard_normal(4 * 3 * 8 + 1).astype(np.float32)
    x = base[:-1].reshape(4, 3, 8)
    ref = oracle.batch_norm(x.copy(), training=True)[0]
    out = base[1:].reshape(4, 3, 8)
    cbn.batch_norm(x, training=True, out=out)
    _close(out, ref)


def test_c_plan_accepts_only_the_common_case(rng):
    """c_plan, _prepare's test in C, passes C-ordered aligned arrays with out None (a new
    C-ordered array), disjoint from the inputs or one of them; every other form goes
    to the validating path (None)."""
    plan = _dispatch.baseline.c_plan
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    dy, y, out = x.copy(), x.copy(), np.empty_like(x)
    dims, t = plan(x, 1, None, None, None)
    assert dims == (2, 3, 4) and t.shape == x.shape and t.dtype == x.dtype
    assert t.flags.c_contiguous and t.flags.writeable and not np.shares_memory(t, x)
    assert plan(x, 2, None, dy, y)[0] == (6, 4, 1)
    for o in (out, x, dy, y):
        assert plan(x, 1, o, dy, y)[1] is o
    buf = np.zeros(x.size + 1, np.float32)
    unaligned = np.frombuffer(bytearray(x.nbytes + 1), np.float32, x.size, 1).reshape(x.shape)
    ro = out.copy()
    ro.setflags(write=False)
    shifted = buf[1:].reshape(x.shape)
    dy_over = buf[:-1].reshape(x.shape)
    refused = [
        (np.asfortranarray(x), None, None, None), (unaligned, None, None, None),
        (x, out.astype(np.float64), None, None), (x, out[:1], None, None),
        (x, ro, None, None), (x, np.asfortranarray(out), None, None),
        (x, out.tolist(), None, None), (x, out.view(np.memmap), None, None),
        (x, out.astype(">f4"), None, None), (x, unaligned, None, None),
        (x, shifted, dy_over, None), (x, shifted, None, dy_over),
        (x, out, np.asfortranarray(dy), None), (x, out, None, dy.view(np.memmap)),
        (x, x[:, :, :2], None, None),
    ]
    for xa, o, a, b in refused:
        assert plan(xa, 1, o, a, b) is None


def test_backward_out_partially_overlapping_dy(rng):
    """dx written over memory that dy (read) shares, shifted by one element: computed
    into scratch, then copied."""
    x = rng.standard_normal((4, 3, 8)).astype(np.float32)
    base = rng.standard_normal(x.size + 1).astype(np.float32)
    dy = base[:-1].reshape(x.shape)
    _, mean, invstd = cbn.batch_norm(x, training=True, return_stats=True)
    ref = oracle.batch_norm_backward(dy.copy(), x, mean, invstd)[0]
    out = base[1:].reshape(x.shape)
    assert cbn.batch_norm_backward(dy, x, mean, invstd, out=out)[0] is out
    _close(out, ref)


def test_read_only_and_memmap_inputs(rng, tmp_path):
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    ro = x.copy()
    ro.setflags(write=False)
    ref = oracle.batch_norm(x, training=True)[0]
    _close(cbn.batch_norm(ro, training=True), ref)
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    _close(cbn.batch_norm(mm, training=True), ref)
    mean, var = cbn.batch_stats(mm)
    rmean, rvar = oracle.batch_stats(x)
    _close(mean, rmean)
    _close(var, rvar)


def test_arguments_beside_the_fast_path(rng, tmp_path):
    """Arguments just outside the common form (tested in C by cbn._kernels.plain_params,
    like, c_dims and c_plan) take the validating path and still give the oracle's answer:
    byte-swapped, float16 and strided parameters, out as an ndarray subclass (a
    writeable memmap), one channel, a Fortran-ordered x."""
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    rm, rv = rng.standard_normal(4), rng.random(4) + 0.5
    w, b = rng.standard_normal(4), rng.standard_normal(4)
    ref = oracle.batch_norm(x, rm, rv, w, b)[0]
    for params in ((rm.astype(">f4"), rv.astype(">f8"), w.astype(">f4"), b),
                   (rm.astype(np.float16), rv, w, b.astype(np.float16)),
                   (np.repeat(rm, 2)[::2], rv, np.repeat(w, 3)[1::3], b)):
        expect = oracle.batch_norm(x, *[np.asarray(p, np.float64) for p in params])[0]
        _close(cbn.batch_norm(x, *params), expect)
    out = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32,
                                    shape=x.shape)
    assert cbn.batch_norm(x, rm, rv, w, b, out=out) is out
    _close(np.asarray(out), ref)
    one = x[:, :1]
    _close(cbn.batch_norm(one, rm[:1], rv[:1], w[:1], b[:1]),
           oracle.batch_norm(one, rm[:1], rv[:1], w[:1], b[:1])[0])
    _close(cbn.batch_norm(np.asfortranarray(x), rm, rv, w, b), ref)


def test_non_native_byte_order_and_lists(rng):
    x = rng.standard_normal((5, 3)).astype(">f4")
    ref = oracle.batch_norm(x, training=True)[0]
    y = cbn.batch_norm(x, training=True)
    assert y.dtype == np.float32
    _close(y, ref)
    lst = [[1.0, 2.0], [3.0, 5.0]]
    np.testing.assert_allclose(cbn.batch_norm(lst, training=True, eps=0.0),
                               [[-1.0, -1.0], [1.0, 1.0]])


def test_zero_size():
    x = np.zeros((0, 3, 4), np.float32)
    rm, rv = np.zeros(3), np.ones(3)
    y = cbn.batch_norm(x, rm, rv)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert cbn.scale_shift(x, rv, rm).shape == x.shape
    dx, dw, db = cbn.batch_norm_backward(x, x, rm, rv, training=False)
    assert dx.shape == x.shape and np.all(dw == 0) and np.all(db == 0)
    empty_c = np.zeros((4, 0, 2), np.float32)
    y, mean, invstd = cbn.batch_norm(empty_c, training=True, return_stats=True)
    assert y.shape == empty_c.shape and mean.shape == (0,)
    mean, var = cbn.batch_stats(empty_c)
    assert mean.shape == var.shape == (0,)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -2])
def test_any_channel_axis(axis, rng):
    x = rng.standard_normal((3, 4, 5, 6)).astype(np.float64)
    C = x.shape[axis]
    w, b = rng.standard_normal(C), rng.standard_normal(C)
    y = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis)
    ry = oracle.batch_norm(x, weight=w, bias=b, training=True, axis=axis)[0]
    assert_within(y, ry, 1e-14 * (np.abs(ry) + 10))


def test_unaligned_arrays(rng):
    """Views into a byte buffer at an odd offset are not aligned: copied in, written back."""
    x0 = rng.standard_normal((4, 3, 5)).astype(np.float32)
    buf = bytearray(x0.nbytes + 1)
    x = np.frombuffer(buf, dtype=np.float32, offset=1, count=x0.size).reshape(x0.shape)
    x[...] = x0
    assert not x.flags.aligned
    ref = oracle.batch_norm(x0, training=True)[0]
    _close(cbn.batch_norm(x, training=True), ref)
    obuf = bytearray(x0.nbytes + 3)
    out = np.frombuffer(obuf, dtype=np.float32, offset=3, count=x0.size).reshape(x0.shape)
    assert cbn.batch_norm(x0, training=True, out=out) is out
    _close(out, ref)
