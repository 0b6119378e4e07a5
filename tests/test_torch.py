"""Cross-checks against PyTorch's CPU batch norm (skipped when torch is not installed)."""

import numpy as np
import pytest

import cbn
import oracle
from conftest import ACC, U64, assert_within, roundoff

torch = pytest.importorskip("torch")
F = torch.nn.functional

# PyTorch and cbn each round a few times; their difference is bounded by the sum.
K = 16

# (shape of the NCHW-like tensor, how cbn sees the data)
CASES = [
    ((32, 6), "NC"),
    ((8, 5, 17), "NCL"),
    ((4, 6, 9, 7), "NCHW"),
    ((4, 6, 9, 7), "NHWC"),            # cbn gets x.permute(0, 2, 3, 1), axis=-1
    ((4, 6, 9, 7), "channels_last"),   # cbn gets np.asarray of a channels_last tensor
    ((2, 4, 3, 5, 6), "NCDHW"),
    ((1, 3, 1, 1), "eval-only 1x1"),   # N=1, 1x1: one value per channel
]
DTYPES = {"float32": (np.float32, torch.float32), "float64": (np.float64, torch.float64),
          "float16": (np.float16, torch.float16)}


def _to_cbn(t, kind):
    """(numpy array for cbn, axis, function mapping cbn's output back to NCHW order)."""
    if kind == "NHWC":
        return t.permute(0, 2, 3, 1).contiguous().numpy(), -1, lambda a: np.moveaxis(a, -1, 1)
    if kind == "channels_last":
        a = t.contiguous(memory_format=torch.channels_last).numpy()
        assert not a.flags.c_contiguous and a.strides[1] == a.itemsize
        return a, 1, lambda a: a
    return t.numpy(), 1, lambda a: a


def _params(C, rng, np_dtype):
    return dict(weight=rng.uniform(0.5, 2, C).astype(np_dtype),
                bias=rng.uniform(-1, 1, C).astype(np_dtype),
                running_mean=rng.standard_normal(C).astype(np_dtype),
                running_var=rng.uniform(0.5, 2, C).astype(np_dtype))


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


@pytest.mark.parametrize("dtype", list(DTYPES))
@pytest.mark.parametrize("shape,kind", CASES, ids=[c[1] for c in CASES])
@pytest.mark.parametrize("momentum", [0.1, 0.75])
def test_forward_and_running_stats(shape, kind, dtype, momentum, rng):
    np_dt, t_dt = DTYPES[dtype]
    tx = torch.from_numpy(rng.standard_normal(shape) * 3 + 1).to(t_dt)
    C = shape[1]
    p = _params(C, rng, np_dt)
    x, axis, back = _to_cbn(tx, kind)
    u = roundoff(np_dt)
    for training in ([False] if kind.startswith("eval-only") else [True, False]):
        for relu in (False, True):
            rm, rv = p["running_mean"].copy(), p["running_var"].copy()
            trm, trv = _t(rm), _t(rv)
            y, mean, invstd = cbn.batch_norm(x, rm, rv, p["weight"], p["bias"], training=training,
                                             momentum=momentum, axis=axis, relu=relu,
                                             return_stats=True)
            ty, tmean, tinv, *_ = torch.native_batch_norm(
                tx, _t(p["weight"]), _t(p["bias"]), trm, trv, training, momentum, 1e-5)
            if relu:
                ty = F.relu(ty)
            ty = ty.double().numpy()
            mag = np.abs(ty) + np.abs(p["bias"].astype(np.float64)).reshape(
                [1, C] + [1] * (len(shape) - 2)) + 1.0
            assert_within(back(y), ty, K * u * mag, f"y training={training} relu={relu}")
            if training:
                # torch saves float16 stats for float16 data; cbn keeps float32
                tol = K * max(u, roundoff(mean.dtype))
                assert_within(mean, tmean.double().numpy(),
                              tol * (np.abs(tmean.double().numpy()) + 1), "save_mean")
                # shifted sums lose (1 + max (x - mean)**2 / var) roundoffs of float64 to
                # cancellation (the bound of test_reference); invstd inherits half
                xc = np.moveaxis(tx.double().numpy(), 1, -1).reshape(-1, C)
                mu, var = oracle.batch_stats(xc)
                dev2 = ((xc - mu) ** 2).max(axis=0)
                amp = ACC * U64 * (1 + dev2 / np.maximum(var, 1e-300)) / 2
                assert_within(invstd, tinv.double().numpy(), (tol + amp) * tinv.double().numpy(),
                              "save_invstd")
                assert_within(rm, trm.double().numpy(), K * u * (np.abs(trm.double().numpy()) + 1),
                              "running_mean")
                assert_within(rv, trv.double().numpy(), K * u * np.abs(trv.double().numpy()),
                              "running_var")
            else:
                np.testing.assert_array_equal(rm, p["running_mean"])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape,kind", CASES[:-1], ids=[c[1] for c in CASES[:-1]])
