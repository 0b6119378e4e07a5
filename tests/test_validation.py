"""Every misuse raises ValueError/TypeError naming the parameter, before anything is written."""

import numpy as np
import pytest

import cbn

C = 3


def _good():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, C, 5, 5)).astype(np.float32)
    return dict(
        x=x,
        running_mean=np.zeros(C, np.float32),
        running_var=np.ones(C, np.float32),
        weight=np.ones(C, np.float32),
        bias=np.zeros(C, np.float32),
        out=np.full_like(x, 7.0),
    )


def _read_only(a):
    a = a.copy()
    a.setflags(write=False)
    return a


X = _good()["x"]

# (description, overrides of the good keyword arguments, exception, text the message names)
BATCH_NORM_CASES = [
    ("int x", dict(x=X.astype(np.int64)), TypeError, "x must have dtype"),
    ("complex x", dict(x=X.astype(np.complex64)), TypeError, "x must have dtype"),
    ("object x", dict(x=X.astype(object)), TypeError, "x must have dtype"),
    ("bool x", dict(x=X > 0), TypeError, "x must have dtype"),
    ("string x", dict(x="abc"), TypeError, "x must have dtype"),
    ("ragged x", dict(x=[[1.0, 2.0], [3.0]]), TypeError, "x must be array_like"),
    ("1-D x", dict(x=X.ravel()), ValueError, "x must have ndim >= 2"),
    ("0-D x", dict(x=np.float32(1.0)), ValueError, "x must have ndim >= 2"),
    ("axis too large", dict(axis=4), ValueError, "axis=4 is out of range"),
    ("axis too small", dict(axis=-5), ValueError, "axis=-5 is out of range"),
    ("float axis", dict(axis=1.0), TypeError, "axis must be an integer"),
    ("bool axis", dict(axis=True), TypeError, "axis must be an integer"),
    ("weight length", dict(weight=np.ones(C + 1)), ValueError, "weight must be 1-D of length C=3"),
    ("weight 2-D", dict(weight=np.ones((1, C))), ValueError, "weight must be 1-D"),
    ("weight scalar", dict(weight=1.0), ValueError, "weight must be 1-D"),
    ("weight int", dict(weight=np.ones(C, int)), TypeError, "weight must have a floating dtype"),
    ("bias length", dict(bias=np.zeros(C - 1)), ValueError, "bias must be 1-D of length C=3"),
    ("bias complex", dict(bias=np.zeros(C, complex)), TypeError, "bias must have a floating"),
    ("running_mean length", dict(running_mean=np.zeros(2)), ValueError, "running_mean must be 1-D"),
    ("running_var int", dict(running_var=np.ones(C, int)), TypeError, "running_var must have"),
    ("eval without running_mean", dict(running_mean=None), ValueError, "running_mean is required"),
    ("eval without running_var", dict(running_var=None), ValueError, "running_var is required"),
    ("negative eps", dict(eps=-1e-5), ValueError, "eps must be finite and >= 0"),
    ("NaN eps", dict(eps=float("nan")), ValueError, "eps must be finite and >= 0"),
    ("inf eps", dict(eps=float("inf")), ValueError, "eps must be finite and >= 0"),
    ("string eps", dict(eps="1e-5"), TypeError, "eps must be a real number"),
    ("None eps", dict(eps=None), TypeError, "eps must be a real number"),
    ("out shape", dict(out=np.zeros((4, C, 5, 4), np.float32)), ValueError, "out.shape=(4, 3, 5, 4), expected (4, 3, 5, 5)"),
    ("out dtype", dict(out=np.zeros(X.shape, np.float64)), TypeError, "out.dtype=float64, expected float32"),
    ("out byte-swapped", dict(out=np.zeros(X.shape, ">f4")), TypeError, "out.dtype=>f4, expected float32"),
    ("out ndim", dict(out=np.zeros(X.shape[:3], np.float32)), ValueError, "out.shape=(4, 3, 5), expected"),
    ("out read-only", dict(out=_read_only(np.zeros(X.shape, np.float32))), ValueError, "out is read-only"),
    ("out list", dict(out=[0.0]), TypeError, "out must be a NumPy array"),
    ("n_threads 0", dict(n_threads=0), ValueError, "n_threads must be None or an integer >= 1"),
    ("n_threads -1", dict(n_threads=-1), ValueError, "n_threads must be None or an integer >= 1"),
    ("n_threads float", dict(n_threads=2.0), TypeError, "n_threads must be None or an integer"),
    ("n_threads str", dict(n_threads="2"), TypeError, "n_threads must be None or an integer"),
    ("n_threads bool", dict(n_threads=True), TypeError, "n_threads must be None or an integer"),
    ("training str", dict(training="yes"), TypeError, "training must be True or False"),
    ("relu int", dict(relu=1), TypeError, "relu must be True or False"),
    ("return_stats None", dict(return_stats=None), TypeError, "return_stats must be True or False"),
]

