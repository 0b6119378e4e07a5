"""cbn.BatchNorm: PyTorch's nn.BatchNorm1d/2d/3d semantics, state dicts, folding."""

import io

import numpy as np
import pytest

import cbn
import oracle
from conftest import assert_within


def _rel_close(got, want, tol, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    assert_within(got, want, tol * (np.abs(want) + np.abs(want).max() + 1e-30), what)


# ------------------------------------------------------------ behaviour (no torch)

def test_training_then_eval_semantics(rng):
    bn = cbn.BatchNorm(3, momentum=0.25)
    x = rng.standard_normal((10, 3, 4)).astype(np.float32) * 2 + 1
    y = bn(x)
    ry, mean, invstd, nrm, nrv = oracle.batch_norm(x, np.zeros(3), np.ones(3), training=True,
                                                  momentum=0.25)
    _rel_close(y, ry, 1e-6, "y")
    _rel_close(bn.running_mean, nrm, 1e-6, "running_mean")
    _rel_close(bn.running_var, nrv, 1e-6, "running_var")
    assert int(bn.num_batches_tracked) == 1
    assert bn.eval() is bn and not bn.training
    y2 = bn(x)
    _rel_close(y2, oracle.batch_norm(x, nrm, nrv)[0], 1e-6, "eval y")
    assert int(bn.num_batches_tracked) == 1


def test_cumulative_moving_average(rng):
    """momentum=None: running stats are the plain average of the batch statistics."""
    bn = cbn.BatchNorm(4, momentum=None)
    means, vars_ = [], []
    for _ in range(5):
        x = rng.standard_normal((6, 4)) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
        bn(x.astype(np.float32))
        m, v = oracle.batch_stats(x.astype(np.float32), 1)
        means.append(m)
        vars_.append(v * 6 / 5)
    _rel_close(bn.running_mean, np.mean(means, axis=0), 1e-5, "running_mean")
    _rel_close(bn.running_var, np.mean(vars_, axis=0), 1e-5, "running_var")
    assert int(bn.num_batches_tracked) == 5


def test_no_running_stats_uses_batch_stats_in_eval(rng):
    bn = cbn.BatchNorm(2, track_running_stats=False).eval()
    assert bn.running_mean is None and bn.num_batches_tracked is None
    x = rng.standard_normal((7, 2)).astype(np.float32) * 3 + 5
    _rel_close(bn(x), oracle.batch_norm(x, training=True)[0], 1e-6)
    assert set(bn.state_dict()) == {"weight", "bias"}
    with pytest.raises(ValueError, match="track_running_stats"):
        bn.fold()


def test_backward_with_relu_and_not_affine(rng):
    bn = cbn.BatchNorm(3, affine=False, relu=True)
    x = rng.standard_normal((5, 3, 6)).astype(np.float64)
    y = bn(x)
    assert (y >= 0).all()
    dy = rng.standard_normal(x.shape)
    dx = bn.backward(dy)
    _, mean, invstd, _, _ = oracle.batch_norm(x, training=True)
    rdx = oracle.batch_norm_backward(dy, x, mean, invstd, None, training=True, y=y)[0]
    _rel_close(dx, rdx, 1e-10, "dx")
    assert bn.grad_weight is None and bn.grad_bias is None


def test_freeze_uses_the_folded_path(rng):
    bn = cbn.BatchNorm(4, relu=True)
    for _ in range(3):
        bn(rng.standard_normal((16, 4, 3, 3)).astype(np.float32) * 2 + 1)
    bn.weight[:] = rng.uniform(0.5, 2, 4)
    bn.bias[:] = rng.standard_normal(4)
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    want = bn.eval()(x)
    scale, shift = bn.fold()
    assert bn.freeze() is bn and not bn.training
    got = bn(x)
    _rel_close(got, np.maximum(x * scale.reshape(1, 4, 1, 1) + shift.reshape(1, 4, 1, 1), 0),
               1e-6, "folded")
    _rel_close(got, want, 1e-5, "folded vs eval")
    dx = bn.backward(np.ones_like(x))       # frozen statistics
    assert dx.shape == x.shape
    bn.train()
    assert bn._folded is None and bn.training


def test_channels_last_axis(rng):
    bn = cbn.BatchNorm(5, axis=-1)
    x = rng.standard_normal((3, 4, 4, 5)).astype(np.float32)
    _rel_close(bn(x), oracle.batch_norm(x, training=True, axis=-1)[0], 1e-6)


def test_in_place_forward_then_backward_is_refused(rng):
    bn = cbn.BatchNorm(2)
    x = rng.standard_normal((4, 2)).astype(np.float32)
    y = bn(x, out=x)
    assert y is x
    with pytest.raises(RuntimeError, match="overwriting its input"):
        bn.backward(np.ones_like(x))


@pytest.mark.parametrize("kwargs,exc,text", [
    (dict(num_features=0), ValueError, "num_features"),
    (dict(num_features=2.5), ValueError, "num_features"),
    (dict(num_features=3, momentum=1.5), ValueError, "momentum"),
    (dict(num_features=3, eps=-1.0), ValueError, "eps"),
    (dict(num_features=3, affine="yes"), TypeError, "affine"),
    (dict(num_features=3, dtype=np.int32), TypeError, "dtype"),
    (dict(num_features=3, axis=1.0), TypeError, "axis"),
])
def test_bad_configuration(kwargs, exc, text):
    with pytest.raises(exc, match=text):
        cbn.BatchNorm(**kwargs)


def test_wrong_channel_count_and_backward_first(rng):
    bn = cbn.BatchNorm(3)
    with pytest.raises(RuntimeError, match="needs the input of a forward pass"):
        bn.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match="4 channels at axis 1, the layer has num_features=3"):
        bn(np.ones((2, 4), np.float32))


