"""``python -m cbn``: show the configuration, normalize a sample batch, time it against NumPy."""

import argparse
import time

import numpy as np

import cbn


def _median_ms(fn, repeats):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * float(np.median(times))


def _numpy_train(x, axes, w, b, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    scale = w / np.sqrt(var + eps)
    return (x - mean) * scale + b


def _numpy_eval(x, scale, shift, out):
    np.multiply(x, scale, out=out)
    return np.add(out, shift, out=out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cbn", description=__doc__)
    ap.add_argument("--shape", default="16,64,56,56", help="N,C,H,W of the sample batch")
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    n, c, h, w = (int(s) for s in args.shape.split(","))

    print("cbn configuration")
    print("-----------------")
    cbn.show_config()
    print()

    rng = np.random.default_rng(0)
    nchw = (rng.standard_normal((n, c, h, w), dtype=np.float32) * 2 + 3)
    gamma = rng.uniform(0.5, 2, c).astype(np.float32)
    beta = rng.uniform(-1, 1, c).astype(np.float32)
    rmean, rvar = np.zeros(c, np.float32), np.ones(c, np.float32)
    print(f"sample batch: float32, {nchw.nbytes / 2**20:.1f} MiB, threads={cbn.get_num_threads()}, "
          f"median of {args.repeats}")
    print(f"{'layout':<6} {'op':<10} {'cbn ms':>9} {'NumPy ms':>9} {'speedup':>8} {'max |diff|':>11}")
    for layout in ("NCHW", "NHWC"):
        x = nchw if layout == "NCHW" else np.ascontiguousarray(nchw.transpose(0, 2, 3, 1))
        axis = 1 if layout == "NCHW" else -1
        bshape = [1] * 4
        bshape[axis] = c
        axes = tuple(k for k in range(4) if k != axis % 4)
        out = np.empty_like(x)
        scale, shift = cbn.fold(rmean, rvar, gamma, beta)
        runs = {
            "training": (
                lambda: cbn.batch_norm(x, weight=gamma, bias=beta, training=True, axis=axis,
                                       out=out),
                lambda: _numpy_train(x, axes, gamma.reshape(bshape), beta.reshape(bshape))),
            "inference": (
                lambda: cbn.batch_norm(x, rmean, rvar, gamma, beta, axis=axis, out=out),
                lambda: _numpy_eval(x, scale.reshape(bshape), shift.reshape(bshape),
                                    np.empty_like(x))),
        }
        for op, (ours, theirs) in runs.items():
            diff = float(np.abs(ours().astype(np.float64) - theirs()).max())
            t_ours = _median_ms(ours, args.repeats)
            t_np = _median_ms(theirs, args.repeats)
            print(f"{layout:<6} {op:<10} {t_ours:9.2f} {t_np:9.2f} {t_np / t_ours:7.1f}x "
                  f"{diff:11.2e}")


if __name__ == "__main__":
    main()