TRAINING_CASES = [
    ("momentum < 0", dict(momentum=-0.1), ValueError, "momentum must be in [0, 1]"),
    ("momentum > 1", dict(momentum=1.5), ValueError, "momentum must be in [0, 1]"),
    ("momentum NaN", dict(momentum=float("nan")), ValueError, "momentum must be in [0, 1]"),
    ("momentum None", dict(momentum=None), TypeError, "momentum must be a real number"),
    ("only running_mean", dict(running_var=None), ValueError, "must be given together"),
    ("only running_var", dict(running_mean=None), ValueError, "must be given together"),
    ("read-only running_mean", dict(running_mean=_read_only(np.zeros(C, np.float32))), ValueError,
     "running_mean is read-only"),
    ("read-only running_var", dict(running_var=_read_only(np.ones(C, np.float32))), ValueError,
     "running_var is read-only"),
    ("running_mean as list", dict(running_mean=[0.0] * C), TypeError, "running_mean must be a NumPy array"),
    ("one value per channel", dict(x=X[:1, :, :1, :1], out=None), ValueError,
     "more than 1 value per channel"),
    ("no values", dict(x=X[:0], out=None), ValueError, "more than 1 value per channel"),
    ("bad out in training", dict(out=np.zeros(X.shape, np.float16)), TypeError, "out.dtype=float16"),
    ("bad weight in training", dict(weight=np.ones(2)), ValueError, "weight must be 1-D"),
]


def _call_and_check_untouched(fn, kw, exc, text):
    guarded = {k: kw[k] for k in ("running_mean", "running_var", "out", "x")
               if isinstance(kw.get(k), np.ndarray)}
    before = {k: v.copy() for k, v in guarded.items()}
    with pytest.raises(exc) as info:
        fn(**kw)
    assert text in str(info.value), str(info.value)
    for k, v in guarded.items():
        np.testing.assert_array_equal(v, before[k], err_msg=f"{k} was written")


# Both modes, except the eval-only cases (training accepts running stats absent).
BOTH_MODES = [(c, t) for c in BATCH_NORM_CASES for t in (False, True)
              if not (t and c[0].startswith("eval without"))]


@pytest.mark.parametrize("case,training", BOTH_MODES,
                         ids=[f"{c[0]}-{'train' if t else 'eval'}" for c, t in BOTH_MODES])
def test_batch_norm_bad_input(case, training):
    desc, over, exc, text = case
    kw = {**_good(), "training": training, **over}
    _call_and_check_untouched(lambda **k: cbn.batch_norm(k.pop("x"), **k), kw, exc, text)


@pytest.mark.parametrize("desc,over,exc,text", TRAINING_CASES, ids=[c[0] for c in TRAINING_CASES])
def test_batch_norm_training_bad_input(desc, over, exc, text):
    kw = {**_good(), "training": True, **over}
    _call_and_check_untouched(lambda **k: cbn.batch_norm(k.pop("x"), **k), kw, exc, text)


