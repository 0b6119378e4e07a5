"""Quick timing: cbn vs NumPy vs PyTorch (when installed), float32, all cores.

    python bench/quick.py [--repeats 15]

For each shape x layout x op, every contender is timed in the same run,
interleaved round by round, and the median per call is reported.  cbn is timed
with out= (its fast path) and allocating; NumPy with the best plain-NumPy
formulation; PyTorch with its allocating functional API (F.batch_norm) and
aten.native_batch_norm_backward, channels_last tensors for NHWC.
"""

import argparse
import time

import numpy as np

import cbn

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is optional
    torch = None

SHAPES = [(32, 128, 56, 56), (1, 16, 8, 8)]
EPS = 1e-5


def _per_call(fn, budget=0.02):
    """Calls per timing sample so that one sample lasts about `budget` seconds."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = time.perf_counter() - t0
    return max(1, int(budget / max(one, 1e-7)))


def _numpy_ops(x, axis, w, b, rm, rv, dy):
    axes = tuple(k for k in range(x.ndim) if k != axis % x.ndim)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    w, b, rm, rv = (a.reshape(shape) for a in (w, b, rm, rv))
    scale = w / np.sqrt(rv + EPS)
    shift = b - rm * scale
    mean = x.mean(axis=axes, keepdims=True)
    invstd = 1 / np.sqrt(x.var(axis=axes, keepdims=True) + EPS)
    n = x.size // x.shape[axis]

    def infer():
        y = np.multiply(x, scale)
        return np.add(y, shift, out=y)

    def train():
        m = x.mean(axis=axes, keepdims=True)
        v = x.var(axis=axes, keepdims=True)
        return (x - m) * (w / np.sqrt(v + EPS)) + b

    def backward():
        xhat = (x - mean) * invstd
        db = dy.sum(axis=axes, keepdims=True)
        dw = (dy * xhat).sum(axis=axes, keepdims=True)
        return (w * invstd) * (dy - db / n - xhat * (dw / n)), dw, db

    return {"inference": infer, "training": train, "backward": backward}


def _cbn_ops(x, axis, w, b, rm, rv, dy, out):
    _, mean, invstd = cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis,
                                     return_stats=True)
    o = {} if out is None else {"out": out}
    return {
        "inference": lambda: cbn.batch_norm(x, rm, rv, w, b, axis=axis, **o),
        "training": lambda: cbn.batch_norm(x, weight=w, bias=b, training=True, axis=axis, **o),
        "backward": lambda: cbn.batch_norm_backward(dy, x, mean, invstd, w, axis=axis, **o),
    }


def _torch_ops(x_nchw, layout, w, b, rm, rv, dy_nchw):
    fmt = torch.channels_last if layout == "NHWC" else torch.contiguous_format
    tx = torch.from_numpy(x_nchw).contiguous(memory_format=fmt)
    tdy = torch.from_numpy(dy_nchw).contiguous(memory_format=fmt)
    tw, tb, trm, trv = (torch.from_numpy(a) for a in (w, b, rm, rv))
    _, smean, sinv = torch.native_batch_norm(tx, tw, tb, None, None, True, 0.1, EPS)
    with torch.no_grad():
        return {
            "inference": lambda: F.batch_norm(tx, trm, trv, tw, tb, training=False, eps=EPS),
            "training": lambda: F.batch_norm(tx, None, None, tw, tb, training=True, eps=EPS),
            "backward": lambda: torch.ops.aten.native_batch_norm_backward(
                tdy, tx, tw, None, None, smean, sinv, True, EPS, [True, True, True]),
        }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    threads = cbn.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"cbn {cbn.__version__}, NumPy {np.__version__}, "
          f"PyTorch {torch.__version__ if torch else 'not installed'}, threads={threads}, "
          f"simd={cbn.show_config(False)['simd']}; median us per call, float32")
    names = ["cbn out=", "cbn", "NumPy"] + (["PyTorch"] if torch else [])
    print(f"{'shape':<18} {'layout':<6} {'op':<10}" + "".join(f"{n:>11}" for n in names)
          + f"{'vs NumPy':>10}" + (f"{'vs PyTorch':>11}" if torch else ""))
    for shape in SHAPES:
        C = shape[1]
        x_nchw = (rng.standard_normal(shape, dtype=np.float32) * 2 + 1)
        dy_nchw = rng.standard_normal(shape, dtype=np.float32)
        w, b = rng.uniform(0.5, 2, C).astype(np.float32), rng.uniform(-1, 1, C).astype(np.float32)
        rm, rv = rng.standard_normal(C).astype(np.float32), rng.uniform(0.5, 2, C).astype(np.float32)
        for layout in ("NCHW", "NHWC"):
            if layout == "NCHW":
                x, dy, axis = x_nchw, dy_nchw, 1
            else:
                x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1))
                dy = np.ascontiguousarray(dy_nchw.transpose(0, 2, 3, 1))
                axis = -1
            contenders = [_cbn_ops(x, axis, w, b, rm, rv, dy, np.empty_like(x)),
                          _cbn_ops(x, axis, w, b, rm, rv, dy, None),
                          _numpy_ops(x, axis, w, b, rm, rv, dy)]
            if torch is not None:
                contenders.append(_torch_ops(x_nchw, layout, w, b, rm, rv, dy_nchw))
            for op in ("inference", "training", "backward"):
                fns = [c[op] for c in contenders]
                reps = [_per_call(f) for f in fns]
                samples = [[] for _ in fns]
                for _ in range(args.repeats):       # interleaved rounds
                    for f, r, s in zip(fns, reps, samples):
                        t0 = time.perf_counter()
                        for _ in range(r):
                            f()
                        s.append((time.perf_counter() - t0) / r)
                us = [1e6 * float(np.median(s)) for s in samples]
                line = (f"{'x'.join(map(str, shape)):<18} {layout:<6} {op:<10}"
                        + "".join(f"{u:11.1f}" for u in us) + f"{us[2] / us[1]:9.1f}x")
                if torch is not None:
                    line += f"{us[3] / us[1]:10.2f}x"
                print(line, flush=True)


if __name__ == "__main__":
    main()
