"""cbn kernels on the canonical ``(outer, C, inner)`` view.

Two loop families cover every layout:

planar       ``inner > 1``: each ``(o, c)`` run of ``inner`` values is contiguous;
             loops run along ``inner`` with per-channel scalars.
interleaved  ``inner == 1``: row ``o`` holds the C channels; loops run along C
             with per-channel arrays.

Contract (the Python layer checks it; kernels never validate or raise): arrays
are C-contiguous with equal shapes, per-channel arrays have length C, scratch
arrays have the sizes documented below, n_threads >= 1, and training sees at
least two values per channel.  Every kernel releases the GIL and touches no
global state, so concurrent calls are safe.

Numerics
--------
Reductions accumulate in double the sums of ``u`` and ``u * d`` with
``d = x - ref[c]``: with ``u = d`` and ``ref`` the channel's first value these
are shifted sums (exact for a constant channel; no cancellation when
|mean| >> std); with ``u = dy`` (masked by a ReLU output) and ``ref`` the mean
they are the two sums of the backward pass.  Outputs are computed in the data's
type (float or double) with the channel's center held as a ``hi + lo`` pair, so
``(x - hi) - lo`` keeps the digits that ``x * scale + shift`` would lose.
"""

from cython.parallel cimport prange
from libc.math cimport sqrt

from cbn._openmp cimport CBN_HAVE_OPENMP, CBN_OPENMP_DATE, omp_get_max_threads

import numpy as np


cdef extern from *:
    """
    #include "cbn_build_info.h"
    #if defined(__AVX512F__)
    #define CBN_SIMD "AVX-512"
    #elif defined(__AVX2__)
    #define CBN_SIMD "AVX2"
    #elif defined(__AVX__)
    #define CBN_SIMD "AVX"
    #elif defined(__SSE4_2__)
    #define CBN_SIMD "SSE4.2"
    #elif defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
    #define CBN_SIMD "SSE2"
    #elif defined(__ARM_NEON) || defined(_M_ARM64)
    #define CBN_SIMD "NEON"
    #else
    #define CBN_SIMD "scalar"
    #endif
    #if defined(__clang__)
    #define CBN_COMPILER "clang " __clang_version__
    #elif defined(__GNUC__)
    #define CBN_COMPILER "gcc " __VERSION__
    #elif defined(_MSC_VER)
    #define CBN_STR2(x) #x
    #define CBN_STR(x) CBN_STR2(x)
    #define CBN_COMPILER "MSVC " CBN_STR(_MSC_FULL_VER)
    #else
    #define CBN_COMPILER "unknown"
    #endif
    """
    const char* CBN_SIMD
    const char* CBN_COMPILER
    const char* CBN_BUILD_FLAGS
    const char* CBN_BUILD_COMPILER_TYPE
    const char* CBN_BUILD_OPENMP_MODE


ctypedef fused floating:
    float
    double

cdef enum:
    LANES = 8   # independent accumulators: lets the compiler vectorize reductions
    BLOCK = 1024     # planar reductions restart their lanes every BLOCK values
    ROW_BLOCK = 64   # interleaved reductions flush their partials every ROW_BLOCK rows
    PAD = 8     # doubles per 64-byte cache line (per-thread partials are padded)

# Rows of the (k, C) parameter arrays the apply kernels read.
cdef enum:
    P_HI = 0    # center, high part (compute type)
    P_LO = 1    # center, low part
    P_SCALE = 2
    P_SHIFT = 3
    P_GAIN = 4  # backward only: coefficient of dy


def build_info():
    """Compile-time facts about this build (used by cbn.show_config)."""
    return {
        "openmp": bool(CBN_HAVE_OPENMP),
        "openmp_date": int(CBN_OPENMP_DATE),
        "simd": CBN_SIMD.decode(),
        "compiler": CBN_COMPILER.decode(),
        "compiler_type": CBN_BUILD_COMPILER_TYPE.decode(),
        "flags": CBN_BUILD_FLAGS.decode(),
        "openmp_mode": CBN_BUILD_OPENMP_MODE.decode(),
    }


