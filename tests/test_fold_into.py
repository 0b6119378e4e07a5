"""cbn.fold_into: BN folded into the Conv / Linear / ConvTranspose before it."""

import numpy as np
import pytest

import cbn
from conftest import assert_within


def _bn(C, rng, dtype=np.float32):
    return (rng.standard_normal(C).astype(dtype), rng.uniform(0.2, 3, C).astype(dtype),
            rng.uniform(0.5, 2, C).astype(dtype), rng.standard_normal(C).astype(dtype))


def _conv2d(x, w, b):
    """float64 reference convolution (stride 1, no padding) by explicit sums."""
    n, ci, h, wd = x.shape
    co, _, kh, kw = w.shape
    out = np.zeros((n, co, h - kh + 1, wd - kw + 1))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("nchw,oc->nohw", x[:, :, i:i + h - kh + 1, j:j + wd - kw + 1],
                             w[:, :, i, j])
    return out + (0 if b is None else b.reshape(1, -1, 1, 1))


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_conv_then_bn_equals_folded_conv(with_bias, affine, rng):
    """The defining property: conv(x, W', b') == BN_eval(conv(x, W, b))."""
    w = rng.standard_normal((4, 3, 3, 3))
    b = rng.standard_normal(4) if with_bias else None
    rm, rv, g, be = _bn(4, rng, np.float64)
    if not affine:
        g = be = None
    x = rng.standard_normal((2, 3, 7, 6))
    want = cbn.batch_norm(_conv2d(x, w, b), rm, rv, g, be, eps=1e-3)
    nw, nb = cbn.fold_into(w, b, rm, rv, g, be, eps=1e-3)
    assert nw.shape == w.shape and nb.shape == (4,)
    assert_within(_conv2d(x, nw, nb), want, 1e-12 * (np.abs(want) + 1))


def test_linear_and_dtype(rng):
    w = rng.standard_normal((5, 8)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float16)
    rm, rv, g, be = _bn(5, rng)
    nw, nb = cbn.fold_into(w, b, rm, rv, g, be)
    assert nw.dtype == np.float32 and nb.dtype == np.float16
    x = rng.standard_normal((3, 8))
    want = cbn.batch_norm(x @ w.T.astype(np.float64) + b.astype(np.float64), rm, rv, g, be)
    assert_within(x @ nw.T.astype(np.float64) + nb.astype(np.float64), want,
                  2e-3 * (np.abs(want) + 1))


def test_conv_transpose_axis1(rng):
    """ConvTranspose weights are (I, O, kh, kw): the output channels are axis 1."""
    w = rng.standard_normal((3, 4, 2, 2))
    rm, rv, g, be = _bn(4, rng, np.float64)
    nw, nb = cbn.fold_into(w, None, rm, rv, g, be, axis=1)
    scale = g / np.sqrt(rv + 1e-5)
    assert_within(nw, w * scale.reshape(1, 4, 1, 1), 1e-15 * np.abs(w).max() * 4)
    assert_within(nb, be - rm * scale, 1e-14)


@pytest.mark.parametrize("kind", ["conv", "conv_transpose", "linear"])
@pytest.mark.parametrize("with_bias", [True, False])
def test_same_numbers_as_torch_fusion(kind, with_bias, rng):
    torch = pytest.importorskip("torch")
    from torch.nn.utils import fusion
    shape = {"conv": (6, 3, 3, 3), "conv_transpose": (3, 6, 3, 3), "linear": (6, 10)}[kind]
    w = rng.standard_normal(shape).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32) if with_bias else None
    rm, rv, g, be = _bn(6, rng)
    t = [torch.from_numpy(a) if a is not None else None for a in (w, b, rm, rv, g, be)]
    if kind == "linear":
        tw, tb = fusion.fuse_linear_bn_weights(t[0], t[1], t[2], t[3], 1e-5, t[4], t[5])
    else:
        tw, tb = fusion.fuse_conv_bn_weights(t[0], t[1], t[2], t[3], 1e-5, t[4], t[5],
                                             transpose=kind == "conv_transpose")
    nw, nb = cbn.fold_into(w, b, rm, rv, g, be, eps=1e-5,
                           axis=1 if kind == "conv_transpose" else 0)
    tw, tb = tw.detach().numpy(), tb.detach().numpy()
    assert nw.shape == tw.shape and nb.shape == tb.shape
    assert_within(nw, tw, 4 * 2.0 ** -24 * (np.abs(tw) + np.abs(tw).max() * 1e-3))
    assert_within(nb, tb, 8 * 2.0 ** -24 * (np.abs(tb) + np.abs(tb).max()))


@pytest.mark.parametrize("args,kw,exc,text", [
    ((np.ones((2, 3), int), None, np.zeros(2), np.ones(2)), {}, TypeError, "weight must have"),
    ((np.ones((2, 3)), None, np.zeros(3), np.ones(3)), {}, ValueError, "running_mean must be 1-D of length C=2"),
    ((np.ones((2, 3)), np.ones(3), np.zeros(2), np.ones(2)), {}, ValueError, "bias must be 1-D"),
    ((np.ones((2, 3)), None, np.zeros(2), np.ones(2)), {"axis": 2}, ValueError, "axis=2 is out of range"),
    ((np.ones((2, 3)), None, np.zeros(2), np.ones(2)), {"eps": -1.0}, ValueError, "eps"),
    ((np.ones((2, 3)), None, np.zeros(2), None), {}, ValueError, "running_var is required"),
])
def test_bad_input(args, kw, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        cbn.fold_into(*args, **kw)