def test_backward(shape, kind, dtype, rng):
    np_dt, t_dt = DTYPES[dtype]
    C = shape[1]
    p = _params(C, rng, np_dt)
    u = roundoff(np_dt)
    for training in (True, False):
        for relu in (False, True):
            tx = torch.from_numpy(rng.standard_normal(shape) * 2 - 1).to(t_dt).requires_grad_()
            tw = _t(p["weight"]).requires_grad_()
            tb = _t(p["bias"]).requires_grad_()
            ty = F.batch_norm(tx, _t(p["running_mean"]), _t(p["running_var"]), tw, tb,
                              training=training)
            if relu:
                ty = F.relu(ty)
            tdy = torch.from_numpy(rng.standard_normal(shape)).to(t_dt)
            ty.backward(tdy)

            x, axis, back = _to_cbn(tx.detach(), kind)
            dy = _to_cbn(tdy, kind)[0]
            y, mean, invstd = cbn.batch_norm(x, p["running_mean"], p["running_var"], p["weight"],
                                             p["bias"], training=training, axis=axis,
                                             relu=relu, return_stats=True)
            dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, p["weight"],
                                                 training=training, y=y if relu else None,
                                                 axis=axis)
            gx, gw, gb = (t.grad.double().numpy() for t in (tx, tw, tb))
            what = f"training={training} relu={relu}"
            scale = np.abs(gx).max() + np.abs(tdy.double().numpy()).max() * np.abs(
                p["weight"] * invstd).max()
            assert_within(back(dx), gx, K * u * scale, "dx " + what)
            n = tx.numel() // C
            assert_within(dw, gw, K * u * n * (np.abs(gw) / n + 3), "dweight " + what)
            assert_within(db, gb, K * u * n * (np.abs(gb) / n + 3), "dbias " + what)


def test_native_batch_norm_backward_api(rng):
    """cbn.batch_norm_backward takes what torch's native_batch_norm_backward takes."""
    x = rng.standard_normal((4, 3, 6, 6)).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    w = rng.uniform(0.5, 2, 3).astype(np.float32)
    _, mean, invstd = cbn.batch_norm(x, weight=w, training=True, return_stats=True)
    gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
        _t(dy), _t(x), _t(w), None, None, _t(mean), _t(invstd), True, 1e-5, [True, True, True])
    dx, dw, db = cbn.batch_norm_backward(dy, x, mean, invstd, w)
    assert_within(dx, gx.numpy(), K * 2.0 ** -24 * (np.abs(gx.numpy()).max() + 1))
    assert_within(dw, gw.numpy(), 1e-5 * (np.abs(gw.numpy()) + 1))
    assert_within(db, gb.numpy(), 1e-5 * (np.abs(gb.numpy()) + 1))


def test_eps_zero_constant_channel_like_torch():
    x = np.ones((4, 2, 3), np.float32)
    x[:, 1] = np.arange(12, dtype=np.float32).reshape(4, 3)
    b = np.array([0.5, 0.0], np.float32)
    y, mean, invstd = cbn.batch_norm(x, bias=b, training=True, eps=0.0, return_stats=True)
    ty, tmean, tinv, *_ = torch.native_batch_norm(_t(x), None, _t(b), None, None, True, 0.1, 0.0)
    assert invstd[0] == tinv[0].item() == 0
    assert_within(y, ty.numpy(), 1e-6 * (np.abs(ty.numpy()) + 1))
