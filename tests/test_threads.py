"""Threads: n_threads resolution, the fork guard, and concurrent Python callers."""

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import cbn
from cbn import _threads


def _big(rng, shape=(16, 32, 24, 24)):
    return rng.standard_normal(shape).astype(np.float32)


def test_set_get_num_threads():
    default = cbn.get_num_threads()
    try:
        cbn.set_num_threads(1)
        assert cbn.get_num_threads() == 1
        cbn.set_num_threads(3)
        assert cbn.get_num_threads() == 3
        cbn.set_num_threads(np.int64(2))
        assert cbn.get_num_threads() == 2
    finally:
        cbn.set_num_threads(None)
    assert cbn.get_num_threads() == default


@pytest.mark.parametrize("env,want", [("1", 1), ("3", 3)])
def test_omp_num_threads_is_honoured(env, want):
    code = "import cbn; print(cbn.get_num_threads(), cbn.show_config(False)['openmp'])"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": env},
                         capture_output=True, text=True, check=True).stdout.split()
    openmp = out[1] == "True"
    assert int(out[0]) == (want if openmp else 1)


def test_small_work_runs_serially():
    assert _threads.resolve(8, 100) == 1
    assert _threads.resolve(None, _threads.SERIAL_BELOW - 1) == 1
    assert _threads.resolve(2, _threads.SERIAL_BELOW) == 2


def test_float16_passes_count_half(monkeypatch, rng):
    """A single output pass (inference, scale_shift) counts float16 values at half
    weight against the serial threshold; training, the backward and other dtypes count
    every value."""
    from cbn import _api
    got = []

    def spy(n_threads, work):
        got.append(_threads.resolve(n_threads, work))
        return got[-1]
    monkeypatch.setattr(_api, "resolve", spy)
    n = _threads.SERIAL_BELOW + 64          # serial for float16 passes only
    C = 4
    w, b = np.ones(C, np.float32), np.zeros(C, np.float32)
    for dtype, want in ((np.float16, 1), (np.float32, 2), (np.float64, 2)):
        x = rng.standard_normal((n // C, C)).astype(dtype)
        got.clear()
        cbn.batch_norm(x, np.zeros(C), np.ones(C), w, b, n_threads=2)
        cbn.scale_shift(x, w, b, n_threads=2)
        assert got == [want, want], dtype
        got.clear()
        y, m, inv = cbn.batch_norm(x, weight=w, bias=b, training=True, return_stats=True,
                                   n_threads=2)
        cbn.batch_norm_backward(x, x, m, inv, w, n_threads=2)
        assert got == [2, 2], dtype
    x = rng.standard_normal((2 * n // C, C)).astype(np.float16)
    got.clear()
    cbn.batch_norm(x, np.zeros(C), np.ones(C), w, b, n_threads=2)
    assert got == [2]


@pytest.mark.parametrize("shape,axis", [((16, 32, 24, 24), 1), ((16, 24, 24, 32), -1),
                                        ((8192, 40), 1)])
def test_thread_counts_agree(shape, axis, rng):
    """1, 2 and 5 threads: identical for planar layouts (one thread owns a channel);
    within summation rounding for interleaved ones (per-thread partials; float32
    partials in the backward's sums)."""
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    res = {}
    for nt in (1, 2, 5):
        y, m, inv = cbn.batch_norm(x, training=True, axis=axis, return_stats=True, n_threads=nt)
        dx, dw, db = cbn.batch_norm_backward(dy, x, m, inv, axis=axis, n_threads=nt)
        res[nt] = (y, m, inv, dx, dw, db)
    for nt in (2, 5):
        for a, b in zip(res[1], res[nt]):
            if axis == 1 and len(shape) == 4:
                np.testing.assert_array_equal(a, b)
            else:
                np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(a).max())


def test_python_threads_get_the_serial_answers(rng):
    """8 Python threads calling every kernel at once get what one caller gets."""
    cases = []
    for shape, axis in [((8, 16, 20, 20), 1), ((8, 20, 20, 16), -1), ((4000, 12), 1)]:
        x = rng.standard_normal(shape).astype(np.float32)
        dy = rng.standard_normal(shape).astype(np.float32)
        C = x.shape[axis]
        rm, rv = rng.standard_normal(C), rng.uniform(0.5, 2, C)
        cases.append((x, dy, axis, rm, rv))

    def work(x, dy, axis, rm, rv):
        y, m, inv = cbn.batch_norm(x, training=True, axis=axis, return_stats=True, relu=True)
        ye = cbn.batch_norm(x, rm, rv, axis=axis)
        dx, dw, db = cbn.batch_norm_backward(dy, x, m, inv, y=y, axis=axis)
        mean, var = cbn.batch_stats(x, axis=axis)
        return [y, m, inv, ye, dx, dw, db, mean, var]

    expected = [work(*c) for c in cases]
    errors = []
    barrier = threading.Barrier(8)

    def run(k):
        try:
            barrier.wait()
            for rep in range(10):
                i = (k + rep) % len(cases)
                for a, b in zip(work(*cases[i]), expected[i]):
                    np.testing.assert_array_equal(a, b)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread did not finish"
    assert not errors, errors[0]


def _wait(pid, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_after_thread_team_finishes(rng):
    """GNU libgomp hangs a forked child in its next parallel region if the parent had
    used a thread team: the child must run serially, and get the same answers."""
    x = _big(rng)
    want = cbn.batch_norm(x, training=True, n_threads=2)   # the parent uses a team
    assert _threads._state["team_used"] or not cbn.show_config(False)["openmp"]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: exit code says what happened
        code = 1
        try:
            os.close(r)
            y = cbn.batch_norm(x, training=True)                 # default threads
            y2 = cbn.batch_norm(x, training=True, n_threads=2)   # explicit threads
            ok = (np.array_equal(y, want) and np.array_equal(y2, want)
                  and cbn.get_num_threads() == 1 and cbn.show_config(False)["forked_serial"])
            os.write(w, b"ok" if ok else b"wrong")
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    status = _wait(pid, 60)
    msg = os.read(r, 16)
    os.close(r)
    assert status is not None, "forked child hung"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert msg == b"ok", msg
    assert cbn.get_num_threads() >= 1 and not _threads._state["forked_serial"]


def test_multiprocessing_fork_and_spawn(rng):
    import functools
    import multiprocessing as mp
    x = _big(rng, (8, 16, 24, 24))
    want = cbn.batch_norm(x, training=True, n_threads=2)
    # a function the workers can import (test modules are not importable there)
    work = functools.partial(cbn.batch_norm, training=True)
    for method in ("fork", "spawn"):
        if method not in mp.get_all_start_methods():
            continue
        with mp.get_context(method).Pool(2) as pool:
            res = pool.map_async(work, [x, x]).get(timeout=60)
        for y in res:
            np.testing.assert_array_equal(y, want)