def test_eval_accepts_missing_nothing_else():
    """Sanity: the good arguments really are good (so each case fails for its own reason)."""
    for training in (False, True):
        kw = _good()
        y = cbn.batch_norm(kw.pop("x"), training=training, **kw)
        assert y is kw["out"]


def _backward_good():
    kw = _good()
    x = kw["x"]
    _, mean, invstd = cbn.batch_norm(x, training=True, return_stats=True)
    return dict(dy=np.ones_like(x), x=x, mean=mean, invstd=invstd, weight=kw["weight"],
                out=kw["out"], y=None)


BACKWARD_CASES = [
    ("dy shape", dict(dy=np.ones((4, C, 5, 4), np.float32)), ValueError, "dy.shape=(4, 3, 5, 4), expected x.shape"),
    ("dy dtype", dict(dy=np.ones(X.shape)), TypeError, "dy.dtype=float64, expected x.dtype=float32"),
    ("dy int", dict(dy=np.ones(X.shape, int)), TypeError, "dy must have dtype"),
    ("y shape", dict(y=np.ones((4, C), np.float32)), ValueError, "y.shape=(4, 3), expected x.shape"),
    ("y dtype", dict(y=np.ones(X.shape, np.float16)), TypeError, "y.dtype=float16"),
    ("x int", dict(x=X.astype(int)), TypeError, "x must have dtype"),
    ("mean length", dict(mean=np.zeros(2)), ValueError, "mean must be 1-D of length C=3"),
    ("mean missing", dict(mean=None), ValueError, "mean is required"),
    ("invstd 2-D", dict(invstd=np.ones((C, 1))), ValueError, "invstd must be 1-D"),
    ("invstd int", dict(invstd=np.ones(C, int)), TypeError, "invstd must have a floating dtype"),
    ("weight length", dict(weight=np.ones(4)), ValueError, "weight must be 1-D of length C=3"),
    ("out dtype", dict(out=np.zeros(X.shape)), TypeError, "out.dtype=float64, expected float32"),
    ("out read-only", dict(out=_read_only(np.zeros(X.shape, np.float32))), ValueError, "out is read-only"),
    ("training int", dict(training=1), TypeError, "training must be True or False"),
    ("axis", dict(axis=7), ValueError, "axis=7 is out of range"),
    ("n_threads", dict(n_threads=0), ValueError, "n_threads must be None or an integer >= 1"),
]


@pytest.mark.parametrize("desc,over,exc,text", BACKWARD_CASES, ids=[c[0] for c in BACKWARD_CASES])
def test_backward_bad_input(desc, over, exc, text):
    kw = {**_backward_good(), **over}
    _call_and_check_untouched(
        lambda **k: cbn.batch_norm_backward(k.pop("dy"), k.pop("x"), k.pop("mean"),
                                            k.pop("invstd"), **k), kw, exc, text)


@pytest.mark.parametrize("desc,kw,exc,text", [
    ("int x", dict(x=np.ones((3, 2), int)), TypeError, "x must have dtype"),
    ("1-D x", dict(x=np.ones(3)), ValueError, "ndim >= 2"),
    ("no values", dict(x=np.ones((0, 2))), ValueError, "x has no values per channel"),
    ("axis", dict(x=np.ones((3, 2)), axis=2), ValueError, "axis=2 is out of range"),
    ("n_threads", dict(x=np.ones((3, 2)), n_threads=-3), ValueError, "n_threads"),
])
def test_batch_stats_bad_input(desc, kw, exc, text):
    with pytest.raises(exc, match=text.replace("(", r"\(").replace(")", r"\)")):
        cbn.batch_stats(kw.pop("x"), **kw)