# ------------------------------------------------------------ state dicts

def test_state_dict_round_trips(tmp_path, rng):
    bn = cbn.BatchNorm(6, momentum=None)
    for _ in range(3):
        bn(rng.standard_normal((8, 6)).astype(np.float32))
    bn.weight[:] = rng.standard_normal(6)
    state = bn.state_dict()
    assert list(state) == ["weight", "bias", "running_mean", "running_var",
                           "num_batches_tracked"]
    assert state["num_batches_tracked"].dtype == np.int64 and state["num_batches_tracked"] == 3
    state["weight"][0] = 99.0          # a copy: the layer is unchanged
    assert bn.weight[0] != 99.0
    np.savez(tmp_path / "bn.npz", **bn.state_dict())
    other = cbn.BatchNorm(6)
    other.load_state_dict(np.load(tmp_path / "bn.npz"))
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)
    buf = io.BytesIO()
    np.savez(buf, **bn.state_dict())
    buf.seek(0)
    third = cbn.BatchNorm(6)
    third.load_state_dict(dict(np.load(buf)))
    np.testing.assert_array_equal(third.running_var, bn.running_var)


def test_load_state_dict_errors_change_nothing(rng):
    bn = cbn.BatchNorm(3)
    before = bn.state_dict()
    good = {k: v + 1 for k, v in before.items()}
    for bad, exc in [({**good, "extra": np.zeros(3)}, KeyError),
                     ({k: v for k, v in good.items() if k != "weight"}, KeyError),
                     ({**good, "running_var": np.ones(4)}, ValueError),
                     ({**good, "bias": np.ones(3, int)}, TypeError),
                     ({**good, "num_batches_tracked": np.ones(1)}, ValueError),
                     ([1, 2], TypeError)]:
        with pytest.raises(exc):
            bn.load_state_dict(bad)
        for k, v in bn.state_dict().items():
            np.testing.assert_array_equal(v, before[k])
    # old checkpoints without num_batches_tracked load (as in PyTorch); extra keys with strict=False
    bn.load_state_dict({k: v for k, v in good.items() if k != "num_batches_tracked"})
    assert int(bn.num_batches_tracked) == 0 and bn.weight[0] == 2
    bn.load_state_dict({**good, "extra": 1}, strict=False)


# ------------------------------------------------------------ PyTorch parity

def _torch():
    return pytest.importorskip("torch")


SHAPES = {"1d-NC": (16, 5), "1d-NCL": (8, 5, 7), "2d": (4, 5, 6, 6), "3d": (2, 5, 3, 4, 4)}


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("track", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_parity_with_torch_over_training_then_eval(shape, momentum, track, affine, rng):
    torch = _torch()
    Module = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
              5: torch.nn.BatchNorm3d}[len(shape)]
    C = shape[1]
    tm = Module(C, momentum=momentum, track_running_stats=track, affine=affine)
    if affine:
        with torch.no_grad():
            tm.weight.copy_(torch.from_numpy(rng.uniform(0.5, 2, C).astype(np.float32)))
            tm.bias.copy_(torch.from_numpy(rng.standard_normal(C).astype(np.float32)))
    bn = cbn.BatchNorm.from_torch(tm)
    assert bn.training and bn.num_features == C and bn.momentum == momentum
    lr = 0.05
    for step in range(20):
        x = (rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-3, 3)).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_()
        ty = tm(tx)
        ty.backward(torch.from_numpy(dy))
        y = bn(x)
        dx = bn.backward(dy)
        what = f"step {step}"
        _rel_close(y, ty.detach().numpy(), 2e-5, "y " + what)
        _rel_close(dx, tx.grad.numpy(), 5e-5, "dx " + what)
        if affine:
            _rel_close(bn.grad_weight, tm.weight.grad.numpy(), 5e-5, "grad_weight " + what)
            _rel_close(bn.grad_bias, tm.bias.grad.numpy(), 5e-5, "grad_bias " + what)
            with torch.no_grad():       # the same SGD step on both
                tm.weight -= lr * tm.weight.grad
                tm.bias -= lr * tm.bias.grad
                tm.weight.grad = tm.bias.grad = None
            bn.weight -= lr * bn.grad_weight
            bn.bias -= lr * bn.grad_bias
        for k, v in tm.state_dict().items():
            _rel_close(bn.state_dict()[k], v.numpy(), 2e-5, f"{k} {what}")
    tm.eval()
    bn.eval()
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_()
    ty = tm(tx)
    dy = rng.standard_normal(shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    _rel_close(bn(x), ty.detach().numpy(), 2e-5, "eval y")
    _rel_close(bn.backward(dy), tx.grad.numpy(), 5e-5, "eval dx")
    # the state loads back into PyTorch
    tm2 = Module(C, momentum=momentum, track_running_stats=track, affine=affine)
    tm2.load_state_dict({k: torch.from_numpy(v) for k, v in bn.state_dict().items()})
    for k, v in tm2.state_dict().items():
        _rel_close(v.numpy(), tm.state_dict()[k].numpy(), 1e-6, k)


def test_from_torch_keeps_mode_and_dtype():
    torch = _torch()
    tm = torch.nn.BatchNorm2d(4).double().eval()
    bn = cbn.BatchNorm.from_torch(tm)
    assert not bn.training and bn.dtype == np.float64
    assert cbn.BatchNorm.from_torch(torch.nn.BatchNorm1d(3, affine=False)).weight is None