def max_threads():
    """OpenMP's omp_get_max_threads() (1 in a serial build)."""
    return omp_get_max_threads()


# ---------------------------------------------------------------- per channel

cdef inline void _finish_stats(double s1, double s2, double ref, double n,
                               double* mean, double* var) noexcept nogil:
    """Mean and biased variance from shifted sums about ``ref``."""
    cdef double d = s1 / n
    cdef double v = s2 / n - d * d
    mean[0] = ref + d
    var[0] = 0.0 if v < 0.0 else v      # NaN propagates (the comparison is false)


cdef inline double _invstd(double var, double eps) noexcept nogil:
    """1 / sqrt(var + eps), and 0 when var + eps == 0 (as PyTorch)."""
    cdef double t = var + eps
    return 0.0 if t == 0.0 else 1.0 / sqrt(t)


cdef inline void _set_params(floating[:, ::1] p, Py_ssize_t c, double center,
                             double scale, double shift) noexcept nogil:
    """Store y = ((x - hi) - lo) * scale + shift for channel c in the compute type."""
    cdef floating hi = <floating>center
    cdef double lo = center - <double>hi
    if lo != lo and center == center:   # center = +-inf: hi carries it
        lo = 0.0
    p[P_HI, c] = hi
    p[P_LO, c] = <floating>lo
    p[P_SCALE, c] = <floating>scale
    p[P_SHIFT, c] = <floating>shift


cdef inline void _set_grad_params(floating[:, ::1] p, Py_ssize_t c, double sg, double sgd,
                                  double mean, double invstd, double w, double n,
                                  bint training, double* dweight,
                                  double* dbias) noexcept nogil:
    """dx = ((x - hi) - lo) * scale + g * gain + shift for channel c.

    With k = w * invstd: training gives
    dx = k * (g - sum(g) / n - (x - mean) * invstd**2 * sum(g * (x - mean)) / n);
    frozen statistics give dx = k * g.
    """
    cdef double k = w * invstd
    if training:
        _set_params(p, c, mean, -k * invstd * invstd * sgd / n, -k * sg / n)
    else:
        _set_params(p, c, mean, 0.0, 0.0)
    p[P_GAIN, c] = <floating>k
    dweight[0] = sgd * invstd
    dbias[0] = sg


# ---------------------------------------------------------------- planar runs

cdef inline double _u(const floating* dy, const floating* y, Py_ssize_t i, double d,
                      bint grad, bint masked) noexcept nogil:
    """The reduced quantity: d itself for statistics, dy (0 where y <= 0) for gradients."""
    if not grad:
        return d
    if masked and y[i] <= 0:
        return 0.0
    return dy[i]


