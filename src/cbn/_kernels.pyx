"""cbn kernels on the canonical ``(outer, C, inner)`` layout.

The Python layer (cbn._api) validates everything and passes arrays that are
dense in one common axis order, so that element ``(o, c, i)`` of each lies at
``data[(o * C + c) * inner + i]``; kernels never validate, raise or touch
Python objects inside their loops.  Two loop families cover every layout:

planar       ``inner > 1``: each ``(o, c)`` run of ``inner`` values is contiguous;
             loops run along ``inner`` with per-channel scalars.
interleaved  ``inner == 1``: row ``o`` holds the C channels; loops run along C
             with per-channel arrays.

Data types: float32 and float64 are computed in their own type; float16 is
computed in float32 and rounded once on store (the C primitives convert 8 values
at a time in registers with F16C, else blocks of CBN_HCHUNK values).  Statistics
accumulate in double (float16 with F16C: 32 values per vector lane in float32
first, cbn_sums_f16).  Every kernel runs without the GIL; scratch is allocated per call
(O(C x threads)), so concurrent calls are safe.

Numerics
--------
Reductions accumulate, in double and in blocks, the sums of ``d = x - ref``
and ``d * d`` (statistics; ``ref`` is the channel's first value: exact for a
constant channel, no cancellation when |mean| >> std), or of ``g`` and
``g * (x - mean)`` (backward; ``g`` is dy, zero where a ReLU output is <= 0).
Outputs subtract the channel's center, rounded to the compute type, before
scaling: ``(x - hi) * scale + shift'`` with the rest of the center folded into
``shift'`` in double (_set_params).

The innermost loops over one float32/float64 run or row (the float64 sums, the
output passes) are the C primitives of _kernels_c.h, compiled as functions of
their own (``omp simd``); how the work is split, blocked and merged, every
per-channel computation and the float16 block conversions are here.  Output
passes over at least as much data as the last-level cache holds write their
outputs with streaming stores (stream_from; float16 ones only with F16C).

This file is compiled twice on x86-64: ``_kernels`` (the portable baseline)
and ``_kernels_avx2`` (AVX2 + FMA + F16C), chosen at import by cbn._dispatch.
"""

cimport numpy as cnp
from cython.parallel cimport prange
from cpython.pyport cimport PY_SSIZE_T_MAX
from libc.stdint cimport uintptr_t
from libc.stdlib cimport abort, free, malloc

from cbn._openmp cimport CBN_HAVE_OPENMP, CBN_OPENMP_DATE, omp_get_max_threads
from cbn._rare import count as _count

cnp.import_array()