@pytest.mark.parametrize("desc,args,kw,exc,text", [
    ("2-D running_mean", (np.zeros((2, 2)), np.ones(2)), {}, ValueError, "running_mean must be 1-D"),
    ("None running_mean", (None, np.ones(2)), {}, ValueError, "running_mean must be 1-D"),
    ("running_var length", (np.zeros(2), np.ones(3)), {}, ValueError, "running_var must be 1-D of length C=2"),
    ("running_var missing", (np.zeros(2), None), {}, ValueError, "running_var is required"),
    ("int weight", (np.zeros(2), np.ones(2), np.ones(2, int)), {}, TypeError, "weight must have a floating"),
    ("bias length", (np.zeros(2), np.ones(2), None, np.ones(1)), {}, ValueError, "bias must be 1-D"),
    ("eps", (np.zeros(2), np.ones(2)), dict(eps=-1.0), ValueError, "eps must be finite and >= 0"),
])
def test_fold_bad_input(desc, args, kw, exc, text):
    with pytest.raises(exc) as info:
        cbn.fold(*args, **kw)
    assert text in str(info.value)


@pytest.mark.parametrize("desc,over,exc,text", [
    ("scale length", dict(scale=np.ones(2)), ValueError, "scale must be 1-D of length C=3"),
    ("shift int", dict(shift=np.zeros(C, int)), TypeError, "shift must have a floating dtype"),
    ("shift missing", dict(shift=None), ValueError, "shift is required"),
    ("x complex", dict(x=X.astype(complex)), TypeError, "x must have dtype"),
    ("out shape", dict(out=np.zeros((1, 1), np.float32)), ValueError, "out.shape=(1, 1)"),
    ("out read-only", dict(out=_read_only(np.zeros(X.shape, np.float32))), ValueError, "read-only"),
    ("relu str", dict(relu="no"), TypeError, "relu must be True or False"),
    ("n_threads", dict(n_threads=1.5), TypeError, "n_threads"),
])
def test_scale_shift_bad_input(desc, over, exc, text):
    kw = {"x": X, "scale": np.ones(C), "shift": np.zeros(C), "out": np.full_like(X, 7.0), **over}
    _call_and_check_untouched(
        lambda **k: cbn.scale_shift(k.pop("x"), k.pop("scale"), k.pop("shift"), **k), kw, exc, text)


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.0, TypeError),
                                     ("4", TypeError), (False, TypeError)])
def test_set_num_threads_bad_input(bad, exc):
    before = cbn.get_num_threads()
    with pytest.raises(exc, match="n must be None or an integer"):
        cbn.set_num_threads(bad)
    assert cbn.get_num_threads() == before


SIZE_SETTINGS = ["reversed_rows_to", "table_shift", "eight_row_width", "stream_from",
                 "tiled_stores_to", "tile_block_rows", "short_runs_below",
                 "fused_training_from", "pipelined_to", "two_phase_below",
                 "prefetch_runs_from"]


@pytest.mark.parametrize("name", SIZE_SETTINGS)
@pytest.mark.parametrize("bad,exc,text", [(-1, ValueError, "must be >= 0 .*, got -1"),
                                          (np.int64(-8), ValueError, "got -8"),
                                          (2 ** 63, ValueError, "at most 2\\*\\*63 - 1"),
                                          (1.5, TypeError, "an int >= 0 or None, got 1.5"),
                                          ("64", TypeError, "got '64'"),
                                          (True, TypeError, "got True")])
def test_kernel_size_settings_bad_input(name, bad, exc, text):
    """The kernels' size settings (cbn._kernels, for tests and measurements) take an int
    >= 0 or None, and say so in the error (which does not name the setter: passing the
    name from each setter made the compiled kernels, and the wheel, larger); a bad value
    leaves the setting as it was, and a NumPy integer is taken like an int."""
    from cbn import _dispatch
    for kernels in {_dispatch.baseline, _dispatch.kernels}:
        setter = getattr(kernels, name)
        before = setter()
        with pytest.raises(exc, match=rf"^a kernel size setting \(n or nbytes\) .*{text}"):
            setter(bad)
        assert setter() == before
        assert setter(np.int64(4096)) == before
        assert setter() == 4096
        setter(before)
        assert setter() == before