cdef inline void _run_sums(const floating* x, const floating* dy, const floating* y,
                           bint grad, bint masked, Py_ssize_t n, double ref,
                           double* acc) noexcept nogil:
    """acc[k] += u, acc[LANES + k] += u * (x - ref) over one contiguous run, k = i % LANES.

    Blocked: the lanes restart every BLOCK values and are then added into acc, so
    rounding errors grow like BLOCK / LANES + n / BLOCK rather than n / LANES.
    """
    cdef double a[2 * LANES]
    cdef Py_ssize_t blk, b, e, i, j, k
    cdef double d, u
    for blk in range((n + BLOCK - 1) // BLOCK):
        b = blk * BLOCK
        e = n if n - b < BLOCK else b + BLOCK
        for k in range(2 * LANES):
            a[k] = 0.0
        for j in range((e - b) // LANES):
            i = b + j * LANES
            for k in range(LANES):
                d = <double>x[i + k] - ref
                u = _u(dy, y, i + k, d, grad, masked)
                a[k] += u
                a[LANES + k] += u * d
        for i in range(e - (e - b) % LANES, e):
            d = <double>x[i] - ref
            u = _u(dy, y, i, d, grad, masked)
            a[0] += u
            a[LANES] += u * d
        for k in range(2 * LANES):
            acc[k] += a[k]


cdef struct Sums:
    double u        # sum of u
    double ud       # sum of u * (x - ref)


cdef inline Sums _plane_sums(const floating* x, const floating* dy, const floating* y,
                             bint grad, bint masked, Py_ssize_t outer, Py_ssize_t stride,
                             Py_ssize_t inner, double ref) noexcept nogil:
    """The two sums over one channel's runs x[o * stride : o * stride + inner]."""
    cdef double acc[2 * LANES]
    cdef Sums r
    cdef Py_ssize_t o, k
    for k in range(2 * LANES):
        acc[k] = 0.0
    for o in range(outer):
        _run_sums(x + o * stride, dy + o * stride, y + o * stride, grad, masked, inner,
                  ref, acc)
    r.u = 0.0
    r.ud = 0.0
    for k in range(LANES):
        r.u += acc[k]
        r.ud += acc[LANES + k]
    return r


cdef inline void _run_affine(const floating* x, floating* out, Py_ssize_t n,
                             const floating[:, ::1] p, Py_ssize_t c,
                             bint relu) noexcept nogil:
    cdef floating hi = p[P_HI, c], lo = p[P_LO, c], s = p[P_SCALE, c], t = p[P_SHIFT, c], v
    cdef Py_ssize_t i
    if relu:
        for i in range(n):
            v = ((x[i] - hi) - lo) * s + t
            out[i] = 0 if v < 0 else v      # NaN stays NaN
    else:
        for i in range(n):
            out[i] = ((x[i] - hi) - lo) * s + t


cdef inline void _run_dx(const floating* x, const floating* dy, const floating* y,
                         bint masked, floating* dx, Py_ssize_t n,
                         const floating[:, ::1] p, Py_ssize_t c) noexcept nogil:
    cdef floating hi = p[P_HI, c], lo = p[P_LO, c], s = p[P_SCALE, c], t = p[P_SHIFT, c]
    cdef floating k = p[P_GAIN, c], g
    cdef Py_ssize_t i
    for i in range(n):
        g = 0 if masked and y[i] <= 0 else dy[i]
        dx[i] = ((x[i] - hi) - lo) * s + g * k + t


# ----------------------------------------------------------- interleaved rows

cdef inline void _row_sums(const floating* x, const floating* dy, const floating* y,
                           bint grad, bint masked, Py_ssize_t C, const double* ref,
                           double* s1, double* s2) noexcept nogil:
    """s1[c] += u, s2[c] += u * (x[c] - ref[c]) for one row of C channels."""
    cdef Py_ssize_t c
    cdef double d, u
    for c in range(C):
        d = <double>x[c] - ref[c]
        u = _u(dy, y, c, d, grad, masked)
        s1[c] += u
        s2[c] += u * d


cdef inline void _flush(double* total, double* block, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(m):
        total[c] += block[c]
        block[c] = 0.0


cdef void _rows_sums(const floating* x, const floating* dy, const floating* y, bint grad,
                     bint masked, Py_ssize_t rows, Py_ssize_t C, const double* ref,
                     double* s1, double* s2, double[:, ::1] scratch,
                     int n_threads) noexcept nogil:
    """Interleaved reduction.  Thread slot t sums rows [rows*t/T, rows*(t+1)/T) in
    blocks of ROW_BLOCK rows into its own partials: scratch[t] holds, each padded to
    cpad doubles, totals of u and u*d, then the current block's.  The slots are merged
    in order, so the result depends only on T = n_threads."""
    cdef Py_ssize_t T = n_threads, cpad = scratch.shape[1] // 4
    cdef Py_ssize_t t, r, r0, c
    cdef double* part
    for t in prange(T, num_threads=n_threads, schedule='static', chunksize=1,
                    use_threads_if=n_threads > 1):
        part = &scratch[t, 0]
        for c in range(4 * cpad):
            part[c] = 0.0
        r0 = rows * t // T
        for r in range(r0, rows * (t + 1) // T):
            if r > r0 and (r - r0) % ROW_BLOCK == 0:
                _flush(part, part + 2 * cpad, 2 * cpad)
            _row_sums(x + r * C, dy + r * C, y + r * C, grad, masked, C, ref,
                      part + 2 * cpad, part + 3 * cpad)
        _flush(part, part + 2 * cpad, 2 * cpad)
    for c in range(C):
        s1[c] = 0.0
        s2[c] = 0.0
    for t in range(T):
        for c in range(C):
            s1[c] += scratch[t, c]
            s2[c] += scratch[t, cpad + c]


cdef inline void _row_affine(const floating* x, floating* out, Py_ssize_t C,
                             const floating[:, ::1] p, bint relu) noexcept nogil:
    cdef const floating* hi = &p[P_HI, 0]
    cdef const floating* lo = &p[P_LO, 0]
    cdef const floating* s = &p[P_SCALE, 0]
    cdef const floating* t = &p[P_SHIFT, 0]
    cdef Py_ssize_t c
    cdef floating v
    if relu:
        for c in range(C):
            v = ((x[c] - hi[c]) - lo[c]) * s[c] + t[c]
            out[c] = 0 if v < 0 else v
    else:
        for c in range(C):
            out[c] = ((x[c] - hi[c]) - lo[c]) * s[c] + t[c]


cdef inline void _row_dx(const floating* x, const floating* dy, const floating* y,
                         bint masked, floating* dx, Py_ssize_t C,
                         const floating[:, ::1] p) noexcept nogil:
    cdef const floating* hi = &p[P_HI, 0]
    cdef const floating* lo = &p[P_LO, 0]
    cdef const floating* s = &p[P_SCALE, 0]
    cdef const floating* t = &p[P_SHIFT, 0]
    cdef const floating* k = &p[P_GAIN, 0]
    cdef Py_ssize_t c
    cdef floating g
    for c in range(C):
        g = 0 if masked and y[c] <= 0 else dy[c]
        dx[c] = ((x[c] - hi[c]) - lo[c]) * s[c] + g * k[c] + t[c]


# ------------------------------------------------------------------- drivers

cdef inline void _plane_affine(const floating* x, floating* out, Py_ssize_t outer,
                               Py_ssize_t stride, Py_ssize_t inner,
                               const floating[:, ::1] p, Py_ssize_t c,
                               bint relu) noexcept nogil:
    cdef Py_ssize_t o
    for o in range(outer):
        _run_affine(x + o * stride, out + o * stride, inner, p, c, relu)


cdef inline void _plane_dx(const floating* x, const floating* dy, const floating* y,
                           bint masked, floating* dx, Py_ssize_t outer, Py_ssize_t stride,
                           Py_ssize_t inner, const floating[:, ::1] p,
                           Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t o, off
    for o in range(outer):
        off = o * stride
        _run_dx(x + off, dy + off, y + off, masked, dx + off, inner, p, c)


cdef void _apply(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                 const floating[:, ::1] p, bint relu, int n_threads) noexcept nogil:
    """out = ((x - hi) - lo) * scale + shift, then max(., 0) with relu."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2], q, o
    if inner > 1:       # planes are contiguous and consecutive: split them evenly
        for q in prange(outer * C, num_threads=n_threads, schedule='static',
                        use_threads_if=n_threads > 1):
            _run_affine(&x[0, 0, 0] + q * inner, &out[0, 0, 0] + q * inner, inner, p,
                        q % C, relu)
    else:
        for o in prange(outer, num_threads=n_threads, schedule='static',
                        use_threads_if=n_threads > 1):
            _row_affine(&x[o, 0, 0], &out[o, 0, 0], C, p, relu)


cdef void _apply_dx(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                    const floating[:, :, ::1] y, bint masked, floating[:, :, ::1] dx,
                    const floating[:, ::1] p, int n_threads) noexcept nogil:
    """dx = ((x - hi) - lo) * scale + g * gain + shift, interleaved layout."""
    cdef Py_ssize_t o
    for o in prange(x.shape[0], num_threads=n_threads, schedule='static',
                    use_threads_if=n_threads > 1):
        _row_dx(&x[o, 0, 0], &dy[o, 0, 0], &y[o, 0, 0], masked, &dx[o, 0, 0], x.shape[1], p)


cdef void _sums(const floating[:, :, ::1] x, const floating[:, :, ::1] dy,
                const floating[:, :, ::1] y, bint grad, bint masked, const double* ref,
                double* s1, double* s2, double[:, ::1] scratch,
                int n_threads) noexcept nogil:
    """Per-channel sums of u and u * (x - ref) (see the module docstring)."""
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2], c, off
    cdef Sums r
    if inner > 1:
        for c in prange(C, num_threads=n_threads, schedule='static',
                        use_threads_if=n_threads > 1):
            off = c * inner
            r = _plane_sums(&x[0, 0, 0] + off, &dy[0, 0, 0] + off, &y[0, 0, 0] + off, grad,
                            masked, outer, C * inner, inner, ref[c])
            s1[c] = r.u
            s2[c] = r.ud
    else:
        _rows_sums(&x[0, 0, 0], &dy[0, 0, 0], &y[0, 0, 0], grad, masked, outer, C, ref,
                   s1, s2, scratch, n_threads)


# ------------------------------------------------------------- Python entries
# Arrays come from cbn._api: C-contiguous, shapes consistent, per-channel float64
# arrays of length C.  The entries allocate only O(C x n_threads) scratch.

cdef object _compute_dtype(const floating[:, :, ::1] x):
    return np.float32 if floating is float else np.float64


cdef double[:, ::1] _scratch(Py_ssize_t inner, Py_ssize_t C, int n_threads):
    """Per-thread partials for interleaved reductions, each padded to whole cache lines."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    if inner > 1:
        return np.empty((1, 4 * PAD))
    return np.empty((n_threads, 4 * cpad))


cdef void _batch_stats(const floating[:, :, ::1] x, double[::1] ref, double[::1] s1,
                       double[::1] s2, double[::1] mean, double[::1] var,
                       double[:, ::1] scratch, int n_threads) noexcept nogil:
    cdef Py_ssize_t c
    cdef double n = <double>x.shape[0] * <double>x.shape[2]
    for c in range(x.shape[1]):
        ref[c] = x[0, c, 0]
    _sums(x, x, x, False, False, &ref[0], &s1[0], &s2[0], scratch, n_threads)
    for c in range(x.shape[1]):
        _finish_stats(s1[c], s2[c], ref[c], n, &mean[c], &var[c])


def stats(const floating[:, :, ::1] x, double[::1] mean, double[::1] var, int n_threads):
    """OUT mean, var: per-channel mean and biased variance of x (outer * inner >= 1)."""
    cdef Py_ssize_t C = x.shape[1]
    cdef double[:, ::1] w = np.empty((3, C))
    cdef double[:, ::1] scratch = _scratch(x.shape[2], C, n_threads)
    with nogil:
        _batch_stats(x, w[0], w[1], w[2], mean, var, scratch, n_threads)


def affine(const floating[:, :, ::1] x, floating[:, :, ::1] out, const double[::1] center,
           const double[::1] scale, const double[::1] shift, bint relu, int n_threads):
    """OUT out = (x - center) * scale + shift per channel (max(., 0) with relu)."""
    cdef Py_ssize_t c
    cdef floating[:, ::1] p = np.empty((4, x.shape[1]), dtype=_compute_dtype(x))
    with nogil:
        for c in range(x.shape[1]):
            _set_params(p, c, center[c], scale[c], shift[c])
        _apply(x, out, p, relu, n_threads)


def train_forward(const floating[:, :, ::1] x, floating[:, :, ::1] out,
                  const double[::1] weight, const double[::1] bias, double eps, bint relu,
                  double[::1] mean, double[::1] var, int n_threads):
    """OUT out, mean, var: normalize with the batch statistics (outer * inner >= 2).

    Planar: one task per channel computes its statistics and normalizes the same
    slab while it is still in cache.  Interleaved: per-thread partial sums, then
    one parallel pass over the rows.
    """
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2], c, off
    cdef double n = <double>outer * <double>inner, ref
    cdef Sums r
    cdef floating[:, ::1] p = np.empty((4, C), dtype=_compute_dtype(x))
    cdef double[:, ::1] w = np.empty((3, C))
    cdef double[:, ::1] scratch = _scratch(inner, C, n_threads)
    with nogil:
        if inner > 1:
            for c in prange(C, num_threads=n_threads, schedule='static',
                            use_threads_if=n_threads > 1):
                off = c * inner
                ref = x[0, c, 0]
                r = _plane_sums(&x[0, 0, 0] + off, &x[0, 0, 0], &x[0, 0, 0], False, False,
                                outer, C * inner, inner, ref)
                _finish_stats(r.u, r.ud, ref, n, &mean[c], &var[c])
                _set_params(p, c, mean[c], weight[c] * _invstd(var[c], eps), bias[c])
                _plane_affine(&x[0, 0, 0] + off, &out[0, 0, 0] + off, outer, C * inner,
                              inner, p, c, relu)
        else:
            _batch_stats(x, w[0], w[1], w[2], mean, var, scratch, n_threads)
            for c in range(C):
                _set_params(p, c, mean[c], weight[c] * _invstd(var[c], eps), bias[c])
            _apply(x, out, p, relu, n_threads)


def backward(const floating[:, :, ::1] dy, const floating[:, :, ::1] x,
             const floating[:, :, ::1] y, bint masked, const double[::1] mean,
             const double[::1] invstd, const double[::1] weight, bint training,
             floating[:, :, ::1] dx, double[::1] dweight, double[::1] dbias, int n_threads):
    """OUT dx, dweight, dbias: gradients of batch norm (see _set_grad_params).

    With masked, dy counts only where y > 0 (y: the output of a ReLU forward);
    otherwise y is not read (pass x).
    """
    cdef Py_ssize_t outer = x.shape[0], C = x.shape[1], inner = x.shape[2], c, off
    cdef double n = <double>outer * <double>inner
    cdef Sums r
    cdef floating[:, ::1] p = np.empty((5, C), dtype=_compute_dtype(x))
    cdef double[:, ::1] scratch = _scratch(inner, C, n_threads)
    with nogil:
        if inner > 1:
            for c in prange(C, num_threads=n_threads, schedule='static',
                            use_threads_if=n_threads > 1):
                off = c * inner
                r = _plane_sums(&x[0, 0, 0] + off, &dy[0, 0, 0] + off, &y[0, 0, 0] + off,
                                True, masked, outer, C * inner, inner, mean[c])
                _set_grad_params(p, c, r.u, r.ud, mean[c], invstd[c], weight[c], n,
                                 training, &dweight[c], &dbias[c])
                _plane_dx(&x[0, 0, 0] + off, &dy[0, 0, 0] + off, &y[0, 0, 0] + off,
                          masked, &dx[0, 0, 0] + off, outer, C * inner, inner, p, c)
        else:
            _sums(x, dy, y, True, masked, &mean[0], &dbias[0], &dweight[0], scratch,
                  n_threads)
            for c in range(C):
                _set_grad_params(p, c, dbias[c], dweight[c], mean[c], invstd[c],
                                 weight[c], n, training, &dweight[c], &dbias[c])
            _apply_dx(x, dy, y, masked, dx, p, n_threads)