cdef extern from "_kernels_c.h":
    void cbn_prefetch(const void* p, Py_ssize_t nbytes) noexcept nogil
    const char* CBN_SIMD
    const char* CBN_COMPILER
    const char* CBN_HALF_HW
    const char* CBN_BUILD_FLAGS
    const char* CBN_BUILD_COMPILER_TYPE
    const char* CBN_BUILD_OPENMP_MODE
    ctypedef struct cbn_half:
        pass
    float cbn_h2f(cbn_half h) noexcept nogil
    cbn_half cbn_f2h(float f) noexcept nogil
    float cbn_h2f_soft(unsigned short h) noexcept nogil
    unsigned short cbn_f2h_soft(float f) noexcept nogil
    int cbn_cpu_has_avx2() noexcept nogil
    Py_ssize_t cbn_llc_bytes() noexcept nogil
    int cbn_cpu_is_intel() noexcept nogil
    int cbn_amd_family() noexcept nogil
    int cbn_cpu_has_avx512f() noexcept nogil
    int cbn_cpu_runs_avx512f() noexcept nogil
    bint CBN_CAN_STREAM
    Py_ssize_t CBN_TILE_BYTES
    Py_ssize_t cbn_tile_block
    void cbn_stream_fence() noexcept nogil
    void cbn_run_affine_pf_f32(const float*, float*, Py_ssize_t, float, float, float,
                               int) noexcept nogil
    void cbn_run_affine_pf_f64(const double*, double*, Py_ssize_t, double, double, double,
                               int) noexcept nogil
    void cbn_run_affine_f32(const float*, float*, Py_ssize_t, float, float, float,
                            int) noexcept nogil
    void cbn_run_affine_f64(const double*, double*, Py_ssize_t, double, double, double,
                            int) noexcept nogil
    void cbn_rows_affine_f32(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             const float*, const float*, const float*, int) noexcept nogil
    void cbn_rows_affine_f64(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             const double*, const double*, const double*, int) noexcept nogil
    void cbn_run_dx_f32(const float*, const float*, const float*, float*, Py_ssize_t, float,
                        float, float, float) noexcept nogil
    void cbn_run_dx_f64(const double*, const double*, const double*, double*, Py_ssize_t,
                        double, double, double, double) noexcept nogil
    void cbn_rows_dx_f32(const float*, const float*, const float*, float*, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const float*, const float*, const float*,
                         const float*) noexcept nogil
    void cbn_rows_dx_f64(const double*, const double*, const double*, double*, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                         const double*) noexcept nogil
    void cbn_run_affine_nt_f32(const float*, float*, Py_ssize_t, float, float, float,
                            int) noexcept nogil
    void cbn_run_affine_nt_f64(const double*, double*, Py_ssize_t, double, double, double,
                            int) noexcept nogil
    void cbn_run_affine_short_f32(const float*, float*, Py_ssize_t, float, float, float,
                                  int) noexcept nogil
    void cbn_run_affine_short_f64(const double*, double*, Py_ssize_t, double, double, double,
                                  int) noexcept nogil
    void cbn_run_dx_short_f32(const float*, const float*, const float*, float*, Py_ssize_t,
                              float, float, float, float) noexcept nogil
    void cbn_run_dx_short_f64(const double*, const double*, const double*, double*,
                              Py_ssize_t, double, double, double, double) noexcept nogil
    double cbn_invstd1(double) noexcept nogil
    void cbn_scale_invstd(double*, const double*, double, Py_ssize_t) noexcept nogil
    void cbn_scale_invstd_exact(double*, const double*, double, Py_ssize_t) noexcept nogil
    void cbn_params_f32(const float* m, const float* v, const float* w, const float* b,
                        const double* dflt, double eps, int inv, float* hi, float* s,
                        float* t, Py_ssize_t n) noexcept nogil
    void cbn_runs_affine_short_f32(const float*, float*, Py_ssize_t, Py_ssize_t, const float*,
                                   const float*, const float*, int) noexcept nogil
    void cbn_runs_affine_short_f16(const cbn_half*, cbn_half*, Py_ssize_t, Py_ssize_t,
                                   const float*, const float*, const float*, int) noexcept nogil
    void cbn_runs_affine_short_f64(const double*, double*, Py_ssize_t, Py_ssize_t,
                                   const double*, const double*, const double*,
                                   int) noexcept nogil
    void cbn_runs_dx_short_f32(const float*, const float*, const float*, float*, Py_ssize_t,
                               Py_ssize_t, const float*, const float*, const float*,
                               const float*) noexcept nogil
    void cbn_runs_dx_short_f64(const double*, const double*, const double*, double*,
                               Py_ssize_t, Py_ssize_t, const double*, const double*,
                               const double*, const double*) noexcept nogil
    void cbn_runs_dx_short_f16(const cbn_half*, const cbn_half*, const cbn_half*, cbn_half*,
                               Py_ssize_t, Py_ssize_t, const float*, const float*,
                               const float*, const float*) noexcept nogil
    void cbn_rows_affine_tiled_f32(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   const float*, const float*, const float*, int) noexcept nogil
    void cbn_rows_affine_f32_512(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                 const float*, const float*, const float*, int) noexcept nogil
    void cbn_rows_dx_f32_512(const float*, const float*, const float*, float*, Py_ssize_t,
                             Py_ssize_t, Py_ssize_t, const float*, const float*, const float*,
                             const float*) noexcept nogil
    void cbn_period_affine_f32_512(const float*, float*, Py_ssize_t, Py_ssize_t, const float*,
                                   const float*, const float*, int) noexcept nogil
    void cbn_period64_dx_f32_512(const float*, const float*, const float*, float*, Py_ssize_t,
                                 const float*, const float*, const float*,
                                 const float*) noexcept nogil
    void cbn_rows64_sums_f32_512(const float*, Py_ssize_t, Py_ssize_t, const double*, double*,
                                 double*) noexcept nogil
    void cbn_rows64_gsums_f32_512(const float*, const float*, const float*, Py_ssize_t,
                                  Py_ssize_t, const double*, double*, double*) noexcept nogil
    void cbn_rows64_sums_f64_512(const double*, Py_ssize_t, Py_ssize_t, const double*, double*,
                                 double*) noexcept nogil
    void cbn_rows64_gsums_f64_512(const double*, const double*, const double*, Py_ssize_t,
                                  Py_ssize_t, const double*, double*, double*) noexcept nogil
    int cbn_rows_tile(Py_ssize_t, Py_ssize_t) noexcept nogil
    void cbn_rows_affine_tiled_f64(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                   const double*, const double*, const double*, int) noexcept nogil
    void cbn_rows_dx_tiled_f32(const float*, const float*, const float*, float*, Py_ssize_t,
                               Py_ssize_t, Py_ssize_t, const float*, const float*, const float*,
                               const float*) noexcept nogil
    void cbn_rows_dx_tiled_f64(const double*, const double*, const double*, double*,
                               Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                               const double*, const double*, const double*) noexcept nogil
    void cbn_rows_affine_nt_f32(const float*, float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             const float*, const float*, const float*, int) noexcept nogil
    void cbn_rows_affine_nt_f64(const double*, double*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             const double*, const double*, const double*, int) noexcept nogil
    void cbn_run_dx_nt_f32(const float*, const float*, const float*, float*, Py_ssize_t, float,
                        float, float, float) noexcept nogil
    void cbn_run_dx_nt_f64(const double*, const double*, const double*, double*, Py_ssize_t,
                        double, double, double, double) noexcept nogil
    void cbn_rows_dx_nt_f32(const float*, const float*, const float*, float*, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const float*, const float*, const float*,
                         const float*) noexcept nogil
    void cbn_rows_dx_nt_f64(const double*, const double*, const double*, double*, Py_ssize_t,
                         Py_ssize_t, Py_ssize_t, const double*, const double*, const double*,
                         const double*) noexcept nogil
    void cbn_rows_sums_f32(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                           double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_sums_f64(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                           double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_sums_tiled_f32(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                 const double*, double*, double*) noexcept nogil
    void cbn_rows_sums8_f32(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                            double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_sums8_f32_512(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                const double*, double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_sums16_f32(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*,
                             double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_gsums8_f32(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                             Py_ssize_t, const double*, double*, double*,
                             Py_ssize_t) noexcept nogil
    void cbn_rows_gsums8_f32_512(const float*, const float*, const float*, Py_ssize_t,
                                 Py_ssize_t, Py_ssize_t, const double*, double*, double*,
                                 Py_ssize_t) noexcept nogil
    void cbn_rows_gsums32_f32(const float*, const float*, const float*, Py_ssize_t,
                              Py_ssize_t, Py_ssize_t, const double*, double*,
                              double*) noexcept nogil
    void cbn_rows_gsums_f32(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                            Py_ssize_t, const double*, double*, double*,
                            Py_ssize_t) noexcept nogil
    void cbn_rows_gsums_f64(const double*, const double*, const double*, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, const double*, double*, double*,
                            Py_ssize_t) noexcept nogil
    int CBN_STREAM_PF
    void cbn_run_affine_f16(const cbn_half*, cbn_half*, Py_ssize_t, float, float, float,
                            int, int) noexcept nogil
    void cbn_rows_affine_f16(const cbn_half*, cbn_half*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                             const float*, const float*, const float*, int, int) noexcept nogil
    void cbn_run_dx_f16(const cbn_half*, const cbn_half*, const cbn_half*, cbn_half*,
                        Py_ssize_t, float, float, float, float, int) noexcept nogil
    void cbn_rows_dx_f16(const cbn_half*, const cbn_half*, const cbn_half*, cbn_half*,
                         Py_ssize_t, Py_ssize_t, Py_ssize_t, const float*, const float*,
                         const float*, const float*, int) noexcept nogil
    void cbn_run_affine_f16_512(const cbn_half*, cbn_half*, Py_ssize_t, float, float, float,
                                int) noexcept nogil
    void cbn_rows_affine_f16_512(const cbn_half*, cbn_half*, Py_ssize_t, Py_ssize_t,
                                 Py_ssize_t, const float*, const float*, const float*,
                                 int) noexcept nogil
    void cbn_run_dx_f16_512(const cbn_half*, const cbn_half*, const cbn_half*, cbn_half*,
                            Py_ssize_t, float, float, float, float) noexcept nogil
    void cbn_rows_dx_f16_512(const cbn_half*, const cbn_half*, const cbn_half*, cbn_half*,
                             Py_ssize_t, Py_ssize_t, Py_ssize_t, const float*, const float*,
                             const float*, const float*) noexcept nogil
    void cbn_rows_sums_tiled_f16(const cbn_half*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                                 const double*, double*, double*, int) noexcept nogil
    void cbn_rows_gsums_tiled_f16(const cbn_half*, const cbn_half*, const cbn_half*,
                                  Py_ssize_t, Py_ssize_t, Py_ssize_t, const double*, double*,
                                  double*, int) noexcept nogil
    void cbn_rows_sums8_f16(const cbn_half*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                            const double*, double*, double*, Py_ssize_t) noexcept nogil
    void cbn_rows_gsums8_f16(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t,
                             Py_ssize_t, Py_ssize_t, const double*, double*, double*,
                             Py_ssize_t) noexcept nogil
    void cbn_sums_f32(const float*, Py_ssize_t, double, double*) noexcept nogil
    void cbn_sums_f64(const double*, Py_ssize_t, double, double*) noexcept nogil
    void cbn_sums_f16(const cbn_half*, Py_ssize_t, double, double*) noexcept nogil
    void cbn_gsums_f32(const float*, const float*, const float*, Py_ssize_t, double,
                       double*) noexcept nogil
    void cbn_gsums_f64(const double*, const double*, const double*, Py_ssize_t, double,
                       double*) noexcept nogil
    void cbn_gsums_f16(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t, double,
                       double*) noexcept nogil
    void cbn_sums_f16_512(const cbn_half*, Py_ssize_t, double, double*) noexcept nogil
    void cbn_runs_affine_short_f16_512(const cbn_half*, cbn_half*, Py_ssize_t, Py_ssize_t,
                                       const float*, const float*, const float*,
                                       int) noexcept nogil
    void cbn_runs_dx_short_f16_512(const cbn_half*, const cbn_half*, const cbn_half*,
                                   cbn_half*, Py_ssize_t, Py_ssize_t, const float*,
                                   const float*, const float*, const float*) noexcept nogil
    void cbn_tiles32_f16_512(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t,
                             Py_ssize_t, Py_ssize_t, const double*, double*, double*,
                             int) noexcept nogil
    void cbn_gsums_f16_512(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t,
                           double, double*) noexcept nogil
    void cbn_runs_sums_f32(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           double, double*) noexcept nogil
    void cbn_runs_sums_f64(const double*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           double, double*) noexcept nogil
    void cbn_runs_gsums_f32(const float*, const float*, const float*, Py_ssize_t, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, double, double*) noexcept nogil
    void cbn_runs_gsums_f64(const double*, const double*, const double*, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, double, double*) noexcept nogil
    void cbn_runs_sums_f16(const cbn_half*, Py_ssize_t, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                           double, double*) noexcept nogil
    void cbn_sums_f32_add(const float*, Py_ssize_t, double, double*) noexcept nogil
    void cbn_sums_pf_f32_add(const float*, Py_ssize_t, double, double*,
                             Py_ssize_t) noexcept nogil
    void cbn_sums_pf_f32(const float*, Py_ssize_t, double, double*,
                         Py_ssize_t) noexcept nogil
    void cbn_gsums_pf_f32(const float*, const float*, const float*, Py_ssize_t, double,
                          double*, Py_ssize_t) noexcept nogil
    void cbn_gsums_pf_f32_add(const float*, const float*, const float*, Py_ssize_t, double,
                              double*, Py_ssize_t) noexcept nogil
    void cbn_sums_pf_f64(const double*, Py_ssize_t, double, double*, Py_ssize_t) noexcept nogil
    void cbn_gsums_pf_f64(const double*, const double*, const double*, Py_ssize_t, double,
                          double*, Py_ssize_t) noexcept nogil
    void cbn_sums_pf_f16(const cbn_half*, Py_ssize_t, double, double*,
                         Py_ssize_t) noexcept nogil
    void cbn_gsums_pf_f16(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t,
                          double, double*, Py_ssize_t) noexcept nogil
    void cbn_gsums_f32_add(const float*, const float*, const float*, Py_ssize_t, double,
                           double*) noexcept nogil
    void cbn_runs_sums_f32_add(const float*, Py_ssize_t, Py_ssize_t, Py_ssize_t,
                               Py_ssize_t, double, double*) noexcept nogil
    void cbn_runs_gsums_f32_add(const float*, const float*, const float*, Py_ssize_t,
                                Py_ssize_t, Py_ssize_t, Py_ssize_t, double,
                                double*) noexcept nogil
    void cbn_runs_gsums_f16(const cbn_half*, const cbn_half*, const cbn_half*, Py_ssize_t,
                            Py_ssize_t, Py_ssize_t, Py_ssize_t, double, double*) noexcept nogil


ctypedef fused data_t:      # what the arrays hold
    float
    double
    cbn_half

ctypedef fused real_t:      # what the outputs are computed in
    float
    double

cdef enum:
    BLOCK = 1024        # planar reductions add a block total into the result every BLOCK values
    TASK = 4096         # least values per parallel task of the output passes
    PCHUNK = 512        # channels per chunk: parameter setup (_params), columns (_by_cols)
    PAR_PARAMS = 8192   # parameter tables of this many channels are set up on all threads
    COLS_MIN = 1024     # interleaved rows of COLS_MIN or more channels go by columns
    COLS_ROWS = 128     # (_by_cols) when at most COLS_ROWS (training, backward),
    COLS_ROWS_STATS = 512  # COLS_ROWS_STATS (statistics) or, with COLS_EVAL or more
    COLS_EVAL = 2048    # channels, COLS_ROWS_EVAL (inference, scale_shift)
    COLS_ROWS_EVAL = 64
    COL_NARROW = 64     # by columns, chunks of at least this many channels (_col_chunks)
    CUT_UNIT = 16       # planar blocks of parallel passes start on multiples of this many values
    CTILE = 1024        # channels per tile in interleaved reductions (block sums stay in L1)
    WIDE_TILES = 1024   # float32 rows of at least this many channels take the register tiles from memory too
    ROW_BLOCK = 64      # interleaved reductions flush their partials every ROW_BLOCK rows
    PAD = 8             # doubles per 64-byte cache line (per-thread partials are padded)
    SLOT = 6            # rows of partials per thread in interleaved reductions
    ROWS8_NEAR = 1 << 20  # interleaved float32 rows narrower than ROWS8_WIDE values keep the
    ROWS8_WIDE = 512    # register tiles up to this many bytes per thread (_rows8; Zen 5: _rows8_wide)
                        # (Zen 4: eight rows only in rows narrower than it, _rows8_max)
    ROWS8_WIDE512 = 32  # the same with the AVX-512 sums (_sums512)
    HROWS8_WIDE = 64    # float16 sums so, for rows narrower than this (_hrows8)
    GSUMS8_MAX = 1 << 22  # backward sums go eight rows per step up to this many values
                        # per array (_rows8; Zen 5: any, _rows8_grads)
    BACK_BYTES = 32768  # rows per block of a reversed second pass: this many bytes (_back)
    WIDE = 64           # interleaved rows narrower than this are handled several at a time
    PERIOD_AFFINE = 128 # AVX-512F output passes of contiguous rows of 64 to this many values
    PERIOD_DX = 64      # (a multiple of 16) keep their tables in registers (_period)
    FOLD_VEC = 32       # folded narrow rows are rounded up to rows of whole vectors of this
    FOLD_BYTES = 1344   # many bytes where they span at most this many (_whole): the tiles'
                        # rotated windows take rows of CBN_ROT_BYTES, their blocks two rows in 4 KiB
    SUMS_WIDE = 512     # interleaved reductions over more than TILED_MAX values: rows of fewer
                        # bytes are summed several at a time (_sums_fold)
    TILED_MAX = 1 << 21 # interleaved reductions over at most this many values use register tiles
    TILED_OUT = 1 << 20 # interleaved output passes over at most this many bytes per thread too
    TILE_BLOCK = 3      # rows per block of tiled rows spanning several tiles, Zen 4 (cbn_tile_block)
    OPF_FROM = 2 << 20  # planar output passes over OPF_FROM to OPF_TO bytes per thread (their
    OPF_TO = 8 << 20    # arrays together) prefetch their input (_opf_on)
    PIPE_TO = 1024      # planar per-channel tasks pipelined up to this many values per channel
                        # and array read (_pipe_to)
    FUSED_FROM = 512    # planar training fuses channels of this many values or more (_fused_from)
    SHORT_RUN = 512     # planar output runs under this many bytes: the short-run passes (_short_run)
    STREAM_RUN = 2048   # planar runs shorter than this many bytes are never streamed: each run's
                        # unaligned ends mix plain stores into streamed lines (measured, float32
                        # 51 MB: runs of 49 values 15x slower streamed, of 196 2.4x; 784 and more faster)
    SLAB_FROM = 1 << 22 # planar sums over short runs in arrays of this many bytes or more go
                        # sample by sample (_slabs)
    PF_RUN = 1024       # planar sums prefetch runs shorter than this many values PF_AHEAD runs
    PF_AHEAD = 8        # ahead (measured, float32 512x512x7x7: statistics 0.53x the time,
                        # training 0.68-0.72x, backward 0.76-0.78x; 3 and 16 ahead no better)
    PF_HEAD = 2048      # longer runs prefetch this many bytes of the next run (measured,
                        # float32 32x128x56x56 from memory, 2 threads, three alternations:
                        # statistics 0.94-0.95x the time, training 0.94-0.99x, backward
                        # 0.93-0.99x; data in L3 unchanged; 1024 bytes in between)
    PF_STREAM = 2048    # planar sums prefetching as a stream (_pf_stream) prefetch this many values ahead
                        # (in a C loop 4 KB and 8 KB ahead measured alike: 870-884 / 864-883 us over 51 MB)
    PF_NEXT = 1 << 16   # runs of PF_RUN values or more whose arrays' next runs total under
                        # this many bytes may prefetch them block by block (_pf_runs)
    PF_ROWS_BYTES = 4096  # interleaved statistics over more than TILED_MAX values prefetch
                        # this many bytes ahead of each row (measured, float32 channels-last
                        # 32x128x56x56 and 8x64x112x112, one thread: statistics 0.79-0.81x
                        # the time, training 0.89-0.92x; 2 KB or 8 KB ahead no better), and
                        # so do the float32 backward sums one row per step, in each array
                        # (measured in one process, 2-core Intel Xeon VM, settings alternated,
                        # 5-7 rounds, with / without on 1 / 2 threads: 16x112x112x64 0.71 /
                        # 0.70, masked 0.76 / 0.75; 32x56x56x128 0.88 / 0.73-0.97, masked
                        # 0.81 / 0.80-0.98; 64x28x28x256 0.74, masked 0.90 (2 threads);
                        # float64 8x112x112x64 1.08 / 0.81: not there); the eight-row sums
                        # beyond ROWS8_NEAR prefetch as a stream about this far ahead
                        # (cbn_rows_sums8_f32; measured so, with / without, 1 / 2 threads:
                        # statistics 8x112x112x64 0.66 / 0.67, 32x56x56x128 0.72 / 0.78,
                        # 2x56x56x256 0.72 / 0.81, 1x112x112x64 0.63 / 0.83; training 0.83-0.92;
                        # rows of 512-2048 values 0.92-1.02; backward 2x112x112x64 0.94 /
                        # 0.86, 4x16x28x28x32 0.90, 2x56x56x256 0.95 / 0.97)

# How an output pass stores (interleaved rows): plainly, with streaming stores, or
# with register-tiled parameters (data in L2: a tile walks down rows).
cdef enum:
    STORE_PLAIN = 0
    STORE_STREAM = 1
    STORE_TILED = 2
    STORE_PF = 3        # planar runs from the last-level cache: inputs prefetched (_opf_on)

# Rows of the per-channel parameter table p (k * C + c): the outputs are
# (x - hi) * scale + shift, plus g * gain in the backward pass.
cdef enum:
    P_HI = 0
    P_SCALE = 1
    P_SHIFT = 2
    P_GAIN = 3
    N_PARAMS = 4


# ------------------------------------------------------------------- facts

# Compile-time facts about this build (used by cbn.show_config).
def build_info():
    return {
        "openmp": bool(CBN_HAVE_OPENMP),
        "openmp_date": int(CBN_OPENMP_DATE),
        "simd": CBN_SIMD.decode(),
        "float16": CBN_HALF_HW.decode(),
        "compiler": CBN_COMPILER.decode(),
        "compiler_type": CBN_BUILD_COMPILER_TYPE.decode(),
        "flags": CBN_BUILD_FLAGS.decode(),
        "openmp_mode": CBN_BUILD_OPENMP_MODE.decode(),
    }


# OpenMP's omp_get_max_threads() (1 in a serial build).
def max_threads():
    return omp_get_max_threads()


# Whether this CPU and OS run AVX2 + FMA + F16C code.
def cpu_has_avx2():
    return bool(cbn_cpu_has_avx2())


# An output pass whose arrays (those it reads and the one it writes) total at least
# this many bytes writes with streaming (non-temporal) stores: by default passes
# over as much data as the last-level cache holds, whose output would not stay
# there anyway; never where that size is unknown or the CPU has no such stores.
# Measured (2-core Zen 3 VM, 32 MB L3, float32, 2 threads; streamed / plain time):
# 51 MB tensors 0.75-0.97, 25.7 MB 0.65-0.84, but inference on 12.8 MB (26 MB
# touched, in cache across calls) 1.4.  Inside a virtual machine cpuid may report
# the host's whole L3 (a 2-core Intel Xeon VM: 480 MB, "shared by 2 cores"), far
# more than the guest gets, so the threshold is at most STREAM_CAP bytes, set where
# streaming starts to win there when the passes run as in a network: each call reads
# what the one before wrote and writes a buffer last touched six calls ago (float32
# N x 128 x 56 x 56, 2 threads, streamed / plain time): inference and training
# 16.1 MB tensors (32 MB touched) 1.09-1.13, 19.3 MB (39 MB) 0.90-0.91, 25.7 MB
# (51 MB) 0.85-0.93; backward with x from a cold buffer 9.6 MB (29 MB) 1.06,
# 12.8 MB (38 MB) 1.00, 19.3 MB 0.93, 25.7 MB 0.89.  (The same pass repeated on
# the same arrays keeps up to ~80 MB in that L3, where plain stores win, but no
# network repeats a layer on its own output.)
cdef Py_ssize_t _NEVER = PY_SSIZE_T_MAX
cdef Py_ssize_t STREAM_CAP = 36 << 20
# An output cbn has just allocated, of this many bytes or more, is written plainly:
# allocations this large come as new pages (glibc maps 32 MiB or more afresh on each
# call) that the OS zeroes on first touch, leaving them in cache, where streaming
# stores only add a write-back.  Measured (2-core Intel Xeon VM, float32
# 32x128x56x56, 2 threads, allocating calls): streamed / plain time, inference
# 7443 / 4081 us, training 9468 / 7140.
cdef Py_ssize_t FRESH_PAGES = 32 << 20
cdef Py_ssize_t _llc = cbn_llc_bytes()
# The CPU, for the loop choices measured per CPU below: an AMD CPU's family (0 on
# others), and AMD Zen 4 (family 0x19, as Zen 3, but with AVX-512, which Zen 3 lacks).
cdef int _amd = cbn_amd_family()
cdef bint _zen4 = _amd == 0x19 and cbn_cpu_has_avx512f()
cdef Py_ssize_t _stream_from = min(_llc, STREAM_CAP) if CBN_CAN_STREAM and _llc > 0 else _NEVER
# Planar sums over runs of PF_RUN values or more prefetch, block by block, the same
# block of the next run (a software stream one run ahead) instead of its first PF_HEAD
# bytes, once a call's arrays total _pf_from bytes: half the last-level cache (capped
# as above; 16 MB where its size is unknown), where they come from memory.  The
# hardware prefetchers of a 2-core AMD EPYC VM (Zen 5, 1 MB L2 per core, 32 MB L3)
# fetch runs of a few KB, far apart, slowly: float32 NCHW statistics on 32x128x56x56
# (runs of 12.5 KB) read 9.7 GB/s on one thread against 25-27 GB/s for runs of 50 KB+
# or 784 B.  Measured in one process there, float32, prefetching / not, 1 and 2
# threads: statistics 32x128x56x56 0.35-0.46, 8x64x112x112 0.47-0.80; training
# 32x128x56x56 0.53-0.64, 8x64x112x112 0.72-0.85, 8x128x56x56 0.72-0.73; backward
# 32x128x56x56 0.92-0.98, 8x128x56x56 0.79-0.87.  In cache the prefetches only cost
# (6.4 MB: 1.07-1.15x the time), hence the threshold and PF_NEXT.
cdef Py_ssize_t _pf_from = (min(_llc, STREAM_CAP) if _llc > 0 else 32 << 20) // 2
# On Intel CPUs the sums (statistics, training, backward) prefetch instead as a stream
# PF_STREAM values ahead in their reading order, one line per line read in each array
# (_sums_ahead, cbn_sums_pf_T, cbn_gsums_pf_T), and whatever their runs' length (no
# PF_NEXT): a block's prefetches issued at once wait on full fill
# buffers and stall the sums' conversions, while no prefetch at all (beyond the next
# run's head) leaves data from memory late.  Measured in one process (the settings
# alternated, 5-7 rounds), 2-core Intel Xeon VM (Sapphire Rapids), float32 NCHW, 1 / 2
# threads.  Stream / block prefetch: statistics 8x64x112x112 0.70 / 0.74, 32x128x56x56
# 0.77 / 0.79, 8x256x56x56 0.77 / 0.82, 32x64x112x112 (102 MB) 0.67 / 0.68; training
# 4x64x112x112 0.83 / 0.82, 8x64x112x112 0.86 / 0.87, 32x128x56x56 0.86 / 0.88,
# 8x256x56x56 0.91 / 0.92, 32x64x112x112 0.89 / 0.87; backward 32x128x56x56 0.89 /
# 0.89, masked 0.86 / 0.86; 4x64x112x112 and 8x64x112x112 0.98-1.01.  Stream / no
# prefetch for runs past PF_NEXT: backward 32x64x112x112 0.84 / 0.80, 8x32x224x224
# (runs of 196 KB) 0.81 / 0.87; statistics 0.95-0.98; training 0.98-1.01.  No prefetch
# / block prefetch: statistics 8x64x112x112 0.77 / 0.79 but 32x64x112x112 1.74 / 1.47
# (the 25.7 MB arrays stay in the VM's L3 between calls; the 102 MB ones come from
# memory).  float16 and float64, stream / block prefetch (runs past PF_NEXT: none):
# statistics 0.78-0.98, training 0.87-0.98, backward 0.90-0.97 (8x64x112x112,
# 32x128x56x56, float16 32x64x112x112).
# The statistics and training sums stream so whatever the arrays' size (runs of PF_RUN
# values or more), from L3 too: stream / the next run's head alone, 1 / 2 threads:
# statistics 4x32x16x28x28 0.88 / 0.86, 2x64x112x112 0.89 / 0.90, 1x64x112x112 0.87 /
# 0.88, 8x32x32x32 0.93 / 0.92; training 0.87-0.99; in L2 (1x64x56x56, 1x128x28x28)
# 0.93-1.03.  The backward sums did not gain there (1x64x112x112 1.02 / 1.14,
# 4x32x16x28x28 0.96 / 1.04): they stream from _pf_from bytes on.
# On AMD Zen 4 the sums stream too, but all of them only from _pf_from bytes on
# (_pf_stream_small: Intel only).  Measured in one process (the setting alternated, 11
# rounds), 2-core EPYC Zen 4 VM (32 MB L3: _pf_from 16 MB), 2 threads, stream / block
# prefetch: float32 NCHW 32x128x56x56 statistics 0.58, training 0.81, backward 0.76;
# 8x64x112x112 0.66, 0.82 and 1.01; float16 32x128x56x56 0.75-0.79.  In cache a
# stream for the statistics and training lost there: 4x32x16x28x28 (6.4 MB) 1.11-1.25.
cdef bint _pf_stream = cbn_cpu_is_intel() or _zen4
cdef bint _pf_stream_small = cbn_cpu_is_intel()

# Interleaved output passes whose arrays (inputs and output) total at most _tiled_to
# bytes, 5/8 of the last-level cache (0 where its size is unknown), store through the
# register tiles like those of at most TILED_OUT bytes per thread: in cache, four
# loads per output vector bound the plain pass.  Beyond, the tiles' walk down each
# block's rows, tile by tile, loses to the plain pass's sequential one.  Measured in
# one process, 2-core AMD EPYC VM (Zen 5, 1 MB L2 per core, 32 MB L3), channels-last,
# tiled / plain time on 1 and 2 threads (medians of 8-10 alternations, ABBA): float32
# 6.4 MB (C 16-256) inference 0.65-0.97, training 0.80-0.90, float64 0.77-0.79 and
# 0.83-0.90; backward of 6.4 MB (19.2 MB in all) 0.80-0.86 for C <= 64, 0.93-1.02
# for 128, 1.03-1.05 for 256 (three rows per 4 KB block); 9.6 MB inference 0.71-0.95 on
# two threads, 0.83-1.10 on one across runs; 12.8 MB (25.6 MB) inference 1.04-1.81,
# backward of 9.6 MB (28.8 MB) 0.98-1.13.  On a 2-core Intel Xeon VM (2 MB L2 per
# core) in one process, plain / tiled time (tiles off, or off beyond TILED_OUT) on 1
# and 2 threads, channels-last 0.2-6.4 MB and 256x1024: 0.95-1.06, no difference.
cdef Py_ssize_t _tiled_to = min(_llc, STREAM_CAP) * 5 // 8 if _llc > 0 else 0
# Narrow interleaved rows stored through the register tiles go as rows of one tile's
# width (_out_fold: 128 bytes in the AVX2 build, four vectors), not of WIDE values or
# more (_fold), where a row's channels divide it: a tile then walks whole rows down its
# block, one row after another, instead of every tile walking part of each row in
# turn.  A C loop of the multiply-add over 3.2 MB from L3 on one core (2-core AMD
# EPYC VM, Zen 4), float32 rows of 64 values in two tiles of 32: 1.21-1.28x the time
# of rows of 32 in one tile, those 1.09-1.14x a memcpy's.  Measured in cbn in one
# process on that VM, 2 and 1 threads, medians of 15 rounds, one-tile / _fold time:
# float32 channels-last 4x32x16x28x28 (6.4 MB) inference 0.80 and 0.80, training
# 0.95 and 0.83, backward 0.94 and 0.91; 16 channels (R 2, not 4) inference 0.88 and
# 0.87, backward 0.96 and 0.85; float64 16 channels inference 0.83 and 0.83, backward
# 0.94 and 0.93; in L2 (1x32x56x56, 8x8x56x56) 0.96-1.00.
cdef bint _tile_rows = True
# On Zen 4, rows that span several tiles go through the tiles in blocks of at most
# TILE_BLOCK rows (cbn_tile_block; elsewhere as many as fit 4 KiB, CBN_BLOCK_ROWS), so
# that the tiles of a block revisit its rows soon after one another.  A C loop of the
# multiply-add over 3.2 MB from L3 on one core (2-core AMD EPYC VM, Zen 4), 1 / 4 KiB
# blocks' time, three runs: rows of 64 float32 (two tiles) 3 rows 0.81-0.89, 7 rows
# 0.89-0.91, 2 rows 0.84-0.92; rows of 128 (four tiles) 3 rows 0.84-0.88, 2 rows
# 0.83-0.88; in L2 (0.4 MB) 0.96-1.01 (rows of one tile keep their blocks: 3 rows
# took 0.95-1.15x the time).  In cbn in one process on that VM, 2 and 1 threads,
# medians of 15 rounds, 3 rows / 4 KiB: channels-last float32 4x64x8x28x28 (6.4 MB)
# inference 0.87 and 0.86, training 0.96 and 0.98, backward 0.84 and 0.85;
# 4x128x4x28x28 inference 0.89 and 0.95; 4x32x16x28x28 backward (dx tiles of two
# vectors) 0.85 and 0.97; in L2 (1x64x56x56, 1x256x14x14, 256x1024) 0.92-1.02.  Not
# measured elsewhere.
cbn_tile_block = TILE_BLOCK if _zen4 else 0

# Planar output runs shorter than _short_run bytes go a whole vector at a time from
# their first value, the last vector overlapping the one before (cbn_run_affine_short_T,
# cbn_run_dx_short_T), not scalar up to the first aligned value and after the last
# vector.  Measured in one process, 2-core AMD EPYC VM (Zen 5), short / plain time on 1
# and 2 threads, medians of 8 alternations: float32 runs of 49 values (1x2048x7x7,
# 1x512x7x7) inference 0.80-0.83, training 0.93, backward 0.91-0.97; 25 and 64 values
# inference 0.75-0.83; 100 values 0.86-0.93; 144 values (576 bytes) 0.98-1.02, 196
# 0.92-1.03, 784 and 3136 0.94-0.98 but training and backward 1.01-1.03; float64 runs
# of 49 values inference 0.95-0.98, 25 values 0.90, 64 values (512 bytes) 1.02-1.03.
# A task's whole short runs of consecutive channels go in one call (_runs_affine,
# _runs_dx; float32 and float64) instead of one per run: separate builds alternated
# process by process (4 pairs, medians), this / a call per run, float32 NCHW on 1 and
# 2 threads: inference 1x512x7x7, 1x2048x7x7 and 8x64x7x7 0.83-0.85, training
# 0.93-0.96; 14x14 planes (not short) and backward below 4 MB (its dx goes channel by
# channel) 0.98-1.01.  ResNet-50 batch-1 inference, 53 layers summed, in cache: 0.98.
# float16 output passes too (cbn_runs_affine_short_f16: 8 values per vector, the last
# vector overlapping, where the plain pass converted up to 7 values one by one): this /
# a call per run, 1 / 2 threads, inference 1x2048x7x7 0.45 / 0.51, 1x512x7x7 0.56,
# 32x512x7x7 0.31 / 0.36, 1x256x14x14 (392 bytes) 0.57 / 0.73, 8x64x7x7 0.52; training
# over few values per channel 0.80-0.89.  Its dx too (cbn_runs_dx_short_f16), with the
# two-phase backward (_two_phase): see there.
cdef Py_ssize_t _short_run = SHORT_RUN

# Planar training fuses each channel's sums and output pass (_task_train: x read once
# from memory) when a channel has FUSED_FROM values or more; below, the statistics of
# all channels come first, then the parameters, then one output pass.  On a few values
# per channel the fused task is a chain (sums, then the square root and divisions,
# then the output) that leaves the core waiting.  Measured in one process, 2-core AMD
# EPYC VM (Zen 5), two-phase / fused time on 1 and 2 threads, medians of 8 ABBA
# alternations: float32 1x2048x7x7 0.65 and 0.83, 1x512x7x7 0.66, 1x256x14x14 0.67
# and 0.79, 1x1024x14x14 0.73 and 0.66, 2x256x14x14 0.78-0.82, 8x64x7x7 and 10x64x7x7
# 0.86-0.89, 3x256x13x13 0.88-0.93; float64 0.78-0.97, float16 0.56-0.91.  At 784
# values per channel 1x128x28x28 gained (0.87-0.90) but 1x512x28x28 took 1.07x on one
# thread and 4x256x14x14 1.79x on two (the statistics and the output pass split the
# work among threads differently once there are several samples), hence 512.
cdef Py_ssize_t _fused_from = FUSED_FROM

# Planar float32 and float16 training and backward over runs shorter than _two_phase
# bytes (7x7 and 5x5 planes; float16 14x14 too) take all channels' sums first, then the
# parameters, then one output pass (its short runs fused, _runs_affine and _runs_dx),
# however many values a channel has, instead of one task per channel (sums, parameters,
# output: a dependency chain on few values per run).  Measured in one process, 2-core AMD
# EPYC VM (Zen 5), two-phase / per-channel time on 1 and 2 threads, medians of 11-15
# interleaved rounds.  Backward: 1x512x7x7 0.80-0.81, 1x2048x7x7 0.87-0.91, 8x64x7x7
# 0.87, 32x512x5x5 0.80-0.85, 4x64x10x10 0.89, 16x256x7x7 0.87-0.95, 64x64x7x7 and
# 128x64x5x5 0.89-0.96.  Training (channels of 512 values or more; fewer go two-phase
# anyway, _fused_from): 32x512x7x7 0.89-0.94, 16x256x7x7 0.85-0.92, 64x64x7x7 0.88-0.99,
# 32x128x5x5 0.50-0.97, 8x64x10x10 0.87-1.14.  Not for runs of 196 values (backward
# 0.88-1.09, 1x1024x14x14 1.05-1.09; training 0.96-1.07) or float64 (backward 1.06-1.11
# on 7x7 planes, training 0.90-1.13): those keep the per-channel tasks.  float16
# (measured 0.73-1.10 when its short runs' sums and dx went a call per run) gains since
# they go several per call (cbn_runs_sums_f16, cbn_runs_dx_short_f16): two-phase /
# per-channel, medians of 15-25 interleaved rounds, 1 / 2 threads: training 32x512x7x7
# 0.54 / 0.79, 4x256x14x14 0.56 / 0.70-0.71, 16x128x10x10 0.58 / 0.71-0.73, 8x256x14x14
# (2 threads) 0.63-0.65; backward 0.86 / 0.86, 0.90 / 0.94, 0.81 / 0.87-0.89, 0.86-0.88,
# 1x1024x14x14 0.75 / 0.88, 8x64x7x7 0.84-0.87 (a first 2-thread run of 15 rounds had
# 4x256x14x14 at 1.08 / 1.11 and 16x128x10x10's backward at 1.20, two later ones of 25
# the figures above: the VM's second core).  With the runs' sums keeping float32 partial
# sums across runs (cbn_runs_sums_f16), 15 rounds: training 0.44 / 0.49, 0.54 / 0.68,
# 0.51 / 0.67; backward 0.86 / 0.86, 0.87 / 0.93, 0.79 / 0.86.  (Arrays of 4 MB or more
# with runs under 2 KB take the sample-by-sample sums, _slabs, either way.)
cdef Py_ssize_t _two_phase = SHORT_RUN

# Planar training and backward's per-channel tasks (_task_train, _task_backward: each
# thread a range of channels) are pipelined up to _pipe_to values per channel, counted
# once per array read (x; x and dy; x, dy and y): the next channel's sums come before
# this channel's output pass, which waits on its parameters (the sums' reduction, then
# divisions and a square root); out of order, the core runs the next sums meanwhile.
# Beyond, two channels' slabs no longer share L1 (48 KB on Zen 5).  Measured in one
# process, 2-core AMD EPYC VM (Zen 5), pipelined / not on 1 and 2 threads, medians of
# 15 interleaved rounds: training float32 1x512x28x28 0.85 / 0.88, 1x128x28x28 0.84 /
# 0.92, 2x256x16x16 0.84 / 0.87, 1x256x24x24 0.81 / 0.92, 1x64x32x32 0.87 / 0.99,
# 4x256x14x14 0.93 / 0.95; float64 0.87-0.90; float16 1x512x28x28 0.87; beyond 1024
# values mixed (1x64x40x40 0.93 / 1.03, 1x64x48x48 0.98 / 0.93) and 1x64x56x56 1.11 /
# 1.01, 1x32x64x64 1.12 / 0.85.  Backward float32 1x256x14x14 0.94-0.95 / 0.93-0.97,
# 1x256x12x12 0.91-1.00 / 0.97-0.98, 1x128x20x20 0.93 / 0.94, masked 0.95-0.96 up to
# 576 values and 1.06-1.09 on one thread from 784; float16 0.84-0.94 up to 1024 values.
# Not float64 backward: 1.02-1.07 on one thread (0.94-0.98 on two).
cdef Py_ssize_t _pipe_to = PIPE_TO


cdef inline bint _pipe(Py_ssize_t n) noexcept nogil:
    """Whether per-channel tasks that read n values per channel (all their arrays
    together) are pipelined (_pipe_to)."""
    return n <= _pipe_to


# Interleaved float32 statistics over more than TILED_MAX values (data from L3 or
# memory) take the register tiles on Intel CPUs, one row per step elsewhere.
# Measured, float32 channels-last, tiled / rows time: 2-core Intel Xeon VM (2 MB
# L2 per core), 8x64x112x112 statistics 0.87-0.89, training 0.90-0.93; 32x128x56x56
# statistics 0.93, training 0.82 (backward sums 0.96-1.07: not changed); on the
# 2-core AMD EPYC Zen 3 VM (512 KB L2) tile walks from memory were 1.5-2x slower.
cdef bint _tiles_mem = cbn_cpu_is_intel()

# On Intel CPUs, float32 sums over interleaved rows go eight rows per step
# (cbn_rows_sums8_f32, cbn_rows_gsums8_f32: each channel's eight deviations added in
# a tree, then into its sums) instead of the register tiles or one row per step, except
# rows narrower than ROWS8_WIDE values of at most ROWS8_NEAR bytes per thread (in L2:
# the tiles are as fast), backward sums with the ReLU mask, and backward sums over
# more than GSUMS8_MAX values per array (more streams than the prefetchers follow).
# Measured in one process, 2-core Intel Xeon VM, eight-row / previous time on 1 and 2
# threads: statistics of channels-last 4x32x16x28x28 0.82-0.85, 256x1024 0.83-0.89,
# 512x512 0.69-0.88, 32x128x56x56 0.94, 8x64x112x112 0.94-0.99, 1x64x56x56 (in L2)
# 1.11 (hence ROWS8_NEAR); training 256x1024 0.90-0.91, 32x128x56x56 0.96; backward
# 4x32x16x28x28 0.89-0.92, 8x64x112x112 0.98-1.00, 256x1024 0.91-0.95; backward with
# the mask 1.03-1.10 (4x32x16x28x28) and 1.32 (32x128x56x56), and unmasked
# 32x128x56x56 1.06-1.09 on 2 threads (hence not there).  Since the one-row backward sums
# prefetch (PF_ROWS_BYTES) they win from 2^22 values per array on, hence GSUMS8_MAX:
# settings alternated in one process (7 rounds), one row per step with the prefetch /
# eight rows, 1 / 2 threads: 8x112x112x64 (6.4M values) 0.92 / 0.96, 4x112x112x64
# 0.99-1.00; below, the eight rows stay: 1x112x112x64 1.09 / 1.10, 4x16x28x28x32 1.02 /
# 1.03, 256x1024 1.10 / 1.04.  On AMD Zen 5 (family 0x1A;
# 2-core EPYC VM, 1 MB L2 per core, 32 MB L3), eight-row / previous time on 1 and 2
# threads: statistics 32x128x56x56 channels-last 0.80-0.86, 8x64x112x112 0.68-0.70;
# training 0.90-0.92 and 0.80-0.84; backward 4x32x16x28x28 0.88-0.89, 256x1024 0.95,
# but 8x64x112x112 (6.4M values per array) 1.15-1.20, hence GSUMS8_MAX: 1 << 22
# values, where x and dy together fill that L3 (measured once its trees added as FMAs:
# eight rows / one row per step, 1 / 2 threads, 3x112x112x64 0.83 / 0.85, 4x112x112x64
# 0.84-0.85 / 0.87-0.94, 2048x2048 0.84-0.92 / 0.85-0.89, 4096x1024 0.68-0.70 /
# 0.73-0.75, 5x112x112x64 0.93-0.99 / 0.94-1.12; beyond it 6x112x112x64 1.01-1.02 /
# 1.00-1.09, 7x112x112x64 1.08 / 1.07; masked 3x112x112x64 0.81 / 0.86, 5x112x112x64
# 0.75 / 0.76, 4096x1024 0.73 / 0.81).  Older AMD CPUs were not measured with it and
# keep the other loops.
# On AMD Zen 4 (family 0x19 with AVX-512, which Zen 3 lacks; a 2-core EPYC VM, 1 MB
# L2 per core, 32 MB L3) the eight-row loop wins beyond L2 in rows narrower than
# ROWS8_WIDE values and loses in wider ones, hence _rows8_max there (and no eight rows
# in L2, where _rows8_wide asks for rows at least that wide).  Measured in one process
# (the setting alternated, 11 rounds), eight-row / previous time, 2 threads,
# channels-last: rows of 32-256 values (6.4 MB: 4x32x16x28x28, 32x64x28x28,
# 16x128x28x28, 8x256x28x28) statistics 0.87-0.96, training 0.93-1.00, backward
# 0.79-0.90; 8x64x112x112 statistics 0.60-0.63, training 0.84-0.85; 32x128x56x56
# statistics 0.62, training 0.79; rows of 512 and 1024 values (4096x512, 2048x1024)
# statistics 1.25-1.54, training 1.14-1.33, backward 1.07-1.85, and in L2 256x1024's
# backward 1.42; in L2 in rows under 512 values (1x64x56x56, 1x256x14x14) 0.99-1.00.
cdef bint _rows8 = cbn_cpu_is_intel() or _amd >= 0x1A or _zen4
cdef Py_ssize_t _rows8_max = ROWS8_WIDE if _zen4 else 0     # 0: rows of any width
# On AMD Zen 4, float32 interleaved statistics over data in cache (at most TILED_MAX
# values) go in register tiles of 16 channels (cbn_rows_sums16_f32) instead of the tiles
# of 8 or the eight-row loop: a cache line of each row per tile, walking 8 rows at a time
# in rows of ROWS8_WIDE values or more or beyond ROWS8_NEAR bytes per thread, else all
# the rows of a block.  In a C loop (bench/probes/rows_walk.c, one core, blocks of 64
# rows, cycles per 16 values): 128 rows of 1024 values (L2) 5.30 against the 8-channel
# tiles' 5.92, 392 rows of 256 values 4.84 against 5.21, 12544 rows of 64 (3.2 MB; a
# slower phase) 7.54-7.84 against the eight-row loop's 8.55-9.27; the flat loop over the
# same values 3.9.  In one process (the setting alternated, 21 rounds, both orders),
# this / before, 2 and 1 threads: training 256x1024 0.96-0.97 / 0.94-0.95, NDHWC
# 4x32x16x28x28 0.90-0.92 / 0.91-1.04, NHWC 8x64x56x56 0.91-0.93 / 0.89-0.91, 1x64x56x56
# 0.98 / 0.95-0.96, 1x256x14x14 0.97 / 0.88, 1x14x14x1024 0.95 / 0.95, 512x512 0.99 /
# 0.97; statistics 256x1024 0.92 / 0.87, 4x32x16x28x28 0.91 / 0.88, 1x64x56x56 1.01 /
# 0.91.  The backward sums so (x and dy: two lines per row) took 0.97-1.21x the time of
# the loops they would replace (256x1024, 4x32x16x28x28, 1x64x56x56): not there.
cdef bint _t16 = _zen4
# On AMD Zen 5 the backward sums take the eight-row loop near too (rows narrower than
# ROWS8_WIDE, at most ROWS8_NEAR bytes per thread), not the register tiles, and the
# ReLU-masked ones too (and at any size, below): there
# additions and FMAs issue on separate pipes, two each, which the eight-row loop keeps
# busy, while a tile's walk waits on its sums' latency.  C loop, one thread, TSC ticks
# per 32 values in L2, rows of 32-256 channels: unmasked, tiles 8.8-14.3, eight rows
# 6.7-6.9; masked, tiles 13.9-22.5, the lanes loop 16.5-19.0, eight rows 11.4-12.1.
# Separate builds alternated process by process (4-6 pairs, arrays at a fixed offset),
# this / before, float32 channels-last backward, 1 / 2 threads: 1x14x14x256 0.74 / 0.90,
# 64x256 0.78 / 0.78, 1x28x28x128 0.93 / 0.95, 1x56x56x64 0.90 / 0.96, 4x14x14x64 0.96
# / 1.00, 2x28x28x256 1.01 / 0.82; masked 1x14x14x256 0.75 / 0.87, 1x28x28x128 0.81 /
# 0.87, 64x256 0.79 / 0.79, 1x56x56x64 0.96 / 0.90; masked in L3 4x16x28x28x32 0.88 /
# 0.93, 2x56x56x128 0.78 / 0.78, 8x56x56x64 0.84 / 0.84, 4096x512 0.88 / 0.88, 256x1024
# 0.99 / 0.99.  Intel cores issue both on the same two ports, where the tiles' fewer
# operations may win (and there masked eight-row sums took 1.03-1.32x the time from
# memory, above).  Near, on a 2-core Intel Xeon VM in one process (knobs alternated,
# 7 rounds), this choice and the rows of 256 below took 0.96-1.05x the tiles' time
# (outliers both ways on 2 threads: noise): not changed there.  Since the float32
# partials (cbn_rows_gsums32_f32) replaced the other loops beyond GSUMS8_MAX values per
# array, Zen 5 takes the eight-row loop at any size: in one process (7 rounds), eight
# rows / float32 partials, 1 / 2 threads, 8x64x112x112 NHWC 0.82 / 0.88 (AVX2 vectors
# alone: 0.77 / 0.88), 32x128x56x56 0.84 / 0.86 (0.68 / 0.95); masked 8x112x112x64 0.65
# / 0.98, 32x56x56x128 0.65 / 0.75.
cdef bint _rows8_grads = _amd >= 0x1A
# There the statistics take it near from rows of 256 values (not ROWS8_WIDE): separate
# builds (6 pairs), eight rows / tiles, channels-last, 1 / 2 threads: statistics
# 1x14x14x256 0.84 / 0.93, 2x14x14x256 0.81 / 0.84, 8x7x7x256 0.80 / 0.85, 128x256 0.84 /
# 0.89, training 0.88-0.96; 4x14x14x384 0.97-1.01; 1x7x7x256 (49 rows) 1.03; rows of 128
# values 1.00-1.09 (hence 256).
cdef Py_ssize_t _rows8_wide = 256 if _amd >= 0x1A else ROWS8_WIDE
# On AMD Zen 5, which runs 512-bit operations at full width, the float32 eight-row sums
# (statistics and backward) take AVX-512F vectors (cbn_rows_sums8_f32_512,
# cbn_rows_gsums8_f32_512, in the AVX2 build; bit-identical).  In one process (the
# setting alternated, 9-11 rounds), 2-core AMD EPYC Zen 5 VM, this / the AVX2 loops, 1 /
# 2 threads: statistics 256x1024 0.73 / 0.76; training 256x1024 0.89 / 0.91, 512x512
# 0.87 / 0.90, 1x256x14x14 NHWC 0.88 / 0.92, 4x32x16x28x28 NDHWC (L3) 0.89-0.93 /
# 0.89-0.92; backward 256x1024 0.98 / 0.93, 512x512 0.95 / 0.93, 1x256x14x14 NHWC 0.93
# / 0.94, 1x64x56x56 NHWC 0.89 / 0.94, NDHWC 0.96 / 0.97-0.99; from memory
# (32x128x56x56 NHWC) training and backward 0.93-1.00.  Zen 4 splits 512-bit
# operations in two, and Intel cores were not measured: not there.
cdef bint _can512 = cbn_cpu_runs_avx512f()
cdef bint _sums512 = _can512 and _amd >= 0x1A
# With them the statistics take the eight-row loop near (in L2) from rows of 32 values
# (ROWS8_WIDE512), not 256 (narrower rows are folded to rows of at least WIDE values
# first; the AVX2 loop keeps 256, _rows_sums).  In one process (9 rounds), from 32 /
# from 256, 1 / 2 threads, NHWC: statistics 1x64x56x56 0.72 / 0.82-0.91, 1x24x56x56
# 0.82 / 0.90; training 1x64x56x56 0.96 / 0.91, 1x128x28x28 0.84 / 0.92, 1x32x56x56 0.88
# / 0.94, 1x16x56x56 0.89 / 0.92, 2x96x28x28 0.89 / 0.94, 8x64x28x28 1.00 / 0.89;
# backward (eight rows already) 0.98-1.00; from 8 as from 32.
# The float16 passes in cache take AVX-512F vectors of 16 values instead of 8 there too
# (_h512): the output passes of planar runs, short runs and channels-last rows
# (cbn_run_affine_f16_512, cbn_rows_dx_f16_512, ...), the planar sums of a run
# (cbn_sums_f16_512) and the channels-last register tiles (cbn_tiles32_f16_512), all
# bit-identical to the AVX2 passes.  Those are bound by their two F16C conversions per
# vector, which Zen 5 executes at full width in 512-bit form (C loop, one thread,
# inference of runs in L2: 0.51-0.54 of the AVX2 time).  In one process (9 rounds),
# 2-core AMD EPYC Zen 5 VM, float16 1x64x56x56, this / AVX2, 1 / 2 threads: inference
# NCHW 0.68-0.76 / 0.69-0.77, NHWC 0.73-0.78 / 0.82-0.83; statistics NCHW 0.91 / 0.93,
# NHWC 0.66 / 0.77; training NCHW 0.84 / 0.85, NHWC 0.71 / 0.75; backward NCHW 0.77 /
# 0.80, NHWC 0.79 / 0.83; short runs, 1x256x14x14 inference 0.63 / 0.80, training 0.86 /
# 0.94, backward 0.88 / 0.95, 1x512x7x7 inference 0.84 / 0.83.  The streamed passes, the
# planar sums that prefetch and the channels-last tiles that walk (from memory), and the
# sums of short planar runs (cbn_runs_sums_f16) keep AVX2.
cdef bint _h512 = _sums512
# The float32 output passes over interleaved rows in cache (STORE_TILED) too wide for the
# register tiles (rows of 1366 bytes or more: cbn_rows_tile) take AVX-512F vectors of 16
# values there too (_r512: cbn_rows_affine_f32_512, cbn_rows_dx_f32_512, bit-identical
# to the AVX2 passes), whose four (dx: six) loads per vector of output bound them in L2.
# In one process (11 rounds, the setting alternated), 2-core AMD EPYC Zen 5 VM, this /
# AVX2, 1 / 2 threads: 256x1024 inference 0.83-0.86 / 0.82-0.85, training 0.93 / 0.92,
# backward 0.94 / 0.90; 1x14x14x1024 NHWC inference 0.91 / 0.80; 64x1024 inference 0.76
# / 0.89; 1600x1024 (6.5 MB) inference 0.84 / 0.90, training 0.93 / 0.86, backward
# 1.00 / 0.97.  Beyond the tiles' sizes (STORE_PLAIN) it lost (1.07-1.19x): AVX2 there.
# Contiguous rows of 64 to 128 values, a multiple of 16 (dx: 64; rows of 64 channels, or
# narrow rows folded), go as one run in vectors of 16 with their tables in registers
# (cbn_period_affine_f32_512, cbn_period64_dx_f32_512), instead of the AVX2 register
# tiles.  In one process (9 rounds, wide_rows alternated), 2-core AMD EPYC Zen 5 VM,
# this / the tiles, 1 / 2 threads, NHWC: inference 1x64x56x56 0.88 / 0.90, 1x128x28x28
# 0.76 / 0.76, 4096x64 (NC) 0.94 / 0.92; training 1x128x28x28 0.88 / 0.87, 1x64x56x56
# 1.00 / 0.93; backward 1x64x56x56 0.95 / 0.93.  In L3 (6.4 MB, 4x32x16x28x28 NDHWC)
# 0.99-1.05: nothing gained there.
cdef bint _r512 = _sums512
# The float32 and float64 interleaved sums over rows of 64 channels (rows of 64 channels;
# narrow rows folded) go a row at a time with their sums in AVX-512F registers
# (_sums_reg: Zen 5; cbn_rows64_sums_f32_512, cbn_rows64_gsums_f32_512 and the _f64 ones)
# instead of the eight-row loops or the register tiles (float64: the one-row loops, which
# add into the sums in memory); the float32 statistics only where a thread's rows span
# more than ROWS8_NEAR bytes (in L2 they took 1.01-1.04x the time: 1x64x56x56 and 4096x64
# training).  In one
# process (9 rounds, register_sums alternated), 2-core AMD EPYC Zen 5 VM, this / the
# other loops, 1 / 2 threads: 4x32x16x28x28 NDHWC (6.4 MB, rows of 32 channels folded)
# statistics 0.90 / 0.92, training 0.94-0.95 / 0.96-0.97, backward 0.89 / 0.87; backward
# 1x64x56x56 0.90 / 0.98, 4096x64 0.93 / 0.99, from memory 8x64x112x112 0.93 / 0.93.
# float64 (9 rounds): 1x64x56x56 statistics 0.55 / 0.54, training 0.71 / 0.76, backward
# 0.85 / 0.89; 4x32x16x28x28 NDHWC training 0.88 / 0.86, backward 0.94 / 1.00-1.03;
# 4096x64 backward 0.90 / 0.87.
cdef bint _sums_reg = _sums512
# The float32 eight-row sums beyond ROWS8_NEAR bytes per thread prefetch PF_ROWS_BYTES
# ahead (see PF_ROWS_BYTES) also where their arrays lie in the last-level cache (total at
# most _tiled_to bytes), but not on Zen 5: there, with each row's prefetch 8 rows ahead
# into L1, rows of 512-2048 channels in L3 took 1.1-1.7x the time.  Measured in one
# process (the prefetch alternated, 7 rounds, rows not by columns), 2-core AMD EPYC Zen 5
# VM, without / with, 1 / 2 threads: statistics 4096x1024 (16 MB) 0.65 / 0.71, 512x1024
# 0.60 / 1.00 (in L2 on two threads), 200x2048 0.67 / 1.00, 4096x512 0.87 / 0.86,
# 16384x256 0.95 / 0.90; backward 1600x1024 (13 MB) 0.80 / 0.76; from memory (51 MB) it
# helped: statistics 64x28x28x256 NHWC 1.39-1.40, 12544x1024 1.08-1.09, 6272x2048 1.04.
# This rule against the prefetch at every size (tiled_stores_to None), statistics, 1 / 2
# threads: 4096x1024 0.68 / 0.67, 1024x2048 0.61 / 0.78, 2x40x40x512 NHWC 0.88 / 0.76,
# 16384x256 1.02 / 0.94, 64x28x28x256 NHWC (51 MB: the prefetch both ways) 1.00 / 1.01.
cdef bint _pf_l3 = not _sums512

# On Intel CPUs the float16 interleaved sums go eight rows per step too
# (cbn_rows_sums8_f16, cbn_rows_gsums8_f16: float32 partial sums per channel, into
# float64 every 32 rows), but rows narrower than HROWS8_WIDE values of at most
# ROWS8_NEAR bytes per thread, and prefetch as a stream PF_ROWS_BYTES ahead beyond
# ROWS8_NEAR.  The register tiles' walks (strided down the rows, prefetched by software)
# kept them at 1.3-1.6x float32's time per byte from memory.  Measured in one process,
# 2-core Intel Xeon VM, eight rows / tiles, 1 / 2 threads (5 rounds): statistics
# 32x56x56x128 0.77 / 0.81, 8x112x112x64 0.84 / 0.80, 64x28x28x256 0.69 / 0.67,
# 2x56x56x256 0.64 / 0.84, 256x1024 0.51 / 0.57, 256x512 0.54 / 0.67, 64x4096 0.56 /
# 0.60; training 0.87-0.99, 256x1024 0.75 / 0.77; near, rows of 128-256 values
# 0.85-0.99 (training 0.88-0.98).  Prefetching 2 KB or 1 KB ahead instead: 1.00-1.07.
# Backward (its sums and dx pass), eight rows / tiles, 1 / 2 threads: 256x1024 0.68 /
# 0.73, masked 0.65 / 0.66; 2x56x56x256 0.91 / 0.89, masked 0.87 / 0.88; 1x28x28x128
# 0.91-0.93; from memory 32x56x56x128, 64x28x28x256 and 8x112x112x64 0.94-1.00 with the
# mask and without (the dx pass dominates there).  Rows of 64 values in L2 (1x56x56x64)
# had kept the tiles (0.92 / 1.09) until the loops took a thread's rows in one call
# (_task_reduce); since then, separate builds alternated (6 pairs), 2 threads, eight
# rows / tiles: statistics 1x56x56x64 0.77, 2x56x56x64 0.68, 1x28x28x64 0.71,
# 1x112x112x32 (two rows of 32 folded into one of 64 values) 0.68; training 0.82-0.87;
# backward 0.83-0.92: hence HROWS8_WIDE = WIDE, below which rows are folded whenever
# there are 8 * WIDE values or more.  On AMD Zen 4 too (_zen4): in one process (the
# setting alternated, 11 rounds), eight rows / tiles, 2 threads: statistics
# 32x56x56x128 0.65, 8x112x112x64 0.64, 4x16x28x28x32 0.82, 256x1024 0.60, 4096x512
# 0.49, in L2 1x56x56x64 0.90 and 1x14x14x256 0.91; training 0.68-0.96; backward
# 0.69-0.88.  Not measured on other AMD CPUs, which keep the tiles.
cdef bint _hrows8 = cbn_cpu_is_intel() or _zen4

# Planar sums over runs under SHORT_RUN bytes in more than one sample take a channel's
# runs BLOCK values at a time in one call (cbn_runs_sums_T, cbn_runs_gsums_T: one set of
# partial sums, reduced once) instead of a call per run (_run_sums, two horizontal
# reductions each).  Measured in one process, 2-core AMD EPYC VM (Zen 5), runs / per-run
# time on 1 and 2 threads, medians of 11 interleaved rounds: float32 training 32x512x7x7
# 0.74-0.76, 64x64x7x7 0.73-0.76, 8x64x7x7 0.81, 32x128x5x5 0.69-0.74, 8x64x10x10
# 0.87-0.92, 32x64x4x4 0.54-0.68; backward 0.82-0.97; float64 training 0.80-1.00,
# backward 0.79-1.00.  float16 (cbn_runs_sums_f16: float32 partial sums kept across runs,
# each run's last values one masked vector), this / a call per run, 1 / 2 threads, in
# one process (15 rounds): statistics 32x512x7x7 0.38 / 0.38, 64x64x7x7 0.36 / 0.40,
# 32x512x5x5 0.30 / 0.30, 8x64x7x7 0.52, 16x128x10x10 0.56 / 0.60, 4x256x14x14 0.76 /
# 0.79.  (A first version, each run's partial sums into double and its last 0-7 values
# one by one, had 0.69-0.92: separate builds alternated, 6 pairs, this / that:
# statistics 0.42-0.49, training 0.55-0.63, backward 0.72-0.78.)  One sample (one run
# per channel) took 1.09-1.12x: it keeps _run_sums.
cdef bint _sums_by_runs = True

# The float32 planar sums (cbn_sums_f32 and its kin, through _run_sums and _runs_sums)
# add and subtract as FMAs on AMD CPUs (CBN_FADD: measured on Zen 5, where additions
# have their own pipes) and plainly elsewhere (cbn_sums_f32_add and its kin): on an
# Intel Xeon the FMAs leave the additions' ports idle.  The same sums either way (an
# FMA by 1.0 rounds as the addition).  Measured on a 2-core Intel Xeon VM (KVM, AVX-512
# and AMX: Sapphire Rapids), in one process (the setting alternated, 16 rounds), plain
# / FMA time on 1 / 2 threads: float32 NCHW backward 1x64x56x56 0.94 / 0.89,
# 1x256x14x14 0.88 / 1.01; statistics 0.94-0.99, training 0.97-0.98 there; 1x512x7x7
# and 32x512x7x7 0.95-1.00 (12 rounds before: 0.88-1.10 over eight shapes, the 6.4-25.7
# MB ones 0.96-1.00).  Separate builds alternated process by process agreed (backward
# 1x64x56x56 0.89 on 2 threads, 1x256x14x14 0.90 on one; the channels-last cells,
# whose sums are other loops, 0.93-1.02).
# The streamed sums (cbn_sums_pf_f32 and cbn_gsums_pf_f32, through _run_sums_pf: Zen 4
# and Intel, from memory) follow the same choice; they had added plainly everywhere.
# On the 2-core AMD EPYC Zen 4 VM, C loop on one core, 16 values in 3.5 GHz cycles:
# statistics 3.95-4.05 against 5.74-5.76, backward sums 5.98-6.74 against 7.62-7.72
# (50 K to 1.6 M values); in one process (alternated, 21 rounds), FMA / plain time on
# 2 / 1 threads: 8x64x112x112 statistics 0.84 / 0.84, training 0.97 / 0.93; backward
# 4x32x16x28x28 0.97 / 0.94; 32x128x56x56 (from memory) and 8x64x112x112 backward
# 0.98-1.01.
cdef bint _fma_adds = _amd != 0

# The second pass of interleaved training and backward (the output after the sums), when
# it is not streamed (its arrays fit the last-level cache), walks each thread's rows in
# blocks of BACK_BYTES from its last: the rows the sums read last are still in L2, where
# a forward walk would find its first rows evicted by the sums' last ones.  Measured in
# one process, 2-core Intel Xeon VM (2 MB L2 per core), float32 channels-last, reversed /
# forward time on 1 and 2 threads, plain stores (beyond L2): training 4x32x16x28x28
# 0.91-0.99, 4x64x56x56 0.92-0.97; backward 0.94-0.99 and 0.90-0.97.  Register-tiled
# stores (x, dy and dx of 2.4-3 MB on one thread): backward 256x1024 0.84-0.87,
# 1x64x56x56 0.92-0.96 on 1 thread, 0.97-1.03 on 2 (each core's rows fit its L2);
# training 1.00-1.02.
# Planar fused training and backward (per-channel tasks, _task_train and
# _task_backward) likewise write a channel's runs from its last plane back, whether
# streamed or not: the sums read its planes first to last, and the last ones are the
# ones still in L2.  A small gain, measured in one process on a 2-core AMD EPYC Zen 5
# VM (1 MB L2 per core) whose memory speed changed between rounds: 6-12 ABBA
# alternations, reversed / forward time on 1 and 2 threads, float32 backward
# 32x128x56x56 0.93-0.99, 8x64x112x112 0.97-1.04, training 0.94-1.00 and 0.98-1.08;
# float64 backward 0.92-1.00, training 0.94-1.04 (one 1.11, not repeated); float16
# backward 0.84-1.03, training 0.99-1.01; in cache (4x32x16x28x28, 1x64x56x56)
# 0.97-1.01.
cdef bint _back = True
# On AMD Zen 4 the interleaved ones walk reversed only while a thread's rows of x span
# at most _back_to bytes (its 1 MB L2; 0: any); beyond, forward.  Measured in one
# process on the 2-core AMD EPYC Zen 4 VM (1 MB L2 per core, 32 MB L3), float32, the
# setting alternated (11 rounds, both orders), forward / reversed time on 2 and 1
# threads: channels-last training 4x32x16x28x28 0.92-0.96 and 0.92-0.93, 2x32x16x28x28
# 0.95 and 0.94-0.95, 8x64x56x56 0.93 and 0.92-0.93; backward 4x32x16x28x28 0.93-0.96 and
# 0.91-0.92, 8x64x56x56 0.92-0.95 and 0.92-0.94; but backward 1x64x56x56 (0.4 and 0.8
# MB of x per thread) 1.05-1.06 and 1.03-1.04; training there 0.98-0.99; 256x1024 and
# 512x1024 (0.5-2 MB per thread) 0.98-1.01.
cdef Py_ssize_t _back_to = 1 << 20 if _zen4 else 0


cdef inline bint _reversed(bint back, int store, Py_ssize_t nvalues,
                           size_t itemsize) noexcept nogil:
    """Whether an interleaved second pass over a thread's nvalues of x walks from its
    last rows (_back, _back_to): not when streamed."""
    return (back and store != STORE_STREAM and _back
            and (_back_to == 0 or nvalues * <Py_ssize_t>itemsize <= _back_to))

# Planar statistics, training and backward on few channels split the values among
# threads (_split) instead of giving each thread whole channels.  Measured in one
# process, 2-core Intel Xeon VM, float32, 2 threads, split / by-channel time: training
# 1x1x512x512 0.39, 16x1x16000 0.42, 1x3x224x224 and 4x3x224x224 0.75, 32x3x224x224
# (19 MB, from memory: x is read twice, but by both cores) 0.77, 2x3x512x512 0.82;
# backward 0.31-0.34 (one channel), 0.78-0.90 (three); statistics 0.51-0.84;
# 1x5x128x128 (80K values) 0.97-1.04.
cdef bint _split_on = True
# Inference, training, statistics and backward on few wide interleaved rows go by
# columns (_by_cols, whose docstring has the limits and the measurements that set them
# for 1024-4096 channels and up to 512 rows), in chunks cut to the threads
# (_col_chunks).  Before that, measured in one process, 2-core
# Intel Xeon VM, float32, by columns / by rows time (rows: one parameter table set up on
# the calling thread and read by every thread; training and backward with per-thread
# partial sums of every channel, merged, and their scratch).  Inference, 2 threads:
# 8x4096 0.27, 15x4096 0.38, 32x4096 0.49, 64x4096 0.69, 2x40000 0.78, 8x40000 0.69,
# 2x300000 0.69, 32x8192 0.63, 64x40000 0.96; 1 thread 0.70-1.03; but 256x1024 2.23
# and 128x4096 0.93-1.10 (hence the bounds).  Training / backward, 2 threads: 8x4096
# 0.45 / 0.44, 32x4096 0.68 / 0.59, 64x4096 0.79 / 0.73, 64x2048 0.63 / 0.70, 2x40000
# 0.40 / 0.52, 16x100000 0.43 / 0.45, 2x300000 0.10 / 0.12 (the rows' 70 MB of scratch
# was mapped afresh, and faulted in, on every call); 1 thread 0.17-0.98.  Statistics
# alone, 2 threads: 8x4096 0.28, 2x40000 0.27, 16x100000 0.25, 2x300000 0.06, 64x2048
# 0.45; 1 thread 0.11-0.89.
cdef bint _cols_on = True
# Inference other than by columns gives each block of its output pass a parameter table
# of its own, set up on the thread that uses it for the channels the block touches
# (_apply_own), instead of one table set up on the calling thread and read from every
# core; a batch of one splits the set-up among threads.  Measured in one process, 2-core
# Intel Xeon VM, float32, 2 threads, per-block / shared time: NCHW 1x2048x7x7 0.70,
# 1x1024x14x14 0.81, 1x512x14x14 0.86, 1x256x14x14 0.91, 1x64x56x56 0.99, 1x256x56x56,
# 32x128x56x56 and 8x64x112x112 0.99-1.00; channels-last 1x1024x14x14 0.77, 1x256x14x14
# 0.84, 256x1024 0.85, 8x1024 0.97, 32x128x56x56 and 200x2000 0.99-1.00; 1 thread
# 0.98-1.01.
cdef bint _own_on = True
# Parameter tables start at the output's offset in a 4 KiB page (_matched).
cdef bint _match_on = True
# On AMD Zen 4 they start _table_shift bytes further on (half a page): there tables at
# the output's own page offset slow the interleaved passes over rows of a multiple of
# 4 KiB, whose every row then meets them at the same offsets.  In a C loop of cbn's row
# passes (bench/probes/footprint.c: arrays 16 bytes into a page, 2-core AMD EPYC VM,
# Zen 4, 41 rounds in one process), float32 256x1024, the roof's time over the two
# passes' went from 0.84 / 1.22 / 1.05 (inference, training, backward) to 0.91 / 1.32 /
# 1.26 on 2 threads; 128x2048 0.59 / 0.87 / 0.87 to 0.64 / 0.93 / 0.97; 512x512 alike.
# In cbn in one process (the setting alternated, 11-15 rounds, both orders), half a page
# on / at the offset, 2 and 1 threads: float32 256x1024 inference 0.92 and 0.89-0.90,
# training 0.96 and 0.95, backward 0.88-0.89 and 0.86-0.87; 128x2048 backward 0.92;
# float64 256x512 backward 0.88 and 0.86, 256x1024 training 0.98; 512x512 and 4096x512
# (rows of 2 KiB: every other row meets the tables either way), 1x14x14x1024 and
# 1x7x7x2048 (few rows: by columns), the channels-last and planar cells of the bench
# 0.96-1.01.  Elsewhere not measured: 0, the output's offset.
cdef Py_ssize_t _table_shift = 2048 if _zen4 else 0
# Planar output passes on more than one thread whose arrays total OPF_FROM to OPF_TO
# bytes per thread (mostly in the last-level cache, not in L2) prefetch their input
# CBN_PF_OUT bytes ahead into L1 (cbn_run_affine_pf_T, STORE_PF): the hardware
# prefetchers leave the loads of an L3-resident stream waiting, which a plain copy
# hides better than a pass that computes between its load and its store (a C loop of
# the multiply-add over 3.2 MB from L3: 1.0x a copy's time with the prefetch, 1.1-1.3x
# without).  Measured on a 2-core AMD EPYC VM (Zen 5, 1 MB L2 per core, 32 MB L3),
# float32 planar inference on 2 threads, prefetching / not: in one process (10-16 ABBA
# alternations) 1x256x56x56 0.89-0.92, 1x64x112x112 0.90-0.92, 4x32x16x28x28 and
# 8x64x56x56 0.82-1.02 (the VM's slow phases gain most); separate builds alternated
# process by process, medians 0.85-0.91 on those shapes.  Beyond the window: 1.6 MB
# (mostly in L2) 1.12.  On one thread the same shapes measured 0.82-1.09, within the
# VM's noise: one thread does not prefetch.  Not on AMD Zen 4, where it loses: on a
# 2-core AMD EPYC VM (Zen 4, 1 MB L2 per core, 32 MB L3), float32 planar inference on
# 2 threads in one process (15 rounds, both orders), not prefetching / prefetching:
# 4x32x16x28x28 0.84-0.91, 8x64x56x56 0.84, 1x256x56x56 0.87, 1x64x112x112 0.85-0.88;
# the training and backward of these shapes, whose passes do not take this path,
# 0.92-1.07 (noise); beyond the window (8x64x112x112, 25.7 MB) 0.98-1.02.
cdef bint _opf_on = not _zen4


cdef bint _setting(bint* setting, flag):
    """The old value of a kernel setting, which is set to flag unless flag is None."""
    cdef bint old = setting[0]
    if flag is not None:
        setting[0] = bool(flag)
    return old


cdef object _wide_setting(bint* setting, flag):
    """_setting for an AVX-512F setting: it stays False where the CPU cannot run AVX-512F
    (_can512)."""
    old = _setting(setting, flag)
    setting[0] = setting[0] and _can512
    return old


# The settings' setters, hooks for tests and bench/ab.py: each returns the old value and
# sets the value given, if any.  (This module's Python-facing functions are described
# in comments, not docstrings: compiled into both builds, the docstrings took about 4 KB
# of the repaired wheel, which the packaging check (.ci) holds under 1 MB.)
# The bytes of x a thread's rows span up to which interleaved second passes walk from their
# last rows (None: any size; see _back_to).  reversed_rows_to(n) sets it (n: an int > 0 or
# None) and returns the old value; for tests and measurements.
def reversed_rows_to(nbytes=False):
    return _limit(&_back_to, nbytes)


# Whether work on few wide interleaved rows goes by columns (see _by_cols);
# by_columns(True/False) sets it and returns the old setting (for benchmarks and tests).
def by_columns(flag=None):
    return _setting(&_cols_on, flag)


# Whether parameter tables start at the output's offset in a 4 KiB page (see _matched) or at
# a 64-byte line; tables_match_output(True/False) sets it and returns the old value (for
# tests and measurements).
def tables_match_output(flag=None):
    return _setting(&_match_on, flag)


# The bytes past the output's offset in a 4 KiB page at which parameter tables start where
# they match it (None: at it; see _table_shift); table_shift(n) sets it (n: an int > 0 or
# None) and returns the old value; for tests and measurements.
def table_shift(nbytes=False):
    return _limit(&_table_shift, nbytes)


# Whether planar output passes on more than one thread over arrays of OPF_FROM to OPF_TO
# bytes per thread prefetch their input (see _opf_on); prefetch_outputs(True/ False) sets it
# and returns the old value (for tests and measurements).
def prefetch_outputs(flag=None):
    return _setting(&_opf_on, flag)


def params_per_block(flag=None):
    return _setting(&_own_on, flag)


# Whether planar statistics, training and backward sums on few channels split the values
# among threads (see _split); split_few_channels(True/False) sets it and returns the old
# setting (for benchmarks and tests).
def split_few_channels(flag=None):
    return _setting(&_split_on, flag)


# Whether training and backward write their output from the last rows back (interleaved, see
# _task_apply) or from each channel's last plane back (planar, one task per channel);
# second_pass_reversed(True/False) sets it and returns the old value (for tests and
# measurements).
def second_pass_reversed(flag=None):
    return _setting(&_back, flag)


# Whether planar sums over short runs go several runs per call (see _sums_by_runs);
# runs_sums(True/False) sets it and returns the old value (for tests and measurements).
def runs_sums(flag=None):
    return _setting(&_sums_by_runs, flag)


# Whether the float32 planar sums add as FMAs (see _fma_adds); fma_adds(True/False) sets it
# and returns the old value (for tests and measurements).
def fma_adds(flag=None):
    return _setting(&_fma_adds, flag)


# Whether planar sums from memory prefetch as a stream ahead of their reading (see
# _pf_stream), not block by block; prefetch_stream(True/False) sets it and returns the old
# value (for tests and benchmarks).
def prefetch_stream(flag=None):
    return _setting(&_pf_stream, flag)


# Whether float32 interleaved sums may go eight rows per step (see _rows_sums);
# eight_row_sums(True/False) sets it and returns the old value (for tests and measurements).
def eight_row_sums(flag=None):
    return _setting(&_rows8, flag)


# Whether the float32 eight-row sums (statistics and backward) take AVX-512F vectors (see
# _sums512); wide_sums(True/False) sets it (True only where the CPU runs AVX-512F) and
# returns the old value (for tests and measurements).
def wide_sums(flag=None):
    return _wide_setting(&_sums512, flag)


# Whether the float32 and float64 interleaved sums over rows of 64 channels keep their sums
# in AVX-512F registers (see _sums_reg); register_sums(True/False) sets it (True only where
# the CPU runs AVX-512F) and returns the old value (for tests and measurements).
def register_sums(flag=None):
    return _wide_setting(&_sums_reg, flag)


# Whether the float16 passes in cache (output passes and sums) run in AVX-512F vectors (see
# _h512; only where the CPU can run them: _can512); wide_halves(True/False) sets it and
# returns the old setting (for tests and measurements).
def wide_halves(flag=None):
    return _wide_setting(&_h512, flag)


# Whether the float32 interleaved output passes that do not take the register tiles run in
# AVX-512F vectors (see _r512; only where the CPU can run them: _can512); wide_rows(True/
# False) sets it and returns the old setting (for tests and measurements).
def wide_rows(flag=None):
    return _wide_setting(&_r512, flag)


# Whether float32 interleaved statistics over data in cache go in tiles of 16 channels (see
# _t16); sixteen_channel_tiles(True/False) sets it and returns the old setting (for tests
# and measurements).
def sixteen_channel_tiles(flag=None):
    return _setting(&_t16, flag)


# Rows of fewer values than this go eight rows per step where eight_row_sums allows (None:
# rows of any width; see _rows8_max); eight_row_width(n or None) sets it and returns the old
# value (for tests and measurements).
def eight_row_width(n=False):
    return _limit(&_rows8_max, n)


# Whether float16 interleaved sums may go eight rows per step (see _hrows8);
# eight_row_sums_f16(True/False) sets it and returns the old value (for tests and
# measurements).
def eight_row_sums_f16(flag=None):
    return _setting(&_hrows8, flag)


# Whether interleaved float32 statistics over more than TILED_MAX values take the register
# tiles; tiled_from_memory(True/False) sets it and returns the old value (for tests and
# measurements).
def tiled_from_memory(flag=None):
    return _setting(&_tiles_mem, flag)


# The last-level cache's size as cpuid reports it (0: unknown).
def llc_bytes():
    return _llc


cdef object _threshold(Py_ssize_t* setting, nbytes):
    """The old value of a byte threshold (None: never), set to nbytes (an int >= 0 or
    None; else an error from _rare.count) unless nbytes is False."""
    old = None if setting[0] == _NEVER else setting[0]
    if nbytes is not False:
        setting[0] = _NEVER if nbytes is None else _count(nbytes)
    return old


cdef object _limit(Py_ssize_t* setting, n):
    """The old value of a limit that 0 turns off (returned as None), set to n (an int
    >= 0, 0 and None alike turning it off; else an error from _rare.count) unless n is
    False."""
    old = setting[0] or None
    if n is not False:
        setting[0] = 0 if n is None else _count(n)
    return old


# The bytes an output pass touches (its inputs and output together) from which it writes
# with streaming stores (None: never).  stream_from(n) sets it (n: an int >= 0 or None) and
# returns the old value; for tests and measurements.
def stream_from(nbytes=False):
    return _threshold(&_stream_from, nbytes)


# The bytes an interleaved output pass's arrays total up to which it stores through the
# register tiles (see _tiled_to; None: only up to TILED_OUT bytes per thread).
# tiled_stores_to(n) sets it (n: an int > 0 or None) and returns the old value; for tests
# and measurements.
def tiled_stores_to(nbytes=False):
    return _limit(&_tiled_to, nbytes)


# Whether narrow interleaved rows stored through the register tiles go as rows of one tile's
# width (see _tile_rows); fold_to_tiles(True/False) sets it and returns the old value (for
# tests and measurements).
def fold_to_tiles(flag=None):
    return _setting(&_tile_rows, flag)


# The most rows per block of register-tiled output passes whose rows span several tiles
# (None: as many as fit 4 KiB; see cbn_tile_block).  tile_block_rows(n) sets it (n: an int >
# 0 or None) and returns the old value; for tests and measurements.
def tile_block_rows(n=False):
    return _limit(&cbn_tile_block, n)


# The bytes below which planar output runs take the short-run passes (see _short_run; None:
# never).  short_runs_below(n) sets it (n: an int > 0 or None) and returns the old value;
# for tests and measurements.
def short_runs_below(nbytes=False):
    return _limit(&_short_run, nbytes)


# The values per channel from which planar training fuses each channel's sums and output
# (see _fused_from; None: always).  fused_training_from(n) sets it (n: an int > 0 or None)
# and returns the old value; for tests and measurements.
def fused_training_from(n=False):
    return _limit(&_fused_from, n)


# The values per channel (all arrays read together) up to which planar training and backward
# pipeline their per-channel tasks (see _pipe_to; None: never). pipelined_to(n) sets it (n:
# an int > 0 or None) and returns the old value; for tests and measurements.
def pipelined_to(n=False):
    return _limit(&_pipe_to, n)


# The run length in bytes below which planar float32 and float16 training and backward take
# all channels' sums before one output pass (see _two_phase; None: never).
# two_phase_below(n) sets it (n: an int > 0 or None) and returns the old value; for tests
# and measurements.
def two_phase_below(nbytes=False):
    return _limit(&_two_phase, nbytes)


# The bytes a planar call's arrays total from which its sums prefetch the next run block by
# block (see _pf_from; None: never).  prefetch_runs_from(n) sets it (n: an int >= 0 or None)
# and returns the old value; for tests and measurements.
def prefetch_runs_from(nbytes=False):
    return _threshold(&_pf_from, nbytes)


cdef inline int _overlap(cnp.ndarray a, cnp.ndarray b) noexcept:
    cdef char* a0 = <char*>cnp.PyArray_DATA(a)
    cdef char* b0 = <char*>cnp.PyArray_DATA(b)
    cdef char* a1 = a0 + cnp.PyArray_NBYTES(a)
    cdef char* b1 = b0 + cnp.PyArray_NBYTES(b)
    if a1 <= b0 or b1 <= a0:
        return 0
    return 1 if a0 == b0 and a1 == b1 else 2


# For dense arrays: 0 when a and b share no memory, 1 when they start at the same address
# with the same size (the same elements, if laid out alike), 2 otherwise.
def overlap(cnp.ndarray a, cnp.ndarray b):
    return _overlap(a, b)


# ------------------------------------------- fast paths of the Python layer
# Predicates, not checks: each answers whether arguments already have the common
# form, with C-level tests (a call on a (1, 16, 8, 8) tensor pays for every Python
# attribute it reads).  Whenever one says no, cbn._api validates in Python and
# words the error.

cdef inline bint _plain_param(object a, Py_ssize_t C) noexcept:
    """a is None or a native-endian float32/float64 ndarray of shape (C,)."""
    if a is None:
        return True
    if type(a) is not cnp.ndarray:
        return False
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int tn = cnp.PyArray_TYPE(arr)
    return (cnp.PyArray_NDIM(arr) == 1 and cnp.PyArray_DIM(arr, 0) == C
            and (tn == cnp.NPY_FLOAT or tn == cnp.NPY_DOUBLE) and cnp.PyArray_ISNOTSWAPPED(arr))


# Whether each of a, b, c, d is None or a native float32/float64 ndarray of shape (C,) (what
# the kernels read as they are).
def plain_params(Py_ssize_t C, a, b, c, d):
    return _plain_param(a, C) and _plain_param(b, C) and _plain_param(c, C) and \
        _plain_param(d, C)


FLAG_C_CONTIGUOUS = cnp.NPY_ARRAY_C_CONTIGUOUS
FLAG_ALIGNED = cnp.NPY_ARRAY_ALIGNED
FLAG_WRITEABLE = cnp.NPY_ARRAY_WRITEABLE


# NumPy's flag bits of a (NPY_ARRAY_C_CONTIGUOUS, _ALIGNED, _WRITEABLE, ...).
def flags(cnp.ndarray a):
    return cnp.PyArray_FLAGS(a)


cdef inline int _like(object a, cnp.ndarray x) noexcept:
    if type(a) is not cnp.ndarray:
        return -1
    cdef cnp.ndarray arr = <cnp.ndarray>a
    cdef int k, nd = cnp.PyArray_NDIM(x)
    if (cnp.PyArray_NDIM(arr) != nd or cnp.PyArray_TYPE(arr) != cnp.PyArray_TYPE(x)
            or cnp.PyArray_ISNOTSWAPPED(arr) != cnp.PyArray_ISNOTSWAPPED(x)):
        return -1
    for k in range(nd):
        if cnp.PyArray_DIM(arr, k) != cnp.PyArray_DIM(x, k):
            return -1
    return cnp.PyArray_FLAGS(arr)


# a's flag bits when a is an ndarray of x's shape and dtype (of the same byte order), else
# -1.
def like(a, cnp.ndarray x):
    return _like(a, x)


cdef enum:
    _DENSE = cnp.NPY_ARRAY_C_CONTIGUOUS | cnp.NPY_ARRAY_ALIGNED


cdef object _c_dims(cnp.ndarray x, int axis):
    cdef int k, nd = cnp.PyArray_NDIM(x)
    cdef Py_ssize_t outer = 1, inner = 1, C
    if cnp.PyArray_FLAGS(x) & _DENSE != _DENSE:
        return None
    C = cnp.PyArray_DIM(x, axis)
    for k in range(axis):
        outer *= cnp.PyArray_DIM(x, k)
    for k in range(axis + 1, nd):
        inner *= cnp.PyArray_DIM(x, k)
    if C == 1:
        return 1, 1, outer * inner
    return outer, C, inner


# (outer, C, inner) of x around axis (0 <= axis < x.ndim) when x is C-contiguous and aligned
# (as cbn._layout.canonical describes it), else None.
def c_dims(cnp.ndarray x, int axis):
    return _c_dims(x, axis)


cdef inline bint _dense(object a) noexcept:
    """a is None or a C-contiguous, aligned ndarray."""
    return a is None or (type(a) is cnp.ndarray
                         and cnp.PyArray_FLAGS(<cnp.ndarray>a) & _DENSE == _DENSE)


cdef inline bint _apart(cnp.ndarray out, object a) noexcept:
    """out and a (None, or an array) share no memory, or a is out's very elements."""
    return a is None or _overlap(out, <cnp.ndarray>a) < 2


# ((outer, C, inner), target) when the kernels can read x, a and b as they are and write
# target (out itself, or a new array when out is None), else None.
#
# That holds when x, a and b (None, or arrays of x's shape and dtype) are C-contiguous and
# aligned, and out is None or a writeable, aligned, C-contiguous ndarray of x's shape and
# dtype that shares no memory with x, a and b, or is one of them (in place): what the
# validating path of cbn._api._prepare decides, for the common case.
def c_plan(cnp.ndarray x, int axis, out, a, b):
    cdef int f
    dims = _c_dims(x, axis)
    if dims is None or not (_dense(a) and _dense(b)):
        return None
    if out is None:
        return dims, cnp.PyArray_EMPTY(cnp.PyArray_NDIM(x), cnp.PyArray_DIMS(x),
                                       cnp.PyArray_TYPE(x), 0)
    f = _like(out, x)
    if f < 0 or f & (_DENSE | cnp.NPY_ARRAY_WRITEABLE) != _DENSE | cnp.NPY_ARRAY_WRITEABLE:
        return None
    if _apart(<cnp.ndarray>out, x) and _apart(<cnp.ndarray>out, a) and _apart(<cnp.ndarray>out, b):
        return dims, out
    return None


# Test hook: the software float16 conversions, whichever the build uses.
def half_soft_roundtrip(const unsigned short[::1] h, const float[::1] f,
                        float[::1] h_as_float, unsigned short[::1] f_as_half):
    cdef Py_ssize_t i
    for i in range(h.shape[0]):
        h_as_float[i] = cbn_h2f_soft(h[i])
    for i in range(f.shape[0]):
        f_as_half[i] = cbn_f2h_soft(f[i])


# ------------------------------------------------------------- load, store

cdef inline double _ldd(const data_t* p, Py_ssize_t i) noexcept nogil:
    """p[i] as double (single values: pivots)."""
    if data_t is cbn_half:
        return cbn_h2f(p[i])
    else:
        return p[i]


cdef inline void _unreachable() noexcept nogil:
    """Fused-type pairs that no entry passes (float data with a double parameter table,
    and the like): the entries pair float16 and float32 data with float tables, float64
    data with double ones."""
    abort()


# ------------------------------------------------------------ per channel

cdef inline void _finish_stats(double s1, double s2, double ref, double n,
                               double* mean, double* var) noexcept nogil:
    """Mean and biased variance from sums of d = x - ref and d * d.  One division, by
    n, which the channel loops hoist (inlined, n is theirs to all channels): two per
    channel left the loops over few values waiting on the divider (measured, separate
    builds, float32 single-sample 7x7 and 14x14 planes: statistics and training
    0.93-0.96 of the time)."""
    cdef double r = 1.0 / n
    cdef double d = s1 * r
    cdef double v = s2 * r - d * d
    mean[0] = ref + d
    var[0] = 0.0 if v < 0.0 else v      # NaN propagates (the comparison is false)


cdef inline double _invstd(double var, double eps) noexcept nogil:
    """1 / sqrt(var + eps), and 0 when var + eps == 0 (as PyTorch): cbn_invstd1."""
    return cbn_invstd1(var + eps)


cdef inline void _scale_invstd(double* w, const double* v, double eps, Py_ssize_t n,
                               bint fast) noexcept nogil:
    """w[i] *= _invstd(v[i], eps) for i < n; fast (tables rounded to float32 afterwards):
    by cbn_scale_invstd (with AVX2 a float32 estimate refined in float64, relative error
    below 2^-44, at half the divider's time)."""
    if fast:
        cbn_scale_invstd(w, v, eps, n)
    else:
        cbn_scale_invstd_exact(w, v, eps, n)


cdef inline void _set_params(real_t* p, Py_ssize_t C, Py_ssize_t c, double center,
                             double scale, double shift) noexcept nogil:
    """Channel c computes (x - center) * scale + shift as (x - hi) * scale + shift'.

    hi is center rounded to the compute type, so x - hi keeps the digits that
    x * scale + shift would lose when |center| >> spread (and is exact when x is
    within a factor of 2 of hi); the rest, lo = center - hi, is folded in double
    into shift' = shift - lo * scale, a correction of the output's own size.
    """
    cdef real_t hi = <real_t>center
    cdef double lo = center - <double>hi
    cdef double corr
    lo = lo if lo == lo else 0.0        # center = +-inf (or NaN): hi carries it
    corr = lo * scale
    corr = corr if lo != 0.0 else 0.0   # shift stays exact (even where scale is inf)
    p[P_HI * C + c] = hi
    p[P_SCALE * C + c] = <real_t>scale
    p[P_SHIFT * C + c] = <real_t>(shift - corr)


cdef inline void _set_grad_params(real_t* p, Py_ssize_t C, Py_ssize_t c, double sg,
                                  double sgd, double mean, double invstd, double w,
                                  double n, bint training) noexcept nogil:
    """dx = (x - hi) * scale + g * gain + shift for channel c, from its sums sg = sum(g)
    (which is dbias) and sgd = sum(g * (x - mean)) (dweight is sgd * invstd).

    With k = w * invstd, training gives
    dx = k * (g - sum(g) / n - (x - mean) * invstd**2 * sum(g * (x - mean)) / n);
    frozen statistics give dx = k * g.
    """
    cdef double k = w * invstd
    cdef double scale = -k * invstd * invstd * sgd / n
    cdef double shift = -k * sg / n
    _set_params(p, C, c, mean, scale if training else 0.0, shift if training else 0.0)
    p[P_GAIN * C + c] = <real_t>k


cdef void _grad_table(real_t* p, Py_ssize_t ldp, Py_ssize_t m, const double* mean,
                      const double* invstd, const double* w, double n, bint training,
                      double* dweight, const double* dbias) noexcept nogil:
    """The backward's table of m channels (into p[k * ldp + c]) from their sums in dbias
    and dweight, then dweight.  Two loops: with dweight's stores in the first (as _set_grad_params wrote
    it through a pointer), float32 tables needed more run-time alias checks than GCC
    makes, and the loop did not vectorize.  Not inline: in each of _backward's fused
    instances its vector loops took 9 KB of the repaired wheel (1 MB check, .ci).
    This step runs serially between the two passes of an interleaved backward: 1024
    channels took 5.5 us, now 3.5 (rdtsc around it, 2-core AMD EPYC Zen 4 VM; the rest
    is cache misses, its arrays cold after the sums' pass).  In one process (the two
    forms alternated, 21 rounds), two / one loops, float32 backward, 2 threads:
    256x1024 0.94-0.95, 512x512 0.96-0.99, 1x14x14x256 0.97-0.99; 1 thread 0.98-0.99;
    other cells 0.99-1.05 (noise)."""
    cdef Py_ssize_t c
    for c in range(m):
        _set_grad_params(p, ldp, c, dbias[c], dweight[c], mean[c], invstd[c], w[c], n,
                         training)
    for c in range(m):
        dweight[c] *= invstd[c]


# ---------------------------------------------------------- planar runs
# A run is `n` contiguous values of one channel.

cdef inline void _run_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                           bint masked, Py_ssize_t m, double ref, double* acc) noexcept nogil:
    """acc[0], acc[1] += the two sums over one run (the reduction primitives of
    _kernels_c.h): statistics about ref (grad False), or backward sums about the
    mean ref."""
    cdef const data_t* mask = y if masked else NULL
    if data_t is float:
        if grad and _fma_adds:
            cbn_gsums_f32(x, dy, mask, m, ref, acc)
        elif grad:
            cbn_gsums_f32_add(x, dy, mask, m, ref, acc)
        elif _fma_adds:
            cbn_sums_f32(x, m, ref, acc)
        else:
            cbn_sums_f32_add(x, m, ref, acc)
    elif data_t is double:
        if grad:
            cbn_gsums_f64(x, dy, mask, m, ref, acc)
        else:
            cbn_sums_f64(x, m, ref, acc)
    elif _h512:
        if grad:
            cbn_gsums_f16_512(x, dy, mask, m, ref, acc)
        else:
            cbn_sums_f16_512(x, m, ref, acc)
    else:
        if grad:
            cbn_gsums_f16(x, dy, mask, m, ref, acc)
        else:
            cbn_sums_f16(x, m, ref, acc)


cdef inline bint _runs_sums_of(const data_t* x, Py_ssize_t outer, Py_ssize_t inner,
                               bint pf) noexcept nogil:
    """Whether _plane_sums takes x's outer runs of inner values several per call
    (_sums_by_runs: runs under SHORT_RUN bytes, not prefetched block by block, in more
    than one sample)."""
    return (_sums_by_runs and outer > 1 and not pf
            and inner * <Py_ssize_t>sizeof(data_t) < SHORT_RUN)


cdef inline void _runs_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                            bint masked, Py_ssize_t n, Py_ssize_t nr, Py_ssize_t ld,
                            Py_ssize_t left, double ref, double* acc) noexcept nogil:
    """acc[0], acc[1] += the two sums over nr runs of n values, ld apart (left runs
    from x on exist: the prefetch bound), as _run_sums over each."""
    cdef const data_t* mask = y if masked else NULL
    if data_t is float:
        if grad and _fma_adds:
            cbn_runs_gsums_f32(x, dy, mask, n, nr, ld, left, ref, acc)
        elif grad:
            cbn_runs_gsums_f32_add(x, dy, mask, n, nr, ld, left, ref, acc)
        elif _fma_adds:
            cbn_runs_sums_f32(x, n, nr, ld, left, ref, acc)
        else:
            cbn_runs_sums_f32_add(x, n, nr, ld, left, ref, acc)
    elif data_t is double:
        if grad:
            cbn_runs_gsums_f64(x, dy, mask, n, nr, ld, left, ref, acc)
        else:
            cbn_runs_sums_f64(x, n, nr, ld, left, ref, acc)
    else:
        if grad:
            cbn_runs_gsums_f16(x, dy, mask, n, nr, ld, left, ref, acc)
        else:
            cbn_runs_sums_f16(x, n, nr, ld, left, ref, acc)


cdef inline int _hstream(bint stream, bint ahead) noexcept nogil:
    """The float16 passes' stream argument: streaming stores, and with ahead (a pass in
    memory order) the input prefetched ahead (CBN_STREAM_PF)."""
    return (CBN_STREAM_PF if ahead else 1) if stream else 0


cdef inline void _run_affine(const data_t* x, data_t* out, Py_ssize_t n, real_t hi, real_t s,
                             real_t t, bint relu, bint stream, bint pf=False,
                             bint ahead=False) noexcept nogil:
    """out = (x - hi) * s + t over one run (then max(., 0) with relu; NaN stays NaN);
    stream: with streaming stores (float16 ones only with F16C); pf: prefetching x
    (STORE_PF; float32 and float64 runs of SHORT_RUN bytes or more); ahead: a pass in
    memory order (float16 streamed ones prefetch x, _hstream)."""
    cdef bint short = n * <Py_ssize_t>sizeof(data_t) < _short_run
    cdef int hs
    if data_t is cbn_half and real_t is float:
        hs = _hstream(stream, ahead)
        if _h512 and hs == 0:
            cbn_run_affine_f16_512(x, out, n, hi, s, t, relu)
        else:
            cbn_run_affine_f16(x, out, n, hi, s, t, relu, hs)
    elif data_t is float and real_t is float:
        if stream:
            cbn_run_affine_nt_f32(x, out, n, hi, s, t, relu)
        elif pf and not short:
            cbn_run_affine_pf_f32(x, out, n, hi, s, t, relu)
        elif short:
            cbn_run_affine_short_f32(x, out, n, hi, s, t, relu)
        else:
            cbn_run_affine_f32(x, out, n, hi, s, t, relu)
    elif data_t is double and real_t is double:
        if stream:
            cbn_run_affine_nt_f64(x, out, n, hi, s, t, relu)
        elif pf and not short:
            cbn_run_affine_pf_f64(x, out, n, hi, s, t, relu)
        elif short:
            cbn_run_affine_short_f64(x, out, n, hi, s, t, relu)
        else:
            cbn_run_affine_f64(x, out, n, hi, s, t, relu)
    else:
        _unreachable()


cdef inline void _run_dx(const data_t* x, const data_t* dy, const data_t* y, bint masked,
                         data_t* dx, Py_ssize_t n, real_t hi, real_t s, real_t t,
                         real_t k, bint stream, bint ahead=False) noexcept nogil:
    """dx = (x - hi) * s + g * k + t over one run, g = dy (0 where masked and y <= 0);
    ahead as in _run_affine."""
    cdef bint short = n * <Py_ssize_t>sizeof(data_t) < _short_run
    cdef int hs
    if data_t is cbn_half and real_t is float:
        hs = _hstream(stream, ahead)
        if _h512 and hs == 0:
            cbn_run_dx_f16_512(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        else:
            cbn_run_dx_f16(x, dy, y if masked else NULL, dx, n, hi, s, t, k, hs)
    elif data_t is float and real_t is float:
        if stream:
            cbn_run_dx_nt_f32(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        elif short:
            cbn_run_dx_short_f32(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        else:
            cbn_run_dx_f32(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
    elif data_t is double and real_t is double:
        if stream:
            cbn_run_dx_nt_f64(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        elif short:
            cbn_run_dx_short_f64(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        else:
            cbn_run_dx_f64(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
    else:
        _unreachable()


cdef inline bint _runs_fuse(const data_t* x, Py_ssize_t inner, int store) noexcept nogil:
    """Whether a task's whole planar runs of inner values of x go several per call
    (_runs_affine, _runs_dx): short runs, not streamed."""
    return inner * <Py_ssize_t>sizeof(data_t) < _short_run and store != STORE_STREAM


cdef inline void _runs_affine(const data_t* x, data_t* out, Py_ssize_t n, Py_ssize_t nr,
                              const real_t* p, Py_ssize_t C, bint relu) noexcept nogil:
    """nr consecutive short runs of n values, run j with channel j's parameters in the
    table p (its columns: p points at the first run's channel, C apart)."""
    if data_t is cbn_half and real_t is float and _h512:
        cbn_runs_affine_short_f16_512(x, out, n, nr, p + P_HI * C, p + P_SCALE * C,
                                      p + P_SHIFT * C, relu)
    elif data_t is cbn_half and real_t is float:
        cbn_runs_affine_short_f16(x, out, n, nr, p + P_HI * C, p + P_SCALE * C,
                                  p + P_SHIFT * C, relu)
    elif data_t is float and real_t is float:
        cbn_runs_affine_short_f32(x, out, n, nr, p + P_HI * C, p + P_SCALE * C,
                                  p + P_SHIFT * C, relu)
    elif data_t is double and real_t is double:
        cbn_runs_affine_short_f64(x, out, n, nr, p + P_HI * C, p + P_SCALE * C,
                                  p + P_SHIFT * C, relu)
    else:
        _unreachable()


cdef inline void _runs_dx(const data_t* x, const data_t* dy, const data_t* y, bint masked,
                          data_t* dx, Py_ssize_t n, Py_ssize_t nr, const real_t* p,
                          Py_ssize_t C) noexcept nogil:
    """dx over nr consecutive short runs, as _runs_affine."""
    if data_t is float and real_t is float:
        cbn_runs_dx_short_f32(x, dy, y if masked else NULL, dx, n, nr, p + P_HI * C,
                              p + P_SCALE * C, p + P_SHIFT * C, p + P_GAIN * C)
    elif data_t is double and real_t is double:
        cbn_runs_dx_short_f64(x, dy, y if masked else NULL, dx, n, nr, p + P_HI * C,
                              p + P_SCALE * C, p + P_SHIFT * C, p + P_GAIN * C)
    elif data_t is cbn_half and real_t is float and _h512:
        cbn_runs_dx_short_f16_512(x, dy, y if masked else NULL, dx, n, nr, p + P_HI * C,
                                  p + P_SCALE * C, p + P_SHIFT * C, p + P_GAIN * C)
    elif data_t is cbn_half and real_t is float:
        cbn_runs_dx_short_f16(x, dy, y if masked else NULL, dx, n, nr, p + P_HI * C,
                              p + P_SCALE * C, p + P_SHIFT * C, p + P_GAIN * C)
    else:
        _unreachable()


cdef struct Sums:
    double s1
    double s2


cdef inline void _run_sums_pf(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                              bint masked, Py_ssize_t m, double ref, double* acc,
                              Py_ssize_t ahead) noexcept nogil:
    """_run_sums, prefetching each array's values `ahead` values on."""
    cdef const data_t* mask = y if masked else NULL
    if data_t is float:
        if grad and _fma_adds:
            cbn_gsums_pf_f32(x, dy, mask, m, ref, acc, ahead)
        elif grad:
            cbn_gsums_pf_f32_add(x, dy, mask, m, ref, acc, ahead)
        elif _fma_adds:
            cbn_sums_pf_f32(x, m, ref, acc, ahead)
        else:
            cbn_sums_pf_f32_add(x, m, ref, acc, ahead)
    elif data_t is double:
        if grad:
            cbn_gsums_pf_f64(x, dy, mask, m, ref, acc, ahead)
        else:
            cbn_sums_pf_f64(x, m, ref, acc, ahead)
    else:
        if grad:
            cbn_gsums_pf_f16(x, dy, mask, m, ref, acc, ahead)
        else:
            cbn_sums_pf_f16(x, m, ref, acc, ahead)


cdef inline void _sums_ahead(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                             bint masked, Py_ssize_t b, Py_ssize_t m, Py_ssize_t inner,
                             Py_ssize_t stride, bint last, double ref,
                             double* acc) noexcept nogil:
    """_run_sums over values b .. b + m - 1 of a run of inner values at x (and dy, y),
    prefetching the values a = min(PF_STREAM, inner) ahead in reading order:
    in the run, then in the next one, stride values on (none after the last run)."""
    cdef Py_ssize_t a = PF_STREAM if PF_STREAM < inner else inner
    cdef Py_ssize_t s = inner - a          # from value s on the stream is in the next run
    cdef Py_ssize_t k
    if b < s:
        k = m if b + m <= s else s - b
        _run_sums_pf(x + b, dy + b, y + b, grad, masked, k, ref, acc, a)
        b += k
        m -= k
    if m > 0 and not last:
        _run_sums_pf(x + b, dy + b, y + b, grad, masked, m, ref, acc, stride - inner + a)
    elif m > 0:
        _run_sums(x + b, dy + b, y + b, grad, masked, m, ref, acc)


cdef inline Sums _plane_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                             bint masked, Py_ssize_t outer, Py_ssize_t stride,
                             Py_ssize_t inner, double ref, bint pf) noexcept nogil:
    """The two sums over one channel's runs x[o * stride : o * stride + inner]:
    statistics about ref (grad False) or backward sums about the mean ref.  pf
    (_pf_runs): each block prefetches the same block of the next run.  (The three
    prefetch blocks below stay written out: one inline helper for them was compiled
    out of line and the next-run prefetch lost its gain, 0.54 -> 0.99 of the time.)

    Blocked: runs are summed in pieces of at most BLOCK values into a block
    total, which is added to the result every BLOCK values, so rounding grows
    like BLOCK / vector width + n / BLOCK rather than n."""
    cdef double blk[2]
    cdef Sums r
    cdef Py_ssize_t o, b, m, off, since = 0
    cdef bint stream = pf and _pf_stream
    r.s1 = 0.0
    r.s2 = 0.0
    blk[0] = 0.0
    blk[1] = 0.0
    if _runs_sums_of(x, outer, inner, pf):      # short runs: BLOCK values' runs per call
        b = BLOCK // inner
        o = 0
        while o < outer:
            m = b if outer - o > b else outer - o
            off = o * stride
            _runs_sums(x + off, dy + off, y + off, grad, masked, inner, m, stride,
                       outer - o, ref, blk)
            r.s1 += blk[0]
            r.s2 += blk[1]
            blk[0] = 0.0
            blk[1] = 0.0
            o += m
        return r
    for o in range(outer):
        if inner < PF_RUN and o + PF_AHEAD < outer:
            off = (o + PF_AHEAD) * stride
            cbn_prefetch(x + off, inner * sizeof(data_t))
            if grad:
                cbn_prefetch(dy + off, inner * sizeof(data_t))
                if masked:
                    cbn_prefetch(y + off, inner * sizeof(data_t))
        elif inner >= PF_RUN and o + 1 < outer and not pf:
            off = (o + 1) * stride
            cbn_prefetch(x + off, PF_HEAD)
            if grad:
                cbn_prefetch(dy + off, PF_HEAD)
                if masked:
                    cbn_prefetch(y + off, PF_HEAD)
        b = 0
        while b < inner:
            m = inner - b if inner - b < BLOCK else BLOCK
            off = o * stride + b
            if pf and o + 1 < outer and not stream:
                cbn_prefetch(x + off + stride, m * sizeof(data_t))
                if grad:
                    cbn_prefetch(dy + off + stride, m * sizeof(data_t))
                    if masked:
                        cbn_prefetch(y + off + stride, m * sizeof(data_t))
            if stream:
                off = o * stride
                _sums_ahead(x + off, dy + off, y + off, grad, masked, b, m, inner, stride,
                            o + 1 == outer, ref, blk)
            elif not grad:
                _run_sums(x + off, dy, y, False, False, m, ref, blk)
            elif masked:
                _run_sums(x + off, dy + off, y + off, True, True, m, ref, blk)
            else:
                _run_sums(x + off, dy + off, y + off, True, False, m, ref, blk)
            since += m
            if since >= BLOCK:
                r.s1 += blk[0]
                r.s2 += blk[1]
                blk[0] = 0.0
                blk[1] = 0.0
                since = 0
            b += m
    r.s1 += blk[0]
    r.s2 += blk[1]
    return r


# ----------------------------------------------------- interleaved rows
# One row of `m` channels (the loops run along the channels; per-channel arrays
# come from L1).  float16 rows go through float blocks in the portable build; the AVX2
# build converts them in registers (its sums eight rows per step on Intel, _h8, else in
# register tiles).

cdef inline bint _h8(bint near, Py_ssize_t ld) noexcept nogil:
    """Whether float16 interleaved sums over rows of ld values go eight rows per step
    (cbn_rows_sums8_f16, cbn_rows_gsums8_f16; near: as in _rows_sums)."""
    return _hrows8 and (not near or ld >= HROWS8_WIDE)


cdef inline void _rows_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                            bint masked, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                            const double* ref, double* s1, double* s2,
                            bint tiles, bint near, bint fits, bint cached=False) noexcept nogil:
    """s1[c], s2[c] += the two sums over n rows (ld values apart) of m channels:
    statistics about ref (grad False) or backward sums about the mean ref (the C
    primitives of _kernels_c.h).  tiles: the reduction is small enough for the
    register tiles (TILED_MAX); near: the thread's rows are at most ROWS8_NEAR bytes;
    fits: each array holds at most GSUMS8_MAX values; cached: the arrays summed total at
    most _tiled_to bytes (they lie in the last-level cache)."""
    cdef Py_ssize_t wide = ROWS8_WIDE512 if _sums512 else _rows8_wide, pf
    cdef bint eight = (_rows8 and (not near or ld >= wide)
                       and (_rows8_max == 0 or ld < _rows8_max))
    if data_t is float:
        if _sums_reg and m == 64 and (grad or not near):
            if grad:
                cbn_rows64_gsums_f32_512(x, dy, y if masked else NULL, ld, n, ref, s1, s2)
            else:
                cbn_rows64_sums_f32_512(x, ld, n, ref, s1, s2)
            return
        if _t16 and tiles and m >= 16 and not grad:     # rows per walk: see _t16
            cbn_rows_sums16_f32(x, ld, n, m, ref, s1, s2, n if near and ld < ROWS8_WIDE else 8)
            return
        if grad:        # Zen 5: near, masked and any size too; else arrays that fit
            eight = (_rows8 and _rows8_grads) or (fits and eight and not masked)
        if eight:
            # the prefetch only from memory: rows of 1024 and 2048 channels in L3 took
            # 1.1-1.7x the time with it (_pf_l3)
            pf = 0 if near or (cached and not _pf_l3) else PF_ROWS_BYTES
            if grad and _sums512:
                cbn_rows_gsums8_f32_512(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2, pf)
            elif grad:
                cbn_rows_gsums8_f32(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2, pf)
            elif _sums512:
                cbn_rows_sums8_f32_512(x, ld, n, m, ref, s1, s2, pf)
            else:
                cbn_rows_sums8_f32(x, ld, n, m, ref, s1, s2, pf)
            return
        if grad:
            # float32 partials, in cache and from memory, both builds.  Against the
            # float64 loops they replaced (the AVX2 register tiles in cache and for
            # rows of 1024 channels or more, else the one-row loop with its prefetch),
            # in one process (11 rounds), 2-core AMD EPYC Zen 4 VM, float32 backward,
            # new / old, 1 / 2 threads: 256x1024 0.76 / 0.78, 512x512 0.85 / 0.86,
            # 128x2048 0.97 / 0.89, 1x14x14x256 NHWC 0.98 / 0.93, 1x56x56x64 0.95 / 1.00,
            # from memory 32x56x56x128 0.88 / 0.85 and 8x64x112x112 0.79 / 0.92 (NHWC),
            # 4x16x28x28x32 NDHWC (the eight-row loop) 0.99 / 1.02.  Prefetching each
            # row as the one-row loop did made an earlier form of it slower from memory
            # (those two NHWC cells 1.10-1.40x its time without).
            cbn_rows_gsums32_f32(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2)
            return
        tiles = tiles or ld >= WIDE_TILES or _tiles_mem
        if tiles:
            cbn_rows_sums_tiled_f32(x, ld, n, m, ref, s1, s2)
        else:
            cbn_rows_sums_f32(x, ld, n, m, ref, s1, s2, PF_ROWS_BYTES)   # from memory
    elif data_t is double:
        if _sums_reg and m == 64:
            if grad:
                cbn_rows64_gsums_f64_512(x, dy, y if masked else NULL, ld, n, ref, s1, s2)
            else:
                cbn_rows64_sums_f64_512(x, ld, n, ref, s1, s2)
            return
        if grad:
            cbn_rows_gsums_f64(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2, 0)
        else:
            cbn_rows_sums_f64(x, ld, n, m, ref, s1, s2, 0 if tiles else PF_ROWS_BYTES)
    else:
        # float16: eight rows per step on Intel (_h8); else float32 tile groups, from
        # memory walks of a few rows at a time
        if _h8(near, ld):
            if grad:
                cbn_rows_gsums8_f16(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2,
                                    0 if near else PF_ROWS_BYTES)
            else:
                cbn_rows_sums8_f16(x, ld, n, m, ref, s1, s2, 0 if near else PF_ROWS_BYTES)
        elif tiles and _h512:
            cbn_tiles32_f16_512(x, dy if grad else NULL, y if grad and masked else NULL, ld,
                                n, m, ref, s1, s2, grad)
        elif grad:
            cbn_rows_gsums_tiled_f16(x, dy, y if masked else NULL, ld, n, m, ref, s1, s2,
                                     not tiles)
        else:
            cbn_rows_sums_tiled_f16(x, ld, n, m, ref, s1, s2, not tiles)


cdef inline bint _period(Py_ssize_t ld, Py_ssize_t m, Py_ssize_t most) noexcept nogil:
    """Whether the float32 output pass over rows of m values, ld apart, goes as one run
    with its tables in AVX-512F registers (cbn_period_affine_f32_512: rows of 64 to
    PERIOD_AFFINE values, cbn_period64_dx_f32_512: PERIOD_DX, 64): contiguous rows of a
    multiple of 16 values."""
    return ld == m and 64 <= m <= most and m % 16 == 0


cdef inline void _rows_affine(const data_t* x, data_t* out, Py_ssize_t ld, Py_ssize_t n,
                              Py_ssize_t m, const real_t* p, Py_ssize_t C, bint relu,
                              int store) noexcept nogil:
    """out[c] = (x[c] - hi[c]) * scale[c] + shift[c] over n rows of m channels, ld values
    apart (p: the parameter table, rows of length C, from the rows' first channel)."""
    cdef const real_t* hi = p + P_HI * C
    cdef const real_t* s = p + P_SCALE * C
    cdef const real_t* t = p + P_SHIFT * C
    if data_t is cbn_half and real_t is float:
        if _h512 and store != STORE_STREAM:
            cbn_rows_affine_f16_512(x, out, ld, n, m, hi, s, t, relu)
        else:
            cbn_rows_affine_f16(x, out, ld, n, m, hi, s, t, relu,
                                _hstream(store == STORE_STREAM, True))
    elif data_t is float and real_t is float:
        if store == STORE_STREAM:
            cbn_rows_affine_nt_f32(x, out, ld, n, m, hi, s, t, relu)
        elif store == STORE_TILED and _r512 and _period(ld, m, PERIOD_AFFINE):
            cbn_period_affine_f32_512(x, out, n, m, hi, s, t, relu)
        elif store == STORE_TILED and _r512 and not cbn_rows_tile(ld, sizeof(float)):
            cbn_rows_affine_f32_512(x, out, ld, n, m, hi, s, t, relu)
        elif store == STORE_TILED:
            cbn_rows_affine_tiled_f32(x, out, ld, n, m, hi, s, t, relu)
        else:
            cbn_rows_affine_f32(x, out, ld, n, m, hi, s, t, relu)
    elif data_t is double and real_t is double:
        if store == STORE_STREAM:
            cbn_rows_affine_nt_f64(x, out, ld, n, m, hi, s, t, relu)
        elif store == STORE_TILED:
            cbn_rows_affine_tiled_f64(x, out, ld, n, m, hi, s, t, relu)
        else:
            cbn_rows_affine_f64(x, out, ld, n, m, hi, s, t, relu)
    else:
        _unreachable()


cdef inline void _rows_dx(const data_t* x, const data_t* dy, const data_t* y, bint masked,
                          data_t* dx, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                          const real_t* p, Py_ssize_t C, int store) noexcept nogil:
    """dx[c] = (x[c] - hi[c]) * scale[c] + g * gain[c] + shift[c] over n rows of m
    channels, ld values apart."""
    cdef const real_t* hi = p + P_HI * C
    cdef const real_t* s = p + P_SCALE * C
    cdef const real_t* t = p + P_SHIFT * C
    cdef const real_t* k = p + P_GAIN * C
    if data_t is cbn_half and real_t is float:
        if _h512 and store != STORE_STREAM:
            cbn_rows_dx_f16_512(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        else:
            cbn_rows_dx_f16(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k,
                            _hstream(store == STORE_STREAM, True))
    elif data_t is float and real_t is float:
        if store == STORE_STREAM:
            cbn_rows_dx_nt_f32(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        elif store == STORE_TILED and _r512 and _period(ld, m, PERIOD_DX):
            cbn_period64_dx_f32_512(x, dy, y if masked else NULL, dx, n, hi, s, t, k)
        elif store == STORE_TILED and _r512 and not cbn_rows_tile(ld, sizeof(float)):
            cbn_rows_dx_f32_512(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        elif store == STORE_TILED:
            cbn_rows_dx_tiled_f32(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        else:
            cbn_rows_dx_f32(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
    elif data_t is double and real_t is double:
        if store == STORE_STREAM:
            cbn_rows_dx_nt_f64(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        elif store == STORE_TILED:
            cbn_rows_dx_tiled_f64(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
        else:
            cbn_rows_dx_f64(x, dy, y if masked else NULL, dx, ld, n, m, hi, s, t, k)
    else:
        _unreachable()


cdef inline int _store(Py_ssize_t nvalues, size_t itemsize, int narrays, int T,
                       Py_ssize_t inner, bint fresh) noexcept nogil:
    """How an output pass over narrays arrays of nvalues items (reads and output) on T
    threads stores: streaming once they total _stream_from bytes (planar: if its runs
    of inner values span STREAM_RUN bytes or more) unless the output is fresh (just
    allocated) and FRESH_PAGES bytes or more; planar runs of STREAM_RUN bytes or more
    prefetching their input (STORE_PF) on T > 1 threads when the arrays total OPF_FROM
    to OPF_TO bytes per thread; register-tiled while one array is at most TILED_OUT
    bytes per thread or the arrays total at most _tiled_to bytes (interleaved rows);
    else plainly."""
    cdef Py_ssize_t nbytes = nvalues * <Py_ssize_t>itemsize
    cdef bint runs = inner == 1 or inner * <Py_ssize_t>itemsize >= STREAM_RUN
    if nbytes * narrays >= _stream_from and runs and not (fresh and nbytes >= FRESH_PAGES):
        return STORE_STREAM
    if (_opf_on and T > 1 and inner > 1 and runs
            and OPF_FROM * T <= nbytes * narrays <= OPF_TO * T):
        return STORE_PF
    if nbytes <= TILED_OUT * T or nbytes * narrays <= _tiled_to:
        return STORE_TILED
    return STORE_PLAIN


cdef inline bint _pf_runs(Py_ssize_t nvalues, size_t itemsize, int narrays, int nsums,
                          Py_ssize_t inner) noexcept nogil:
    """Whether the planar sums of a call over narrays arrays of nvalues items (nsums of
    them summed) prefetch the next run block by block (_plane_sums): when the arrays
    total at least _pf_from bytes (from memory) and the runs are PF_RUN values or more,
    their next runs together under PF_NEXT bytes (beyond, the hardware prefetchers keep
    up and the prefetches only cost).  Sums that prefetch as a stream (_pf_stream) do
    whatever their runs' length, and the statistics and training sums (one array summed)
    whatever the arrays' size too where _pf_stream_small."""
    if _pf_stream and _pf_stream_small and nsums == 1 and _pf_from < _NEVER:
        return inner >= PF_RUN
    return (nvalues * <Py_ssize_t>itemsize * narrays >= _pf_from
            and inner >= PF_RUN
            and (_pf_stream or inner * <Py_ssize_t>itemsize * nsums < PF_NEXT))


# Tasks: each parallel loop below runs one of these per index, on an OpenMP team
# when T > 1 and on the calling thread otherwise (an OpenMP region costs
# microseconds even for one thread).

cdef inline void _flush(double* total, double* block, Py_ssize_t m) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(m):
        total[c] += block[c]
        block[c] = 0.0


cdef inline void _task_reduce(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                              bint masked, Py_ssize_t rows, Py_ssize_t C, const double* ref,
                              double* scratch, Py_ssize_t t, Py_ssize_t T) noexcept nogil:
    """Thread slot t of an interleaved reduction: rows [rows*t/T, rows*(t+1)/T) into
    its own padded partials (SLOT rows of cpad: totals, mid-block and block sums).

    Wide rows are split into tiles of CTILE channels so that a tile's block sums
    stay in L1 while its rows stream past.  A tile's block (ROW_BLOCK rows) is added
    into the mid-block, the mid-block into the totals every ROW_BLOCK blocks, so that
    rounding grows like 2 * ROW_BLOCK + rows / ROW_BLOCK**2, not rows / ROW_BLOCK
    (with at most ROW_BLOCK blocks, the totals are the mid-block)."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef double* part = scratch + t * SLOT * cpad
    cdef double* m1 = part + 2 * cpad
    cdef double* m2 = part + 3 * cpad
    cdef double* b1 = part + 4 * cpad
    cdef double* b2 = part + 5 * cpad
    cdef Py_ssize_t r, c, c0, w, n, k, off, r0 = rows * t // T, r1 = rows * (t + 1) // T
    cdef bint tiles = rows * C * (2 if grad else 1) <= TILED_MAX
    cdef bint near = (r1 - r0) * C * <Py_ssize_t>sizeof(data_t) <= ROWS8_NEAR
    cdef bint fits = rows * C <= GSUMS8_MAX
    cdef bint cached = rows * C * <Py_ssize_t>sizeof(data_t) * (1 + grad + masked) <= _tiled_to
    # one block: its sums are the totals.  The float16 eight-row loops take all the rows
    # at once: they keep their own float32 partials and add them into float64 every 32
    # rows (called per block of ROW_BLOCK rows, the calls' setup and flushes made them
    # 1.08-1.12x slower in a C loop, 2 threads, 25.7 MB of rows of 64-1024 channels)
    cdef bint short = r1 - r0 <= ROW_BLOCK or (data_t is cbn_half and _h8(near, C))
    # more than ROW_BLOCK blocks go through the mid-block; fewer go into the totals
    # directly (the same sums as through a mid-block, 0 + m being m)
    cdef bint mid = r1 - r0 > ROW_BLOCK * ROW_BLOCK
    if not mid:
        m1 = part
        m2 = part + cpad
    for c in range(2 * cpad):                  # totals
        part[c] = 0.0
    if not short:                              # the mid-block when used, block sums
        for c in range((2 if mid else 4) * cpad, 6 * cpad):
            part[c] = 0.0
    c0 = 0
    while c0 < C:
        w = C - c0 if C - c0 < CTILE else CTILE
        if short:
            off = r0 * C + c0
            _rows_sums(x + off, dy + off, y + off, grad, masked, C, r1 - r0, w, ref + c0,
                       part + c0, part + cpad + c0, tiles, near, fits, cached)
            c0 += w
            continue
        r = r0
        k = 0
        while r < r1:
            n = r1 - r if r1 - r < ROW_BLOCK else ROW_BLOCK
            off = r * C + c0
            _rows_sums(x + off, dy + off, y + off, grad, masked, C, n, w, ref + c0, b1 + c0,
                       b2 + c0, tiles, near, fits, cached)
            _flush(m1 + c0, b1 + c0, w)
            _flush(m2 + c0, b2 + c0, w)
            r += n
            k += 1
            if mid and (k == ROW_BLOCK or r >= r1):
                _flush(part + c0, m1 + c0, w)
                _flush(part + cpad + c0, m2 + c0, w)
                k = 0
        c0 += w


cdef inline Py_ssize_t _fold(Py_ssize_t C, Py_ssize_t rows) noexcept nogil:
    """Interleaved rows per step: R rows of C < WIDE channels are handled as one row of
    R * C channels, with every per-channel array repeated R times, so that the per-row
    loop overhead is paid once per WIDE values or more instead of once per C.  Not
    for fewer than 8 * WIDE values, where repeating the arrays costs more."""
    return 1 if C >= WIDE or rows * C < 8 * WIDE else (WIDE + C - 1) // C


cdef inline Py_ssize_t _whole(Py_ssize_t R, Py_ssize_t rb, Py_ssize_t vec) noexcept nogil:
    """R folded rows of rb bytes rounded up to the fewest rows that make whole vectors of
    vec bytes (R, 1 or less: R; a row of more than FOLD_BYTES: R).

    Folded rows of other widths end inside a vector.  The float32 and float64 tiled
    passes then take no rotated windows (unaligned stores and tile loads throughout) and
    convert each row's last values one by one, the float16 passes add a vector that
    overlaps the row's last (CBN_HTAIL_FOR), and the sums add each row's last values
    apart.  Measured in one process (2-core AMD EPYC VM, Zen 5), channels-last, whole /
    _fold's rows (output passes and sums), 1 and 2 threads: float32 1x3x224x224
    inference 0.78 and 0.76, training 0.67 and 0.71, backward 0.71 and 0.78, statistics
    0.63 and 0.68; 1x3x730x730 (6.4 MB) inference 0.74 and 0.70, training 0.63 and
    0.65, backward 0.66 and 0.65; 1x6x224x224 training 0.75 and 0.78; float64
    1x3x224x224 training 0.96 and 0.93; float16 1x3x224x224 inference 0.48 and 0.59,
    training 0.47 and 0.72, backward 0.49 and 0.60.  14 MB (1x3x1080x1080, plain
    stores): float32 inference 0.92, training and backward 0.92-1.03 (output passes
    alone).  Rounded to the tiles' width (128 bytes) instead: 0.88-1.06 of these."""
    cdef Py_ssize_t g = vec, a = rb, k
    while a:            # g = gcd(rb, vec)
        g, a = a, g % a
    k = vec // g        # any multiple of k rows is whole vectors
    if R <= 1 or (R + k - 1) // k * k * rb > FOLD_BYTES:
        return R
    return (R + k - 1) // k * k


cdef inline Py_ssize_t _fold_rows(Py_ssize_t C, Py_ssize_t rows, Py_ssize_t size) noexcept nogil:
    """The most interleaved rows per step of an output pass (_out_fold) over rows of C
    values of size bytes."""
    return _whole(_fold(C, rows), C * size, FOLD_VEC)


cdef inline Py_ssize_t _out_fold(Py_ssize_t C, Py_ssize_t rows, Py_ssize_t size,
                                 int store) noexcept nogil:
    """Interleaved rows per step of an output pass (size: bytes per value, store: its
    _store): as _fold, rounded up to rows of whole vectors (_whole), but float32 and
    float64 rows stored through the register tiles (STORE_TILED) whose bytes divide a
    tile's width (CBN_TILE_BYTES) go as rows of exactly that width (_tile_rows),
    wherever _fold folds: never more values per step than _fold_rows, so the repeated
    table fits _apply_scratch."""
    cdef Py_ssize_t R = _fold(C, rows), rb = C * size
    if (R > 1 and _tile_rows and store == STORE_TILED and size >= 4
            and rb <= CBN_TILE_BYTES and CBN_TILE_BYTES % rb == 0):
        return CBN_TILE_BYTES // rb
    return _fold_rows(C, rows, size)


cdef inline Py_ssize_t _sums_fold(Py_ssize_t C, Py_ssize_t rows, Py_ssize_t size,
                                  bint grad) noexcept nogil:
    """Interleaved rows per step of a reduction (_rows_reduce): as _fold, but over more
    than TILED_MAX values (from memory) the statistics, and float16 backward sums (size:
    bytes per value), take rows of fewer than SUMS_WIDE bytes R at a time, at least
    SUMS_WIDE bytes.  Measured, 2-core Intel Xeon VM, 2 threads, arrays of 25.7 MB read
    from memory (evicted before each call), x 16, 64, 128 and 192 bytes into a 4 KB page:
    rows of 256 bytes summed eight per step ran 1.3-1.5x slower at 64 and 128 than at 16
    and 192 (float16 128 channels; float32 64 channels 1.2-1.4x), rows of 512 bytes
    alike at all four; new / old, float16 statistics 0.76-0.82 (32, 64, 128 channels),
    training 0.80-0.88, backward 0.98-1.02; float32 statistics 0.80-0.87 (32, 64),
    training 0.96-0.99, but backward 1.09 at 32 channels (not folded so)."""
    cdef Py_ssize_t R = (_fold(C, rows)
                         if rows * C <= TILED_MAX or C * size >= SUMS_WIDE or (grad and size != 2)
                         else (SUMS_WIDE // size + C - 1) // C)
    return _whole(R, C * size, 8 * size)     # rows of whole vectors of 8 values


cdef inline void _repeat(const real_t* a, Py_ssize_t C, Py_ssize_t W, real_t* aw) noexcept nogil:
    """aw[0:W] = a[0:C] repeated W / C times."""
    cdef Py_ssize_t r, c
    for r in range(W // C):
        for c in range(C):
            aw[r * C + c] = a[c]


cdef void _rows_reduce(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                       bint masked, Py_ssize_t rows, Py_ssize_t C, const double* ref,
                       double* s1, double* s2, double* scratch, int T) noexcept nogil:
    """Interleaved reduction over all rows: statistics (grad False: sums of d, d*d about
    ref) or backward sums (g, g*(x - ref)).  Rows are taken R at a time (_sums_fold); the
    last rows % R rows are summed on their own.  Per-thread partials are merged in slot
    order, so the result depends only on T.  scratch: _partials(1, C, T) - C doubles."""
    cdef Py_ssize_t R = _sums_fold(C, rows, sizeof(data_t), grad)
    cdef Py_ssize_t W = R * C, full = rows // R
    cdef Py_ssize_t wpad = (W + PAD - 1) // PAD * PAD
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef double* refw = scratch
    cdef double* rem = scratch + wpad
    cdef double* part = rem + SLOT * cpad
    cdef Py_ssize_t t, c, j, off = full * W
    cdef int Te = T if full >= 2 * T else 1
    _repeat(ref, C, W, refw)
    if Te > 1:
        for t in prange(Te, num_threads=Te, schedule='static', chunksize=1):
            _task_reduce(x, dy, y, grad, masked, full, W, refw, part, t, Te)
    else:
        _task_reduce(x, dy, y, grad, masked, full, W, refw, part, 0, 1)
    if rows > full * R:
        _task_reduce(x + off, dy + off, y + off, grad, masked, rows - full * R, C, ref, rem,
                     0, 1)
        for c in range(C):
            s1[c] = rem[c]
            s2[c] = rem[cpad + c]
    else:
        for c in range(C):
            s1[c] = 0.0
            s2[c] = 0.0
    for t in range(Te):
        for j in range(R):
            for c in range(C):
                s1[c] += part[t * SLOT * wpad + j * C + c]
                s2[c] += part[t * SLOT * wpad + wpad + j * C + c]


cdef inline Py_ssize_t _blocks(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, int T,
                               Py_ssize_t* nq, Py_ssize_t* unit) noexcept nogil:
    """How many equal blocks, one per thread, an output pass (or _split_sums) cuts its
    work into: of TASK values or more, at most T.  The work is nq items of unit
    granularity: interleaved, outer rows (unit 1); planar, all outer * C * inner values
    in memory order (unit CUT_UNIT, so that blocks start on their own cache lines), which
    balances the threads whatever the number of channels and planes."""
    cdef Py_ssize_t nb = outer * C * inner // TASK
    if inner > 1:
        nq[0], unit[0] = outer * C * inner, CUT_UNIT
    else:
        nq[0], unit[0] = outer, 1
    return 1 if nb < 1 or T < 2 else min(nb, nq[0], T)


cdef inline Py_ssize_t _cut(Py_ssize_t n, Py_ssize_t k, Py_ssize_t nb,
                            Py_ssize_t unit) noexcept nogil:
    """Start of block k of nb equal blocks of n items (n for k == nb), rounded down to
    a multiple of unit."""
    return n if k >= nb else n * k // nb // unit * unit


cdef inline Py_ssize_t _piece_end(Py_ssize_t v, Py_ssize_t v1,
                                  Py_ssize_t inner) noexcept nogil:
    """Where the piece of planar values from v ends: the end of v's run of inner values,
    or v1 if sooner.  (The run's channel is v // inner % C.)  A walk over [v0, v1) takes
    its first piece's end and channel from these divisions and steps on from there (the
    next piece is the next run, of the next channel): on short runs, two divisions per
    run took as long as the run itself (1x2048x7x7, runs of 49 values)."""
    cdef Py_ssize_t e = (v // inner + 1) * inner
    return e if e < v1 else v1


cdef inline Py_ssize_t _next_end(Py_ssize_t e, Py_ssize_t v1, Py_ssize_t inner) noexcept nogil:
    """The end of the piece after the one ending at e (a run boundary): e + inner, or v1."""
    return e + inner if e + inner < v1 else v1


cdef inline void _task_apply(const data_t* x, data_t* out, Py_ssize_t C, Py_ssize_t inner,
                             const real_t* p, bint relu, Py_ssize_t q0, Py_ssize_t q1,
                             int store, bint back=False) noexcept nogil:
    """Rows [q0, q1) (interleaved) or values [q0, q1) in memory order (planar: runs of
    inner values, channel by channel) of the output.  back: interleaved rows not
    streamed go in blocks of BACK_BYTES from the last (_back)."""
    cdef Py_ssize_t q, e, c, k
    cdef bint fuse
    cdef Py_ssize_t b = BACK_BYTES // (C * <Py_ssize_t>sizeof(data_t)) + 1
    if inner == 1 and _reversed(back, store, (q1 - q0) * C, sizeof(data_t)):
        while q1 > q0:
            q = q1 - b if q1 - b > q0 else q0
            _rows_affine(x + q * C, out + q * C, C, q1 - q, C, p, C, relu, store)
            q1 = q
    elif inner == 1:
        _rows_affine(x + q0 * C, out + q0 * C, C, q1 - q0, C, p, C, relu, store)
    else:
        e = _piece_end(q0, q1, inner)
        c = q0 // inner % C
        fuse = _runs_fuse(x, inner, store)
        while q0 < q1:
            if fuse and e - q0 == inner:    # whole runs up to the last channel: one call
                k = min((q1 - q0) // inner, C - c)
                _runs_affine(x + q0, out + q0, inner, k, p + c, C, relu)
                q0 += k * inner
                e = _next_end(q0, q1, inner)
                c = c + k if c + k < C else 0
                continue
            _run_affine(x + q0, out + q0, e - q0, p[P_HI * C + c], p[P_SCALE * C + c],
                        p[P_SHIFT * C + c], relu, store == STORE_STREAM, store == STORE_PF,
                        True)
            q0 = e
            e = _next_end(e, q1, inner)
            c = c + 1 if c + 1 < C else 0
    if store == STORE_STREAM:
        cbn_stream_fence()


cdef void _apply(const data_t* x, data_t* out, Py_ssize_t outer, Py_ssize_t C,
                 Py_ssize_t inner, const real_t* p, real_t* pw, bint relu, int T,
                 bint fresh, bint back=False) noexcept nogil:
    """out = (x - hi) * scale + shift per channel (then max(., 0) with relu).

    Narrow interleaved rows go R at a time (_out_fold) with the table repeated into pw
    (N_PARAMS * R * C values); the last outer % R rows use p."""
    cdef int store = _store(outer * C * inner, sizeof(data_t), 2, T, inner, fresh)
    cdef Py_ssize_t k, R = _out_fold(C, outer, sizeof(data_t), store) if inner == 1 else 1
    cdef Py_ssize_t full = outer // R
    if R == 1 or full == 0:
        _apply_blocks(x, out, outer, C, inner, p, relu, store, T, back)
        return
    for k in range(N_PARAMS):
        _repeat(p + k * C, C, R * C, pw + k * R * C)
    _apply_blocks(x, out, full, R * C, 1, pw, relu, store, T, back)
    _task_apply(x + full * R * C, out + full * R * C, C, 1, p, relu, 0, outer - full * R,
                store)


cdef void _apply_blocks(const data_t* x, data_t* out, Py_ssize_t outer, Py_ssize_t C,
                        Py_ssize_t inner, const real_t* p, bint relu, int store,
                        int T, bint back) noexcept nogil:
    """_apply without folding, in _blocks (rows, or planar values in memory order)."""
    cdef Py_ssize_t k, nq, unit
    cdef Py_ssize_t nb = _blocks(outer, C, inner, T, &nq, &unit)
    if nb > 1:
        for k in prange(nb, num_threads=T, schedule='static'):
            _task_apply(x, out, C, inner, p, relu, _cut(nq, k, nb, unit),
                        _cut(nq, k + 1, nb, unit), store, back)
    else:
        _task_apply(x, out, C, inner, p, relu, 0, nq, store, back)


cdef inline Sums _channel_sums(const data_t* x, const data_t* dy, const data_t* y,
                               bint grad, bint masked, Py_ssize_t outer, Py_ssize_t C,
                               Py_ssize_t inner, double ref, bint pf) noexcept nogil:
    """_plane_sums over the runs of the planar channel at x (dy, y), for the per-channel
    tasks.  A single sample's plane of at most BLOCK values is one run, summed directly:
    on 7x7 planes _plane_sums' loops over runs and blocks cost about as much as the
    sums (measured, separate builds, arrays at a fixed alignment, one thread:
    statistics 1x2048x7x7 0.83, 1x512x7x7 0.85, 1x256x14x14 0.93; training 0.88-0.94;
    backward 0.90-0.95; two samples and 28x28 planes 0.97-1.01).  (Inside _plane_sums,
    which its many inlined copies repeat, the same check cost 13 KB of the wheel.)"""
    cdef double acc[2]
    cdef Sums r
    if outer == 1 and inner <= BLOCK:
        acc[0] = 0.0
        acc[1] = 0.0
        _run_sums(x, dy, y, grad, masked, inner, ref, acc)
        r.s1 = acc[0]
        r.s2 = acc[1]
        return r
    return _plane_sums(x, dy, y, grad, masked, outer, C * inner, inner, ref, pf)


cdef inline void _task_stats(const data_t* x, Py_ssize_t outer, Py_ssize_t C,
                             Py_ssize_t inner, double* mean, double* var,
                             Py_ssize_t c, bint pf) noexcept nogil:
    """Planar statistics of channel c."""
    cdef double ref = _ldd(x + c * inner, 0)
    cdef Sums r = _channel_sums(x + c * inner, x, x, False, False, outer, C, inner, ref, pf)
    _finish_stats(r.s1, r.s2, ref, <double>outer * <double>inner, &mean[c], &var[c])


cdef inline Py_ssize_t _plane(Py_ssize_t o, Py_ssize_t outer) noexcept nogil:
    """The plane a channel's second pass writes at step o: from its last plane back
    (_back), else in order."""
    return outer - 1 - o if _back else o


cdef inline void _task_train(const data_t* x, data_t* out, Py_ssize_t outer, Py_ssize_t C,
                             Py_ssize_t inner, const double* w, const double* b, double eps,
                             bint relu, double* mean, double* var, real_t* p,
                             Py_ssize_t c0, Py_ssize_t c1, bint stream, bint pf,
                             bint pipe) noexcept nogil:
    """Planar training of channels [c0, c1): each channel's statistics, then the
    normalization of the same slab while it is still in cache, from its last plane
    (_plane).  pipe (_pipe_to): the next channel's statistics run before this
    channel's normalization, so that its parameters (a reduction, divisions and a
    square root) are computed while they do."""
    cdef Py_ssize_t o, off, c
    cdef real_t hi, s, t
    if c0 >= c1:
        return
    _task_stats(x, outer, C, inner, mean, var, c0, pf)
    for c in range(c0, c1):
        _set_params(p, C, c, mean[c], w[c] * _invstd(var[c], eps), b[c])
        if pipe and c + 1 < c1:
            _task_stats(x, outer, C, inner, mean, var, c + 1, pf)
        hi, s, t = p[P_HI * C + c], p[P_SCALE * C + c], p[P_SHIFT * C + c]
        for o in range(outer):
            off = (_plane(o, outer) * C + c) * inner
            _run_affine(x + off, out + off, inner, hi, s, t, relu, stream)
        if stream:
            cbn_stream_fence()
        if not pipe and c + 1 < c1:
            _task_stats(x, outer, C, inner, mean, var, c + 1, pf)


cdef inline void _chunk_stats(const data_t* x, Py_ssize_t rows, Py_ssize_t C,
                              Py_ssize_t c0, Py_ssize_t n, double* mean,
                              double* var) noexcept nogil:
    """mean[i], var[i]: the batch mean and biased variance of channel c0 + i, i < n <=
    PCHUNK, of interleaved rows, summed down all the rows about their first."""
    cdef double ref[PCHUNK]
    cdef Py_ssize_t i
    for i in range(n):
        ref[i] = _ldd(x, c0 + i)
        mean[i] = 0.0
        var[i] = 0.0
    _rows_sums(x + c0, x, x, False, False, C, rows, n, ref, mean, var, True, True, True)
    for i in range(n):      # a loop apart, on the chunk's own arrays: it vectorizes
        _finish_stats(mean[i], var[i], ref[i], <double>rows, &mean[i], &var[i])


cdef inline void _task_stats_cols(const data_t* x, Py_ssize_t rows, Py_ssize_t C,
                                  const Col* outs, Py_ssize_t c0,
                                  Py_ssize_t w) noexcept nogil:
    """Channels [c0, c0 + w) of interleaved statistics by columns (_by_cols), written
    to outs (mean, variance)."""
    cdef double m[PCHUNK]
    cdef double v[PCHUNK]
    cdef Py_ssize_t n = _chunk(C, c0, w)
    _chunk_stats(x, rows, C, c0, n, m, v)
    _col_put(outs[0], m, c0, n)
    _col_put(outs[1], v, c0, n)


cdef void _stats_cols(const data_t* x, Py_ssize_t rows, Py_ssize_t C, const Col* outs,
                      int T) noexcept nogil:
    """Statistics of few wide interleaved rows (_by_cols), by columns, as _train_cols."""
    cdef Py_ssize_t k, w, nk = _col_chunks(C, T, &w)
    if T > 1:
        for k in prange(nk, num_threads=T, schedule='static'):
            _task_stats_cols(x, rows, C, outs, k * w, w)
    else:
        for k in range(nk):
            _task_stats_cols(x, rows, C, outs, k * w, w)


cdef inline void _task_train_cols(const data_t* x, data_t* out, Py_ssize_t rows,
                                  Py_ssize_t C, const Col* cols, double eps, double momentum,
                                  bint relu, real_t* p, int store, Py_ssize_t c0,
                                  Py_ssize_t cw) noexcept nogil:
    """Channels [c0, c0 + cw) of interleaved training by columns (_by_cols): their
    sums down all the rows, statistics (and _update_chunk's outputs, cols[2:6]),
    parameters from the weight and bias in cols[0:2], then their output."""
    cdef double m[PCHUNK]
    cdef double v[PCHUNK]
    cdef double w[PCHUNK]
    cdef double b[PCHUNK]
    cdef Py_ssize_t i, n = _chunk(C, c0, cw)
    _chunk_stats(x, rows, C, c0, n, m, v)
    _update_chunk(cols + 2, m, v, eps, momentum, <double>rows, c0, n)
    _col_get(cols[0], w, c0, n)
    _col_get(cols[1], b, c0, n)
    _scale_invstd(w, v, eps, n, real_t is float)
    for i in range(n):
        _set_params(p + c0, C, i, m[i], w[i], b[i])
    _rows_affine(x + c0, out + c0, C, rows, n, p + c0, C, relu, store)
    if store == STORE_STREAM:
        cbn_stream_fence()


cdef void _train_cols(const data_t* x, data_t* out, Py_ssize_t rows, Py_ssize_t C,
                      const Col* cols, double eps, double momentum, bint relu, real_t* p,
                      int T, bint fresh) noexcept nogil:
    """Training on few wide interleaved rows (_by_cols), by columns: each thread takes
    chunks of channels (_col_chunks) from their sums to their output, reading and writing
    their per-channel inputs and outputs (cols: weight, bias, then those of
    _update_chunk) itself; nothing is merged or shared between threads, and each
    channel's sums do not depend on T."""
    cdef Py_ssize_t k, w, nk = _col_chunks(C, T, &w)
    cdef int store = _store(rows * C, sizeof(data_t), 2, T, 1, fresh)
    if T > 1:
        for k in prange(nk, num_threads=T, schedule='static'):
            _task_train_cols(x, out, rows, C, cols, eps, momentum, relu, p, store,
                             k * w, w)
    else:
        for k in range(nk):
            _task_train_cols(x, out, rows, C, cols, eps, momentum, relu, p, store,
                             k * w, w)


cdef void _train(const data_t* x, data_t* out, Py_ssize_t outer, Py_ssize_t C,
                 Py_ssize_t inner, const double* w, const double* b, double eps, bint relu,
                 double* mean, double* var, real_t* p, real_t* pw, double* scratch,
                 int T, bint fresh) noexcept nogil:
    """Normalize with the batch statistics; OUT mean, var (biased), p (and pw: the
    repeated table of folded rows, _apply).

    Planar: per-channel tasks (_task_train, a range of channels per thread), or for
    channels of few values (_fused_from), short float32 and float16 runs (_two_phase),
    short runs in large arrays (_slabs) or few channels (_split) the statistics first,
    then a parallel pass.
    Interleaved: per-thread partial sums, then a parallel pass over the rows.
    """
    cdef Py_ssize_t c, k
    cdef bint pipe
    cdef bint stream = _store(outer * C * inner, sizeof(data_t), 2, T, inner,
                              fresh) == STORE_STREAM
    cdef bint pf = _pf_runs(outer * C * inner, sizeof(data_t), 2, 1, inner)
    if (inner > 1 and outer * inner >= _fused_from and not _two_phase_runs(x, inner)
            and not _slabs(outer, C, inner, sizeof(data_t)) and not _split(C, inner, T)):
        pipe = _pipe(outer * inner)
        if T > 1:
            for k in prange(T, num_threads=T, schedule='static'):
                _task_train(x, out, outer, C, inner, w, b, eps, relu, mean, var, p,
                            k * C // T, (k + 1) * C // T, stream, pf, pipe)
        else:
            _task_train(x, out, outer, C, inner, w, b, eps, relu, mean, var, p, 0, C, stream,
                        pf, pipe)
    else:
        _stats(x, outer, C, inner, mean, var, scratch, T)
        for c in range(C):
            _set_params(p, C, c, mean[c], w[c] * _invstd(var[c], eps), b[c])
        _apply(x, out, outer, C, inner, p, pw, relu, T, fresh, True)


cdef inline bint _two_phase_runs(const data_t* x, Py_ssize_t inner) noexcept nogil:
    """Whether planar training and backward of x (runs of inner values, inner > 1) go
    two-phase for their short runs (_two_phase: float32 and float16)."""
    if data_t is double:
        return False
    else:
        return inner * <Py_ssize_t>sizeof(data_t) < _two_phase


cdef inline bint _slabs(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                        size_t itemsize) noexcept nogil:
    """Planar sums sample by sample (_slab_sums: statistics, backward sums) instead of
    channel by channel: for runs shorter than STREAM_RUN bytes in arrays of SLAB_FROM
    bytes or more.  One channel's runs lie C * inner values apart, and walking them one
    channel at a time reads memory in short strided pieces the prefetchers do not
    follow (measured, float32 64x2048x7x7: training 2.5-3x the inference time)."""
    cdef Py_ssize_t b = <Py_ssize_t>itemsize
    return inner > 1 and inner * b < STREAM_RUN and outer * C * inner * b >= SLAB_FROM


cdef inline void _task_slab(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                            bint masked, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                            const double* ref, double* part, Py_ssize_t t,
                            Py_ssize_t T) noexcept nogil:
    """Thread slot t of _slab_sums: samples [outer*t/T, outer*(t+1)/T), each C
    contiguous runs of inner values, into part: totals (2 rows of cpad) and block sums
    (one pair per channel), the block sums added into the totals every BLOCK values
    per channel, as _plane_sums does."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef double* blk = part + 2 * cpad
    cdef Py_ssize_t o, c, off, since = 0, o0 = outer * t // T, o1 = outer * (t + 1) // T
    for c in range(4 * cpad):
        part[c] = 0.0
    for o in range(o0, o1):
        for c in range(C):
            off = (o * C + c) * inner
            _run_sums(x + off, dy + off, y + off, grad, masked, inner, ref[c], blk + 2 * c)
        since += inner
        if since >= BLOCK or o + 1 == o1:
            for c in range(C):
                part[c] += blk[2 * c]
                part[cpad + c] += blk[2 * c + 1]
                blk[2 * c] = 0.0
                blk[2 * c + 1] = 0.0
            since = 0


cdef inline void _merge_slots(const double* part, Py_ssize_t slot, Py_ssize_t cpad,
                              Py_ssize_t C, Py_ssize_t n, double* s1,
                              double* s2) noexcept nogil:
    """s1, s2 = the sums of n threads' partials, slot doubles apart (each: the first
    sums, then at cpad the second), added in slot order."""
    cdef Py_ssize_t c, t
    for c in range(C):
        s1[c] = 0.0
        s2[c] = 0.0
        for t in range(n):
            s1[c] += part[t * slot + c]
            s2[c] += part[t * slot + cpad + c]


cdef void _slab_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                     bint masked, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                     const double* ref, double* s1, double* s2, double* part,
                     int T) noexcept nogil:
    """Planar sums (see _slabs) about ref: statistics (grad False) or backward sums,
    each thread over whole samples into its own per-channel partials, merged in slot
    order (the result depends only on T).  part: 4 * T * cpad doubles."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef Py_ssize_t t
    cdef int Te = T if outer >= 2 * T else 1
    if Te > 1:
        for t in prange(Te, num_threads=Te, schedule='static', chunksize=1):
            _task_slab(x, dy, y, grad, masked, outer, C, inner, ref, part + t * 4 * cpad, t,
                       Te)
    else:
        _task_slab(x, dy, y, grad, masked, outer, C, inner, ref, part, 0, 1)
    _merge_slots(part, 4 * cpad, cpad, C, Te, s1, s2)


cdef inline bint _split(Py_ssize_t C, Py_ssize_t inner, int T) noexcept nogil:
    """Planar statistics, training and backward sums split the data among threads by
    values (_split_sums) instead of by channel when one channel per thread at a time
    would leave threads idle more than 1/9 of the time: few channels, not a multiple
    of T (one channel on two threads: no speedup; three: 1.5x at best)."""
    return _split_on and inner > 1 and T > 1 and (C + T - 1) // T * T * 8 > C * 9


cdef inline void _task_split(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                             bint masked, Py_ssize_t C, Py_ssize_t inner, const double* ref,
                             double* part, Py_ssize_t v0, Py_ssize_t v1) noexcept nogil:
    """Values [v0, v1) of a planar array in memory order (runs of inner values, channel
    by channel), each run's piece summed by _plane_sums into part: 2 rows of cpad."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef Py_ssize_t c, e
    cdef Sums r
    for c in range(2 * cpad):
        part[c] = 0.0
    e = _piece_end(v0, v1, inner)
    c = v0 // inner % C
    while v0 < v1:
        r = _plane_sums(x + v0, dy + v0, y + v0, grad, masked, 1, 0, e - v0, ref[c], False)
        part[c] += r.s1
        part[cpad + c] += r.s2
        v0 = e
        e = _next_end(e, v1, inner)
        c = c + 1 if c + 1 < C else 0


cdef void _split_sums(const data_t* x, const data_t* dy, const data_t* y, bint grad,
                      bint masked, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                      const double* ref, double* s1, double* s2, double* part,
                      int T) noexcept nogil:
    """Planar sums (see _split) about ref: statistics (grad False) or backward sums,
    each thread over the block of values its output pass will write (_blocks), into
    its own per-channel partials, merged in slot order (the result depends only on T).
    part: 2 * T * cpad doubles."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef Py_ssize_t k, nq, unit
    cdef Py_ssize_t nb = _blocks(outer, C, inner, T, &nq, &unit)
    if nb > 1:
        for k in prange(nb, num_threads=T, schedule='static'):
            _task_split(x, dy, y, grad, masked, C, inner, ref, part + k * 2 * cpad,
                        _cut(nq, k, nb, unit), _cut(nq, k + 1, nb, unit))
    else:
        _task_split(x, dy, y, grad, masked, C, inner, ref, part, 0, nq)
    _merge_slots(part, 2 * cpad, cpad, C, nb, s1, s2)


cdef void _slab_stats(const data_t* x, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                      double* mean, double* var, double* scratch, int T) noexcept nogil:
    """Planar statistics (see _slabs, _split).  scratch: _partials' planar part,
    (1 + 4 * T) * cpad doubles."""
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    cdef Py_ssize_t c
    for c in range(C):
        scratch[c] = _ldd(x, c * inner)
    if _slabs(outer, C, inner, sizeof(data_t)):
        _slab_sums(x, x, x, False, False, outer, C, inner, scratch, mean, var, scratch + cpad,
                   T)
    else:
        _split_sums(x, x, x, False, False, outer, C, inner, scratch, mean, var,
                    scratch + cpad, T)
    for c in range(C):
        _finish_stats(mean[c], var[c], scratch[c], <double>outer * <double>inner, &mean[c],
                      &var[c])


cdef void _stats(const data_t* x, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                 double* mean, double* var, double* scratch, int T) noexcept nogil:
    """OUT mean, var: per-channel mean and biased variance.  For interleaved data
    scratch holds C doubles of pivots, then the _rows_reduce partials."""
    cdef Py_ssize_t c
    cdef bint pf = _pf_runs(outer * C * inner, sizeof(data_t), 1, 1, inner)
    if _slabs(outer, C, inner, sizeof(data_t)) or _split(C, inner, T):
        _slab_stats(x, outer, C, inner, mean, var, scratch, T)
    elif inner > 1:
        if T > 1:
            for c in prange(C, num_threads=T, schedule='static'):
                _task_stats(x, outer, C, inner, mean, var, c, pf)
        else:
            for c in range(C):
                _task_stats(x, outer, C, inner, mean, var, c, pf)
    else:
        for c in range(C):
            scratch[c] = _ldd(x, c)
        _rows_reduce(x, x, x, False, False, outer, C, scratch, mean, var, scratch + C, T)
        for c in range(C):
            _finish_stats(mean[c], var[c], scratch[c], <double>outer, &mean[c], &var[c])


cdef inline void _task_grad_sums(const data_t* dy, const data_t* x, const data_t* y,
                                 bint masked, Py_ssize_t outer, Py_ssize_t C,
                                 Py_ssize_t inner, const double* mean, double* s1,
                                 double* s2, Py_ssize_t c, bint pf=False) noexcept nogil:
    """The backward's two sums of planar channel c into s1[c], s2[c] (pf: _plane_sums)."""
    cdef Py_ssize_t off = c * inner
    cdef Sums r = _channel_sums(x + off, dy + off, y + off, True, masked, outer, C, inner,
                                mean[c], pf)
    s1[c] = r.s1
    s2[c] = r.s2


cdef inline void _channel_dx(const data_t* dy, const data_t* x, const data_t* y,
                             bint masked, data_t* dx, Py_ssize_t outer, Py_ssize_t C,
                             Py_ssize_t inner, const real_t* p, Py_ssize_t c,
                             bint stream) noexcept nogil:
    """dx of planar channel c from its parameters in p, from its last plane (_plane)."""
    cdef Py_ssize_t o, off
    cdef real_t hi = p[P_HI * C + c], s = p[P_SCALE * C + c], t = p[P_SHIFT * C + c]
    cdef real_t k = p[P_GAIN * C + c]
    for o in range(outer):
        off = (_plane(o, outer) * C + c) * inner
        _run_dx(x + off, dy + off, y + off, masked, dx + off, inner, hi, s, t, k, stream)
    if stream:
        cbn_stream_fence()


cdef inline void _task_backward(const data_t* dy, const data_t* x, const data_t* y,
                                bint masked, data_t* dx, Py_ssize_t outer, Py_ssize_t C,
                                Py_ssize_t inner, const double* mean, const double* invstd,
                                const double* w, bint training, double* dweight,
                                double* dbias, real_t* p, Py_ssize_t c0, Py_ssize_t c1,
                                bint stream, bint pf, bint pipe) noexcept nogil:
    """Planar backward of channels [c0, c1): each channel's two sums, then dx over the
    same slabs (_channel_dx).  pipe (_pipe_to): the next channel's sums run before
    this channel's dx, so that its parameters (a reduction, then divisions) are
    computed while they do.  The sums go through dbias and dweight, as two-phase."""
    cdef Py_ssize_t c
    cdef double n = <double>outer * <double>inner
    if c0 >= c1:
        return
    _task_grad_sums(dy, x, y, masked, outer, C, inner, mean, dbias, dweight, c0, pf)
    for c in range(c0, c1):
        _set_grad_params(p, C, c, dbias[c], dweight[c], mean[c], invstd[c], w[c], n, training)
        dweight[c] *= invstd[c]
        if pipe and c + 1 < c1:
            _task_grad_sums(dy, x, y, masked, outer, C, inner, mean, dbias, dweight, c + 1,
                            pf)
        _channel_dx(dy, x, y, masked, dx, outer, C, inner, p, c, stream)
        if not pipe and c + 1 < c1:
            _task_grad_sums(dy, x, y, masked, outer, C, inner, mean, dbias, dweight, c + 1,
                            pf)


cdef inline void _task_dx(const data_t* dy, const data_t* x, const data_t* y, bint masked,
                          data_t* dx, Py_ssize_t C, Py_ssize_t inner, const real_t* p,
                          Py_ssize_t q0, Py_ssize_t q1, int store,
                          bint back=False) noexcept nogil:
    """Rows [q0, q1) (interleaved) or values [q0, q1) (planar) of dx, as _task_apply."""
    cdef Py_ssize_t q, off, e, c, k
    cdef bint fuse
    cdef Py_ssize_t b = BACK_BYTES // (C * <Py_ssize_t>sizeof(data_t)) + 1
    if inner == 1 and _reversed(back, store, (q1 - q0) * C, sizeof(data_t)):
        while q1 > q0:
            q = q1 - b if q1 - b > q0 else q0
            off = q * C
            _rows_dx(x + off, dy + off, y + off, masked, dx + off, C, q1 - q, C, p, C, store)
            q1 = q
    elif inner == 1:
        off = q0 * C
        _rows_dx(x + off, dy + off, y + off, masked, dx + off, C, q1 - q0, C, p, C, store)
    else:
        e = _piece_end(q0, q1, inner)
        c = q0 // inner % C
        fuse = _runs_fuse(x, inner, store)
        while q0 < q1:
            if fuse and e - q0 == inner:    # whole runs up to the last channel: one call
                k = min((q1 - q0) // inner, C - c)
                _runs_dx(x + q0, dy + q0, y + q0, masked, dx + q0, inner, k, p + c, C)
                q0 += k * inner
                e = _next_end(q0, q1, inner)
                c = c + k if c + k < C else 0
                continue
            _run_dx(x + q0, dy + q0, y + q0, masked, dx + q0, e - q0, p[P_HI * C + c],
                    p[P_SCALE * C + c], p[P_SHIFT * C + c], p[P_GAIN * C + c],
                    store == STORE_STREAM, True)
            q0 = e
            e = _next_end(e, q1, inner)
            c = c + 1 if c + 1 < C else 0
    if store == STORE_STREAM:
        cbn_stream_fence()


cdef void _dx_blocks(const data_t* dy, const data_t* x, const data_t* y, bint masked,
                     data_t* dx, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                     const real_t* p, int store, int T, bint back=False) noexcept nogil:
    """dx in _blocks (rows of C channels, or planar values in memory order); back as in
    _task_apply."""
    cdef Py_ssize_t k, nq, unit
    cdef Py_ssize_t nb = _blocks(outer, C, inner, T, &nq, &unit)
    if nb > 1:
        for k in prange(nb, num_threads=T, schedule='static'):
            _task_dx(dy, x, y, masked, dx, C, inner, p, _cut(nq, k, nb, unit),
                     _cut(nq, k + 1, nb, unit), store, back)
    else:
        _task_dx(dy, x, y, masked, dx, C, inner, p, 0, nq, store, back)


cdef inline void _task_backward_cols(const data_t* dy, const data_t* x, const data_t* y,
                                     bint masked, data_t* dx, Py_ssize_t rows, Py_ssize_t C,
                                     const Col* cols, bint training, real_t* p, int store,
                                     Py_ssize_t c0, Py_ssize_t cw) noexcept nogil:
    """Channels [c0, c0 + cw) of the interleaved backward pass by columns
    (_by_cols): their mean, invstd and weight read from cols[0:3], their sums down all
    the rows, parameters, dweight and dbias written to cols[3:5], then dx."""
    cdef double mn[PCHUNK]
    cdef double iv[PCHUNK]
    cdef double w[PCHUNK]
    cdef double sg[PCHUNK]
    cdef double sgd[PCHUNK]
    cdef Py_ssize_t i, n = _chunk(C, c0, cw)
    _col_get(cols[0], mn, c0, n)
    _col_get(cols[1], iv, c0, n)
    _col_get(cols[2], w, c0, n)
    for i in range(n):
        sg[i] = 0.0
        sgd[i] = 0.0
    _rows_sums(x + c0, dy + c0, y + c0, True, masked, C, rows, n, mn, sg, sgd, True, True,
               True)
    _grad_table(p + c0, C, n, mn, iv, w, <double>rows, training, sgd, sg)
    _col_put(cols[3], sgd, c0, n)
    _col_put(cols[4], sg, c0, n)
    _rows_dx(x + c0, dy + c0, y + c0, masked, dx + c0, C, rows, n, p + c0, C, store)
    if store == STORE_STREAM:
        cbn_stream_fence()


cdef void _backward_cols(const data_t* dy, const data_t* x, const data_t* y, bint masked,
                         data_t* dx, Py_ssize_t rows, Py_ssize_t C, const Col* cols,
                         bint training, real_t* p, int T, bint fresh) noexcept nogil:
    """The backward pass on few wide interleaved rows (_by_cols), by columns, as
    _train_cols; the per-channel inputs and outputs are read and written chunk by chunk
    by the thread that uses them (cols: mean, invstd, weight, dweight, dbias)."""
    cdef Py_ssize_t k, w, nk = _col_chunks(C, T, &w)
    cdef int store = _store(rows * C, sizeof(data_t), 4 if masked else 3, T, 1, fresh)
    if T > 1:
        for k in prange(nk, num_threads=T, schedule='static'):
            _task_backward_cols(dy, x, y, masked, dx, rows, C, cols, training, p, store,
                                k * w, w)
    else:
        for k in range(nk):
            _task_backward_cols(dy, x, y, masked, dx, rows, C, cols, training, p, store,
                                k * w, w)


cdef void _backward(const data_t* dy, const data_t* x, const data_t* y, bint masked,
                    data_t* dx, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                    const double* mean, const double* invstd, const double* w,
                    bint training, double* dweight, double* dbias, real_t* p,
                    real_t* pw, double* scratch, int T, bint fresh) noexcept nogil:
    """OUT dx, dweight, dbias (see _set_grad_params); pw: the repeated table of folded
    rows (_apply)."""
    cdef Py_ssize_t c, R, full, off, k
    cdef bint pipe
    cdef int store = _store(outer * C * inner, sizeof(data_t), 4 if masked else 3, T, inner,
                            fresh)
    cdef bint stream = store == STORE_STREAM
    cdef bint pf = _pf_runs(outer * C * inner, sizeof(data_t), 4 if masked else 3,
                            3 if masked else 2, inner)
    if (_slabs(outer, C, inner, sizeof(data_t)) or _split(C, inner, T)
            or (inner > 1 and _two_phase_runs(x, inner))):
        if _slabs(outer, C, inner, sizeof(data_t)):
            _slab_sums(x, dy, y, True, masked, outer, C, inner, mean, dbias, dweight, scratch,
                       T)
        elif _split(C, inner, T):
            _split_sums(x, dy, y, True, masked, outer, C, inner, mean, dbias, dweight,
                        scratch, T)
        elif T > 1:
            for c in prange(C, num_threads=T, schedule='static'):
                _task_grad_sums(dy, x, y, masked, outer, C, inner, mean, dbias, dweight, c)
        else:
            for c in range(C):
                _task_grad_sums(dy, x, y, masked, outer, C, inner, mean, dbias, dweight, c)
        _grad_table(p, C, C, mean, invstd, w, <double>outer * <double>inner, training,
                    dweight, dbias)
        _dx_blocks(dy, x, y, masked, dx, outer, C, inner, p, store, T)
        return
    if inner > 1:
        pipe = data_t is not double and _pipe(outer * inner * (3 if masked else 2))
        if T > 1:
            for k in prange(T, num_threads=T, schedule='static'):
                _task_backward(dy, x, y, masked, dx, outer, C, inner, mean, invstd, w,
                               training, dweight, dbias, p, k * C // T, (k + 1) * C // T,
                               stream, pf, pipe)
        else:
            _task_backward(dy, x, y, masked, dx, outer, C, inner, mean, invstd, w,
                           training, dweight, dbias, p, 0, C, stream, pf, pipe)
        return
    _rows_reduce(x, dy, y, True, masked, outer, C, mean, dbias, dweight, scratch, T)
    _grad_table(p, C, C, mean, invstd, w, <double>outer, training, dweight, dbias)
    # rows R at a time as in _apply, then the last outer % R rows
    R = _out_fold(C, outer, sizeof(data_t), store)
    full = outer // R
    if R == 1:
        _dx_blocks(dy, x, y, masked, dx, outer, C, 1, p, store, T, True)
        return
    for c in range(N_PARAMS):
        _repeat(p + c * C, C, R * C, pw + c * R * C)
    _dx_blocks(dy, x, y, masked, dx, full, R * C, 1, pw, store, T, True)
    off = full * R * C
    _task_dx(dy + off, x + off, y + off, masked, dx + off, C, 1, p, 0, outer - full * R,
             store)


# ----------------------------------------------------------- Python entries
# Arguments come validated from cbn._api: data arrays share dtype and are dense
# in x's axis order; (outer, C, inner) describe them; per-channel arrays are 1-D
# float32 or float64 of length C (any stride), or None for the default.

cdef inline char* _matched(char* p, const void* match, uintptr_t window=4096) noexcept nogil:
    """p (8-byte aligned) moved on to match's offset in a window of bytes (a power of
    2 from 64: at most window - 8 bytes on), to 8 bytes, or to a 64-byte line when
    match is NULL or tables_match_output() is off.  In a window of 4 KiB, _table_shift
    bytes past match's offset (Zen 4; windows of 64 bytes have none).

    Parameter tables start at their output's offset (_work): the interleaved output
    passes store aligned vectors of the output (CBN_ALIGNED_LANES) and load the table's
    vectors at the same channels, which are then aligned too, and no load of the
    table lands a few bytes after a pending store of the output in the page (loads
    that do wait on that store: 4 KiB aliasing).  Measured, 2-core AMD EPYC VM (Zen
    5), channels-last in cache, output 16 bytes into a line, this / the old 16-byte-
    aligned malloc (whose repeated table of the backward lay in the scratch), separate
    builds alternated process by process, 1 and 2 threads: float32 256x1024
    inference 0.78-0.92, training 0.88-0.96, backward 0.87-1.00; 1x28x28x512
    0.77-0.85, 0.86-0.94, 0.81-0.94; float64 256x1024 0.85-0.92, 0.89-0.97, 0.85-0.95;
    by columns (64x4096, 1x7x7x2048: tables on each thread's stack), matched / line-
    aligned in one process: 0.82-0.89, 0.89-0.93, 0.86-0.93; outputs 32 bytes into a
    line 0.96-1.05 (their vectors met a line-aligned table at the same offset).
    Matched to a line only, a table just behind the output in the page made 51 MB
    channels-last training 1.4x slower (4 KiB aliasing).  float16 tables (float) do
    not follow their output (half the item size): matched to it, 1.04-1.35x slower."""
    if match == NULL or not _match_on:
        return p + ((0 - <uintptr_t>p) & 56)
    return p + ((<uintptr_t>match + <uintptr_t>_table_shift - <uintptr_t>p) & (window - 8))


cdef struct Work:
    char* raw           # what to free
    double* cols        # ncols float64 columns of length C, from a 64-byte line
    double* scratch     # nscratch doubles, from a 64-byte line
    void* table         # ntable doubles for parameter tables (N_PARAMS x C each, float64-
                        # sized so they fit either compute type), from match's offset
    void* rep           # nrep doubles for the repeated table of folded rows (_apply), the
                        # same


cdef int _work(Work* w, Py_ssize_t C, int ncols, Py_ssize_t nscratch, Py_ssize_t ntable,
               Py_ssize_t nrep, const void* match) except -1:
    """Per-call scratch, one malloc (free w.raw): columns, scratch, then the parameter
    tables and the repeated table, each at match's offset in a page (_matched; match:
    the output, NULL for float16 data or where no output pass reads them).  Tables
    under a page match the output's line only: a small call's malloc stays small
    (with a page of room for each table, (1,16,8,8) inference took 1.03-1.07x as
    long)."""
    cdef Py_ssize_t a = (ncols * C + 7) // 8 * 8, b = (nscratch + 7) // 8 * 8
    cdef uintptr_t window = 4096 if (ntable + nrep) * sizeof(double) >= 4096 else 64
    w.raw = <char*>malloc(sizeof(double) * (a + b + ntable + nrep) + 64 + 2 * window)
    if w.raw == NULL:
        raise MemoryError()
    w.cols = <double*>_matched(w.raw, NULL)
    w.scratch = w.cols + a
    w.table = _matched(<char*>(w.scratch + b), match, window)
    w.rep = _matched(<char*>(<double*>w.table + ntable), match, window)
    return 0


cdef inline const void* _out_line(int kind, const void* out) noexcept:
    """The address a call's parameter tables match (_matched): its output's, but for
    float16 data."""
    if kind == 2:
        return NULL
    return out


cdef inline Py_ssize_t _partials(Py_ssize_t inner, Py_ssize_t C, int T):
    """Doubles of scratch.  Interleaved: pivots, then _rows_reduce's (repeated pivots,
    padded partials of the last rows, padded per-thread partials).  Planar: those of
    _slab_stats and _slab_sums."""
    # the widest row _fold or _sums_fold (float16: SUMS_WIDE // 2 values) makes, with
    # the rows _whole adds (at most 7: whole vectors of 8 values)
    cdef Py_ssize_t W = (max(_fold(C, 8 * WIDE), (SUMS_WIDE // 2 + C - 1) // C) + 7) * C
    cdef Py_ssize_t wpad = (W + PAD - 1) // PAD * PAD
    cdef Py_ssize_t cpad = (C + PAD - 1) // PAD * PAD
    if inner > 1:       # _slab_stats: pivots, then T slots of 4 rows
        return (1 + 4 * T) * cpad
    return C + wpad + SLOT * cpad + T * SLOT * wpad


cdef struct Col:
    # A per-channel input as the kernels read it: base NULL for None (every value dflt)
    const char* base
    Py_ssize_t stride
    bint f32
    double dflt


cdef Col _col(object a, double dflt):
    """The Col of a: None, or 1-D float32/float64 of length C (any stride)."""
    cdef Col r
    r.dflt = dflt
    r.base = NULL
    r.stride = 0
    r.f32 = False
    if a is not None:
        r.base = <const char*>cnp.PyArray_DATA(<cnp.ndarray>a)
        r.stride = cnp.PyArray_STRIDE(<cnp.ndarray>a, 0)
        r.f32 = cnp.PyArray_TYPE(<cnp.ndarray>a) == cnp.NPY_FLOAT
    return r


cdef inline void _col_get(Col a, double* dst, Py_ssize_t c0, Py_ssize_t n) noexcept nogil:
    """dst[i] = a[c0 + i] as double, i < n."""
    cdef Py_ssize_t i
    cdef const char* base = a.base + c0 * a.stride
    if a.base == NULL:
        for i in range(n):
            dst[i] = a.dflt
    elif a.f32 and a.stride == sizeof(float):   # the common cases, as loops that vectorize
        for i in range(n):
            dst[i] = (<const float*>base)[i]
    elif a.f32:
        for i in range(n):
            dst[i] = (<const float*>(base + i * a.stride))[0]
    elif a.stride == sizeof(double):
        for i in range(n):
            dst[i] = (<const double*>base)[i]
    else:
        for i in range(n):
            dst[i] = (<const double*>(base + i * a.stride))[0]


cdef inline void _col_put(Col a, const double* src, Py_ssize_t c0, Py_ssize_t n) noexcept nogil:
    """a[c0 + i] = src[i], i < n, rounded to a's type (nothing for None)."""
    cdef Py_ssize_t i
    cdef char* base = <char*>a.base + c0 * a.stride
    if a.base == NULL:
        return
    if a.f32 and a.stride == sizeof(float):
        for i in range(n):
            (<float*>base)[i] = <float>src[i]
    elif a.f32:
        for i in range(n):
            (<float*>(base + i * a.stride))[0] = <float>src[i]
    elif a.stride == sizeof(double):
        for i in range(n):
            (<double*>base)[i] = src[i]
    else:
        for i in range(n):
            (<double*>(base + i * a.stride))[0] = src[i]


cdef void _gather(object a, double* dst, Py_ssize_t C, double default):
    """dst[c] = a[c] as double (a: None, or 1-D float32/float64 of length C)."""
    _col_get(_col(a, default), dst, 0, C)


cdef void _scatter(object a, const double* src, Py_ssize_t C):
    """a[c] = src[c] (a: None, or 1-D float32/float64 of length C)."""
    _col_put(_col(a, 0.0), src, 0, C)


cdef int _kind(cnp.ndarray x) except -1:
    cdef int t = cnp.PyArray_TYPE(x)
    if t == cnp.NPY_FLOAT:
        return 0
    if t == cnp.NPY_DOUBLE:
        return 1
    return 2        # NPY_HALF


cdef inline Py_ssize_t _chunk(Py_ssize_t C, Py_ssize_t c0,
                              Py_ssize_t w=PCHUNK) noexcept nogil:
    """Channels in the chunk of (at most w <= PCHUNK) channels from c0 < C."""
    return C - c0 if C - c0 < w else w


cdef inline Py_ssize_t _col_chunks(Py_ssize_t C, int T, Py_ssize_t* w) noexcept nogil:
    """How many chunks of w channels (w a multiple of 8, at most PCHUNK; the last may be
    shorter) the by-columns passes (_by_cols) cut C channels into: at least one per
    PCHUNK channels, and on T > 1 threads as many as make a multiple of T, so that the
    threads' static shares match (C = 1100 on two threads: four chunks of 280, 280, 280
    and 260 channels, not 512, 512 and 76), but no narrower than COL_NARROW channels
    where C allows (on many threads some then have none: a chunk's rows are walked a
    piece at a time, and pieces of a few cache lines would leave the prefetchers
    little to follow; a guard, measured on 2 cores only).  A channel's sums, parameters
    and outputs do not depend on the cut: every chunk but the last starts and ends at
    a multiple of 8 channels."""
    cdef Py_ssize_t nk = (C + PCHUNK - 1) // PCHUNK
    if T > 1:
        nk = max(nk, min((nk + T - 1) // T * T, C // COL_NARROW))
    w[0] = ((C + nk - 1) // nk + 7) // 8 * 8
    return (C + w[0] - 1) // w[0]


cdef inline bint _f32_cols(const Col* cols, bint inv) noexcept nogil:
    """Whether cols suit cbn_params_f32: each None or float32 with unit stride (the
    variance unread without inv), every default a float32 value."""
    cdef int k
    for k in range(4):
        if k == 1 and not inv:
            continue
        if cols[k].base != NULL and not (cols[k].f32 and cols[k].stride == sizeof(float)):
            return False
        if <double><float>cols[k].dflt != cols[k].dflt:
            return False
    return True


cdef inline const float* _f32_at(Col a, Py_ssize_t c0) noexcept nogil:
    """Channel c0 of a float32 Col with unit stride; NULL for None."""
    if a.base == NULL:
        return NULL
    return <const float*>a.base + c0


cdef inline void _param_chunk(const Col* cols, double eps, bint inv, real_t* p,
                              Py_ssize_t ldp, Py_ssize_t c0, Py_ssize_t n) noexcept nogil:
    """Channels [c0, c0 + n), n <= PCHUNK, of the parameter table of (x - center) * scale
    + shift from cols (center, variance, scale, shift), into p[k * ldp + i] for channel
    c0 + i: with inv the scale is multiplied by 1 / sqrt(variance + eps) (bn_eval), else
    the variance is not read (scale_shift).  float32 tables from float32 columns (or
    None) take cbn_params_f32, the same table in one pass."""
    cdef double m[PCHUNK]
    cdef double v[PCHUNK]
    cdef double w[PCHUNK]
    cdef double b[PCHUNK]
    cdef double dflt[4]
    cdef Py_ssize_t i
    if real_t is float and _f32_cols(cols, inv):
        for i in range(4):
            dflt[i] = cols[i].dflt
        cbn_params_f32(_f32_at(cols[0], c0), _f32_at(cols[1], c0), _f32_at(cols[2], c0),
                       _f32_at(cols[3], c0), dflt, eps, inv, p + P_HI * ldp,
                       p + P_SCALE * ldp, p + P_SHIFT * ldp, n)
        return
    _col_get(cols[0], m, c0, n)
    _col_get(cols[2], w, c0, n)
    _col_get(cols[3], b, c0, n)
    if inv:
        _col_get(cols[1], v, c0, n)
        _scale_invstd(w, v, eps, n, real_t is float)
    for i in range(n):
        _set_params(p, ldp, i, m[i], w[i], b[i])


cdef void _params(const Col* cols, double eps, bint inv, real_t* p, Py_ssize_t C,
                  int T) noexcept nogil:
    """The whole parameter table (_param_chunk), in chunks of PCHUNK channels that stay
    in L1, on T threads from PAR_PARAMS channels."""
    cdef Py_ssize_t k, nk = (C + PCHUNK - 1) // PCHUNK
    if T > 1 and C >= PAR_PARAMS:
        for k in prange(nk, num_threads=T, schedule='static'):
            _param_chunk(cols, eps, inv, p + k * PCHUNK, C, k * PCHUNK,
                         _chunk(C, k * PCHUNK))
    else:
        for k in range(nk):
            _param_chunk(cols, eps, inv, p + k * PCHUNK, C, k * PCHUNK,
                         _chunk(C, k * PCHUNK))


cdef inline void _chunk_rows(const data_t* x, data_t* out, Py_ssize_t rows, Py_ssize_t C,
                             const Col* cols, double eps, bint inv, bint relu, int store,
                             Py_ssize_t c0, Py_ssize_t w, real_t* tp) noexcept nogil:
    """Columns [c0, c0 + w) of all rows (_apply_cols), their parameters set up in tp
    (N_PARAMS * PCHUNK values) first."""
    cdef Py_ssize_t n = _chunk(C, c0, w)
    _param_chunk(cols, eps, inv, tp, PCHUNK, c0, n)
    _rows_affine(x + c0, out + c0, C, rows, n, tp, PCHUNK, relu, store)


cdef inline void _task_cols(const data_t* x, data_t* out, Py_ssize_t rows, Py_ssize_t C,
                            const Col* cols, double eps, bint inv, bint relu, int store,
                            Py_ssize_t c0, Py_ssize_t w) noexcept nogil:
    cdef double buf[N_PARAMS * PCHUNK + 512]   # a float or double table, on this thread,
    cdef const void* match = NULL               # at the output's offset (_matched)
    cdef char* tp
    if data_t is not cbn_half:
        match = out + c0
    tp = _matched(<char*>buf, match)
    if data_t is double:
        _chunk_rows(x, out, rows, C, cols, eps, inv, relu, store, c0, w, <double*>tp)
    else:
        _chunk_rows(x, out, rows, C, cols, eps, inv, relu, store, c0, w, <float*>tp)
    if store == STORE_STREAM:
        cbn_stream_fence()


cdef void _apply_cols(const data_t* x, data_t* out, Py_ssize_t rows, Py_ssize_t C,
                      const Col* cols, double eps, bint inv, bint relu, int T,
                      bint fresh) noexcept nogil:
    """Inference over few wide interleaved rows (_by_cols), by columns: each thread takes
    chunks of channels (_col_chunks), sets up their parameters where it uses them and runs
    them down all the rows; no table is shared between threads or held in memory."""
    cdef Py_ssize_t k, w, nk = _col_chunks(C, T, &w)
    cdef int store = _store(rows * C, sizeof(data_t), 2, T, 1, fresh)
    if T > 1:
        for k in prange(nk, num_threads=T, schedule='static'):
            _task_cols(x, out, rows, C, cols, eps, inv, relu, store, k * w, w)
    else:
        for k in range(nk):
            _task_cols(x, out, rows, C, cols, eps, inv, relu, store, k * w, w)


cdef inline bint _by_cols(Py_ssize_t rows, Py_ssize_t C, Py_ssize_t cmin=COLS_MIN,
                          Py_ssize_t rmax=COLS_ROWS) noexcept nogil:
    """Inference, training, statistics and backward on interleaved rows go by columns
    (_apply_cols, _train_cols, _stats_cols, _backward_cols) when the rows are few and
    wide (at most rmax rows of at least cmin channels: COLS_ROWS and COLS_MIN; for
    statistics COLS_ROWS_STATS; for inference COLS_ROWS_EVAL and COLS_EVAL): one
    parameter table set up and shared between threads, and per-thread partial sums of
    every channel, would cost more than the rows themselves.  Measured (2-core Intel
    Xeon VM, float32, separate builds alternated, 4 pairs), columns / rows time on 1 and
    2 threads: 8-64 rows of 1024-2000 channels, statistics 0.82-0.98 and 0.40-0.88,
    training 0.82-0.97 and 0.48-0.87, backward 0.76-0.96 and 0.51-0.83 (the rows' two
    threads took 1.1-1.5x their one thread's time there: the partials of every channel
    cross between the cores); 65-128 rows of 1024-4096 channels, statistics 0.85-0.92
    and 0.51-0.64, training 0.79-0.98 and 0.53-1.03, backward 0.72-0.97 and 0.76-0.96;
    192-512 rows, statistics 0.93-0.98 and 0.65-0.96, but training 0.96-1.26 and
    1.01-1.79, backward 0.95-1.38 and 1.02-1.78: the output pass loses there, as two
    cores write the two column halves of the same rows (in C, a 256-row output: 21.5-55.6
    us by column halves against 11.9-15.3 by row halves on two threads; one thread
    walking the halves in turn 38.3-45.5 against 35.2-39.4).  Inference by columns took
    0.92-1.95x the rows' time at 32-64 rows of 1024-1536 channels, so it keeps the rows
    there."""
    return _cols_on and C >= cmin and rows <= rmax


cdef inline Py_ssize_t _apply_scratch(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner,
                                     Py_ssize_t size):
    """Doubles _apply needs for the repeated table of folded narrow rows (Work.rep);
    size: bytes per value."""
    return N_PARAMS * _fold_rows(C, outer, size) * C if inner == 1 else 0


# OUT out: batch norm with running statistics.  fresh: out was just allocated (_store).
def bn_eval(cnp.ndarray x, cnp.ndarray out, Py_ssize_t outer, Py_ssize_t C,
            Py_ssize_t inner, running_mean, running_var, weight, bias, double eps,
            bint relu, int n_threads, bint fresh=False):
    cdef Col cols[4]
    cols[0], cols[1] = _col(running_mean, 0.0), _col(running_var, 0.0)
    cols[2], cols[3] = _col(weight, 1.0), _col(bias, 0.0)
    _affine(_kind(x), x, out, outer, C, inner, cols, eps, True, relu, n_threads, fresh)


# OUT out = x * scale + shift per channel (fresh: as bn_eval).
def scale_shift(cnp.ndarray x, cnp.ndarray out, Py_ssize_t outer, Py_ssize_t C,
                Py_ssize_t inner, scale, shift, bint relu, int n_threads, bint fresh=False):
    cdef Col cols[4]
    cols[0], cols[1] = _col(None, 0.0), _col(None, 0.0)
    cols[2], cols[3] = _col(scale, 1.0), _col(shift, 0.0)
    _affine(_kind(x), x, out, outer, C, inner, cols, 0.0, False, relu, n_threads, fresh)


cdef inline void _block_params(const Col* cols, double eps, bint inv, real_t* p,
                               Py_ssize_t C, Py_ssize_t inner, Py_ssize_t q0,
                               Py_ssize_t q1) noexcept nogil:
    """The parameter table entries (_param_chunk) of the channels that block [q0, q1) of
    an output pass touches (rows: all; planar values in memory order: the runs from
    q0's to q1 - 1's, channel 0 again after C - 1), into p (N_PARAMS x C)."""
    cdef Py_ssize_t a = 0, n = C, c, e
    if inner > 1 and q1 > q0:
        a = q0 // inner
        n = (q1 - 1) // inner - a + 1
        a = a % C
        n = n if n < C else C
    c = a
    while c < a + n:        # c % C is the channel; chunks end at PCHUNK and at C
        e = min(c + PCHUNK, a + n, (c // C + 1) * C)
        _param_chunk(cols, eps, inv, p + c % C, C, c % C, e - c)
        c = e


cdef inline void _task_own(const data_t* x, data_t* out, Py_ssize_t C, Py_ssize_t inner,
                           const Col* cols, double eps, bint inv, real_t* p, bint relu,
                           Py_ssize_t q0, Py_ssize_t q1, int store) noexcept nogil:
    _block_params(cols, eps, inv, p, C, inner, q0, q1)
    _task_apply(x, out, C, inner, p, relu, q0, q1, store)


cdef void _apply_own(const data_t* x, data_t* out, Py_ssize_t outer, Py_ssize_t C,
                     Py_ssize_t inner, const Col* cols, double eps, bint inv, real_t* p,
                     bint relu, int T, bint fresh) noexcept nogil:
    """Inference (_affine) in _blocks, each block setting up the parameters of the
    channels it touches in its own table (p: one N_PARAMS x C table per block, at most
    T) on the thread that uses them: a batch of one splits the set-up among threads, and
    no table crosses cores."""
    cdef Py_ssize_t k, nq, unit
    cdef int store = _store(outer * C * inner, sizeof(data_t), 2, T, inner, fresh)
    cdef Py_ssize_t nb = _blocks(outer, C, inner, T, &nq, &unit)
    if nb > 1:
        for k in prange(nb, num_threads=T, schedule='static'):
            _task_own(x, out, C, inner, cols, eps, inv, p + k * N_PARAMS * C, relu,
                      _cut(nq, k, nb, unit), _cut(nq, k + 1, nb, unit), store)
    else:
        _task_own(x, out, C, inner, cols, eps, inv, p, relu, 0, nq, store)


cdef inline bint _own(Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, int T) noexcept nogil:
    """Whether inference goes by _apply_own: not on folded narrow rows (their repeated
    table is shared), and not where every block would set up all of PAR_PARAMS or more
    channels (wide rows, or planar blocks of whole images: one table set up on all
    threads is quicker)."""
    if not _own_on or (inner == 1 and _fold(C, outer) > 1):
        return False
    return C < PAR_PARAMS or (inner > 1 and outer < T)


cdef void _affine(int kind, cnp.ndarray x, cnp.ndarray out, Py_ssize_t outer, Py_ssize_t C,
                  Py_ssize_t inner, const Col* cols, double eps, bint inv, bint relu, int T,
                  bint fresh):
    """out = (x - center) * scale + shift from cols (_param_chunk); the scratch is a
    parameter table per block (_apply_own), or one table p and its repeated copy pw
    (_apply)."""
    cdef double* d
    cdef Work w
    cdef void* p
    cdef void* pw
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* po = cnp.PyArray_DATA(out)
    if inner == 1 and _by_cols(outer, C, COLS_EVAL, COLS_ROWS_EVAL):
        with nogil:
            if kind == 0:
                _apply_cols(<const float*>px, <float*>po, outer, C, cols, eps, inv, relu, T,
                            fresh)
            elif kind == 1:
                _apply_cols(<const double*>px, <double*>po, outer, C, cols, eps, inv, relu,
                            T, fresh)
            else:
                _apply_cols(<const cbn_half*>px, <cbn_half*>po, outer, C, cols, eps, inv,
                            relu, T, fresh)
        return
    if _own(outer, C, inner, T):
        _work(&w, C, 0, 0, N_PARAMS * C * T, 0, _out_line(kind, po))     # T tables
        d = <double*>w.table
        try:
            with nogil:
                if kind == 0:
                    _apply_own(<const float*>px, <float*>po, outer, C, inner, cols, eps, inv,
                               <float*>d, relu, T, fresh)
                elif kind == 1:
                    _apply_own(<const double*>px, <double*>po, outer, C, inner, cols, eps,
                               inv, d, relu, T, fresh)
                else:
                    _apply_own(<const cbn_half*>px, <cbn_half*>po, outer, C, inner, cols,
                               eps, inv, <float*>d, relu, T, fresh)
        finally:
            free(w.raw)
        return
    _work(&w, C, 0, 0, N_PARAMS * C, _apply_scratch(outer, C, inner, x.itemsize),
          _out_line(kind, po))
    p = w.table
    pw = w.rep
    try:
        with nogil:
            if kind == 1:
                _params(cols, eps, inv, <double*>p, C, T)
                _apply(<const double*>px, <double*>po, outer, C, inner, <const double*>p,
                       <double*>pw, relu, T, fresh)
            else:
                _params(cols, eps, inv, <float*>p, C, T)
                if kind == 0:
                    _apply(<const float*>px, <float*>po, outer, C, inner, <const float*>p,
                           <float*>pw, relu, T, fresh)
                else:
                    _apply(<const cbn_half*>px, <cbn_half*>po, outer, C, inner,
                           <const float*>p, <float*>pw, relu, T, fresh)
    finally:
        free(w.raw)


# OUT out; running stats updated in place (when given); mean_out, invstd_out (when given)
# receive the batch mean and 1 / sqrt(var + eps).  fresh: as bn_eval.
def bn_train(cnp.ndarray x, cnp.ndarray out, Py_ssize_t outer, Py_ssize_t C,
             Py_ssize_t inner, weight, bias, double eps, bint relu, running_mean,
             running_var, double momentum, mean_out, invstd_out, int n_threads,
             bint fresh=False):
    cdef int kind = _kind(x)
    cdef Col cols[6]
    cdef double* d
    cdef Work w
    cdef double* mean
    cdef double* var
    cdef void* p
    cdef double* scratch
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* po = cnp.PyArray_DATA(out)
    cdef Py_ssize_t k
    cols[0], cols[1] = _col(weight, 1.0), _col(bias, 0.0)
    cols[2], cols[3] = _col(running_mean, 0.0), _col(running_var, 0.0)
    cols[4], cols[5] = _col(mean_out, 0.0), _col(invstd_out, 0.0)
    if inner == 1 and _by_cols(outer, C):
        _work(&w, C, 0, 0, N_PARAMS * C, 0, _out_line(kind, po))
        d = <double*>w.table
        try:
            with nogil:
                if kind == 0:
                    _train_cols(<const float*>px, <float*>po, outer, C, cols, eps, momentum,
                                relu, <float*>d, n_threads, fresh)
                elif kind == 1:
                    _train_cols(<const double*>px, <double*>po, outer, C, cols, eps,
                                momentum, relu, d, n_threads, fresh)
                else:
                    _train_cols(<const cbn_half*>px, <cbn_half*>po, outer, C, cols, eps,
                                momentum, relu, <float*>d, n_threads, fresh)
        finally:
            free(w.raw)
        return
    _work(&w, C, 4, _partials(inner, C, n_threads), N_PARAMS * C,
          _apply_scratch(outer, C, inner, x.itemsize), _out_line(kind, po))
    d = w.cols
    mean = d + 2 * C
    var = d + 3 * C
    p = w.table
    scratch = w.scratch
    try:
        _gather(weight, d, C, 1.0)
        _gather(bias, d + C, C, 0.0)
        with nogil:
            if kind == 0:
                _train(<const float*>px, <float*>po, outer, C, inner, d, d + C, eps, relu,
                       mean, var, <float*>p, <float*>w.rep, scratch, n_threads, fresh)
            elif kind == 1:
                _train(<const double*>px, <double*>po, outer, C, inner, d, d + C, eps, relu,
                       mean, var, <double*>p, <double*>w.rep, scratch, n_threads, fresh)
            else:
                _train(<const cbn_half*>px, <cbn_half*>po, outer, C, inner, d, d + C, eps,
                       relu, mean, var, <float*>p, <float*>w.rep, scratch, n_threads,
                       fresh)
            for k in range((C + PCHUNK - 1) // PCHUNK):
                _update_chunk(cols + 2, mean + k * PCHUNK, var + k * PCHUNK, eps, momentum,
                              <double>outer * <double>inner, k * PCHUNK,
                              _chunk(C, k * PCHUNK))
    finally:
        free(w.raw)


cdef inline void _update_chunk(const Col* outs, const double* mean, const double* var,
                               double eps, double momentum, double n, Py_ssize_t c0,
                               Py_ssize_t k) noexcept nogil:
    """For channels [c0, c0 + k), k <= PCHUNK, of batch mean and biased variance mean[i],
    var[i]: the running-statistics update (outs[0], outs[1]: running mean and variance,
    which takes the unbiased variance) and the saved statistics (outs[2]: mean, outs[3]:
    1 / sqrt(var + eps)); None outputs are skipped."""
    cdef double t[PCHUNK]
    cdef Py_ssize_t i
    if outs[0].base != NULL:
        _col_get(outs[0], t, c0, k)
        for i in range(k):
            t[i] = (1.0 - momentum) * t[i] + momentum * mean[i]
        _col_put(outs[0], t, c0, k)
    if outs[1].base != NULL:
        _col_get(outs[1], t, c0, k)
        for i in range(k):
            t[i] = (1.0 - momentum) * t[i] + momentum * var[i] * (n / (n - 1.0))
        _col_put(outs[1], t, c0, k)
    _col_put(outs[2], mean, c0, k)
    if outs[3].base != NULL:
        for i in range(k):
            t[i] = _invstd(var[i], eps)
        _col_put(outs[3], t, c0, k)


# OUT mean_out, var_out: per-channel mean and biased variance (outer * inner >= 1).
def bn_stats(cnp.ndarray x, Py_ssize_t outer, Py_ssize_t C, Py_ssize_t inner, mean_out,
             var_out, int n_threads):
    cdef int kind = _kind(x)
    cdef double* d
    cdef Work w
    cdef double* scratch
    cdef void* px = cnp.PyArray_DATA(x)
    cdef Col outs[2]
    if inner == 1 and _by_cols(outer, C, COLS_MIN, COLS_ROWS_STATS):
        outs[0], outs[1] = _col(mean_out, 0.0), _col(var_out, 0.0)
        with nogil:
            if kind == 0:
                _stats_cols(<const float*>px, outer, C, outs, n_threads)
            elif kind == 1:
                _stats_cols(<const double*>px, outer, C, outs, n_threads)
            else:
                _stats_cols(<const cbn_half*>px, outer, C, outs, n_threads)
        return
    _work(&w, C, 2, _partials(inner, C, n_threads), 0, 0, NULL)
    d = w.cols
    scratch = w.scratch
    try:
        with nogil:
            if kind == 0:
                _stats(<const float*>px, outer, C, inner, d, d + C, scratch, n_threads)
            elif kind == 1:
                _stats(<const double*>px, outer, C, inner, d, d + C, scratch, n_threads)
            else:
                _stats(<const cbn_half*>px, outer, C, inner, d, d + C, scratch, n_threads)
        _scatter(mean_out, d, C)
        _scatter(var_out, d + C, C)
    finally:
        free(w.raw)


cdef bint _invstd_fits(cnp.ndarray a) noexcept:
    """Whether every finite, nonzero |a[c]| of a (1-D, native float32 or float64) lies in
    [2**-50, 2**50]: the range in which the float32 tables of a float32 or float16
    backward hold their coefficient of x - mean, of order invstd**2 (see bn_backward)."""
    cdef Py_ssize_t i, n = cnp.PyArray_DIM(a, 0), st = cnp.PyArray_STRIDE(a, 0)
    cdef const char* p = <const char*>cnp.PyArray_DATA(a)
    cdef bint single = cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT
    cdef double v
    for i in range(n):
        v = (<const float*>(p + i * st))[0] if single else (<const double*>(p + i * st))[0]
        v = -v if v < 0 else v
        if v != 0 and v <= 1.7976931348623157e308 and not 0.5 ** 50 <= v <= 2.0 ** 50:
            return False
    return True


# OUT dx, dweight_out, dbias_out.  y: None, or the relu=True forward's output (the gradient
# is zero where y <= 0).  fresh: dx was just allocated (bn_eval).
def bn_backward(cnp.ndarray dy, cnp.ndarray x, y, cnp.ndarray dx, Py_ssize_t outer,
                Py_ssize_t C, Py_ssize_t inner, mean, invstd, weight, bint training,
                dweight_out, dbias_out, int n_threads, bint fresh=False):
    cdef int kind = _kind(x)
    # 1, having written nothing: float32 or float16 data with an invstd (a native
    # float32/float64 array of shape (C,)) beyond [2**-50, 2**50], where the float32
    # tables would under- or overflow (the caller computes in float64 instead:
    # _rare.py); else None
    if kind != 1 and not _invstd_fits(invstd):
        return 1
    cdef bint masked = y is not None
    cdef void* pdy = cnp.PyArray_DATA(dy)
    cdef void* px = cnp.PyArray_DATA(x)
    cdef void* py = cnp.PyArray_DATA(<cnp.ndarray>y) if masked else px
    cdef void* pdx = cnp.PyArray_DATA(dx)
    cdef Col cols[5]
    cdef double* d
    cdef Work w
    cdef void* p
    cdef double* scratch
    if inner == 1 and _by_cols(outer, C):
        cols[0], cols[1], cols[2] = _col(mean, 0.0), _col(invstd, 0.0), _col(weight, 1.0)
        cols[3], cols[4] = _col(dweight_out, 0.0), _col(dbias_out, 0.0)
        _work(&w, C, 0, 0, N_PARAMS * C, 0, _out_line(kind, pdx))
        d = <double*>w.table
        try:
            with nogil:
                if kind == 0:
                    _backward_cols(<const float*>pdy, <const float*>px, <const float*>py,
                                   masked, <float*>pdx, outer, C, cols, training, <float*>d,
                                   n_threads, fresh)
                elif kind == 1:
                    _backward_cols(<const double*>pdy, <const double*>px, <const double*>py,
                                   masked, <double*>pdx, outer, C, cols, training, d,
                                   n_threads, fresh)
                else:
                    _backward_cols(<const cbn_half*>pdy, <const cbn_half*>px,
                                   <const cbn_half*>py, masked, <cbn_half*>pdx, outer, C,
                                   cols, training, <float*>d, n_threads, fresh)
        finally:
            free(w.raw)
        return
    _work(&w, C, 5, _partials(inner, C, n_threads), N_PARAMS * C,
          _apply_scratch(outer, C, inner, x.itemsize), _out_line(kind, pdx))
    d = w.cols
    p = w.table
    scratch = w.scratch
    try:
        _gather(mean, d, C, 0.0)
        _gather(invstd, d + C, C, 0.0)
        _gather(weight, d + 2 * C, C, 1.0)
        with nogil:
            if kind == 0:
                _backward(<const float*>pdy, <const float*>px, <const float*>py, masked,
                          <float*>pdx, outer, C, inner, d, d + C, d + 2 * C, training,
                          d + 3 * C, d + 4 * C, <float*>p, <float*>w.rep, scratch, n_threads,
                          fresh)
            elif kind == 1:
                _backward(<const double*>pdy, <const double*>px, <const double*>py, masked,
                          <double*>pdx, outer, C, inner, d, d + C, d + 2 * C, training,
                          d + 3 * C, d + 4 * C, <double*>p, <double*>w.rep, scratch,
                          n_threads, fresh)
            else:
                _backward(<const cbn_half*>pdy, <const cbn_half*>px, <const cbn_half*>py,
                          masked, <cbn_half*>pdx, outer, C, inner, d, d + C, d + 2 * C,
                          training, d + 3 * C, d + 4 * C, <float*>p, <float*>w.rep, scratch,
                          n_threads, fresh)
        _scatter(dweight_out, d + 3 * C, C)
        _scatter(dbias_out, d + 4 * C, C)
    finally:
        free(w.raw)
