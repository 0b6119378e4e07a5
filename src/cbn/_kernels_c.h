/* C helpers for cbn's Cython kernels: build facts, float16 conversion, CPU features,
 * and the innermost loops over one run or row (float64 reductions, output passes),
 * compiled as functions of their own.  How work is split and ordered, and every
 * per-channel computation but the float32 tables' inverse square roots
 * (cbn_scale_invstd), is in _kernels.pyx.
 */
#ifndef CBN_KERNELS_C_H
#define CBN_KERNELS_C_H

#include <stdint.h>
#include <string.h>

#include "cbn_build_info.h"

/* ------------------------------------------------------------ build facts */

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

/* ---------------------------------------------------------------- float16
 * cbn_half is float16 storage.  With hardware conversions (x86 F16C, arm64)
 * it is the compiler's half type and conversions are casts the compiler can
 * vectorize; otherwise it is uint16_t with the software conversions below,
 * which round to nearest even and keep NaN, Inf and subnormals.
 */

static inline float cbn_h2f_soft(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    float f;
    if (e == 0x1fu) {
        bits = sign | 0x7f800000u | (m << 13);              /* Inf, NaN */
    } else if (e != 0) {
        bits = sign | ((e + 112u) << 23) | (m << 13);       /* normal */
    } else if (m == 0) {
        bits = sign;                                        /* zero */
    } else {                                                /* subnormal */
        uint32_t k = 0;
        while (!(m & 0x400u)) { m <<= 1; k++; }
        bits = sign | ((113u - k) << 23) | ((m & 0x3ffu) << 13);
    }
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t cbn_f2h_soft(float f) {
    uint32_t x, ax, sign;
    memcpy(&x, &f, 4);
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u)                                   /* NaN: keep it quiet */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u)                                  /* >= 65520: Inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax >= 0x38800000u) {                                /* normal half */
        uint32_t r = ax - 0x38000000u;
        r += 0xfffu + ((r >> 13) & 1u);
        return (uint16_t)(sign | (r >> 13));
    }
    if (ax < 0x33000000u)                                   /* < 2**-25: zero */
        return (uint16_t)sign;
    {                                                       /* subnormal half */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u;
        uint32_t s = 126u - e, q = m >> s, rem = m & ((1u << s) - 1u), half = 1u << (s - 1u);
        q += (rem > half) || (rem == half && (q & 1u));
        return (uint16_t)(sign | q);
    }
}

#if defined(__F16C__) && ((defined(__GNUC__) && __GNUC__ >= 12) || (defined(__clang__) && __clang_major__ >= 15))
typedef _Float16 cbn_half;
#define CBN_HALF_HW "F16C"
/* "+ 0.0f" stops GCC from folding a later float -> double widening into one
 * half -> double conversion, which x86 lacks (a libgcc call per element). */
static inline float cbn_h2f(cbn_half h) { return (float)h + 0.0f; }
static inline cbn_half cbn_f2h(float f) { return (cbn_half)f; }
#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
typedef __fp16 cbn_half;
#define CBN_HALF_HW "arm64 fp16"
static inline float cbn_h2f(cbn_half h) { return (float)h; }
static inline cbn_half cbn_f2h(float f) { return (cbn_half)f; }
#else
typedef uint16_t cbn_half;
#define CBN_HALF_HW "software"
static inline float cbn_h2f(cbn_half h) { return cbn_h2f_soft(h); }
static inline cbn_half cbn_f2h(float f) { return cbn_f2h_soft(f); }
#endif

/* Block conversions (what the kernels use for float16 runs): F16C converts 8
 * values per instruction; elsewhere the compiler vectorizes the casts (arm64) or
 * the software conversions run. */
#if defined(__F16C__)
#include <immintrin.h>
#endif

static inline void cbn_h2f_n(const cbn_half* src, float* dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i))));
#endif
    for (; i < n; i++) dst[i] = cbn_h2f(src[i]);
}

static inline void cbn_f2h_n(const float* src, cbn_half* dst, Py_ssize_t n) {
    Py_ssize_t i = 0;
#if defined(__F16C__)
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i*)(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; i < n; i++) dst[i] = cbn_f2h(src[i]);
}

#define CBN_HCHUNK 256      /* float16 values converted per block */

/* Prefetch nbytes from p into the caches: for short planar runs far apart, whose next
 * run the hardware prefetchers cannot guess. */
static inline void cbn_prefetch(const void* p, Py_ssize_t nbytes) {
    Py_ssize_t b;
#if defined(__GNUC__) || defined(__clang__)
    for (b = 0; b < nbytes; b += 64)
        __builtin_prefetch((const char*)p + b);
#else
    (void)p; (void)nbytes; (void)b;
#endif
}

/* Prefetch the nbytes that lie `ahead` bytes past p.  Near an array's end that address
 * is past it: it is formed as an integer and only prefetched (a prefetch never faults). */
static inline void cbn_prefetch_ahead(const void* p, Py_ssize_t ahead, Py_ssize_t nbytes) {
    cbn_prefetch((const void*)((uintptr_t)p + (uintptr_t)ahead), nbytes);
}

/* ----------------------------------------------------- reduction primitives
 * A float64 sum over a run of float data is a
 * reduction the compiler may not reorder on its own; GCC's vectorizer does the
 * reordering for hand-made "lanes" in a Cython loop only while that loop is not
 * nested in another (measured: 8.1 us instead of 2.5 us for 16384 floats once
 * inlined into the kernels' loop nests).  `omp simd reduction` grants the
 * reordering explicitly, so these loops vectorize wherever they are inlined.
 * MSVC's OpenMP 2.0 has no simd construct: there they run as plain loops.
 *
 *   cbn_sums_T(x, n, ref, acc):          acc[0] += sum(d),  acc[1] += sum(d * d),  d = x - ref
 *   cbn_gsums_T(x, dy, y, n, mean, acc): acc[0] += sum(g), acc[1] += sum(g * (x - mean)),
 *                                        g = dy, or 0 where y <= 0 (y not NULL)
 */
#if defined(__GNUC__) || defined(__clang__)
#define CBN_SIMD_REDUCE _Pragma("omp simd reduction(+:a, q)")
/* Not inlined: inside the kernels' large functions GCC keeps some of the `omp simd`
 * lane accumulators on the stack, a store-to-load chain in every iteration (measured:
 * planar statistics 3.2x slower than the same loop compiled on its own). */
#define CBN_REDUCER static __attribute__((noinline))
#else
#define CBN_SIMD_REDUCE
#define CBN_REDUCER static
#endif

/* One loop, two sums, BODY adding to (a, q) for element i; measured at about 0.14 ns
 * per float32 value on one Zen 3 core with AVX2 (0.28 with SSE2).  The AVX2 build's
 * float32 sums are written out with four vectors of partial sums instead (0.10). */
#define CBN_REDUCE(BODY)                                                                    \
    {                                                                                       \
        double a = 0.0, q = 0.0;                                                            \
        Py_ssize_t i;                                                                       \
        CBN_SIMD_REDUCE                                                                     \
        for (i = 0; i < n; i++) { BODY }                                                    \
        acc[0] += a;                                                                        \
        acc[1] += q;                                                                        \
    }

#define CBN_DEFINE_REDUCTIONS(SUFFIX, T)                                                    \
CBN_REDUCER void cbn_sums_##SUFFIX(const T* x, Py_ssize_t n, double ref, double* acc) {    \
    CBN_REDUCE(double d = (double)x[i] - ref; a += d; q += d * d;)                          \
}                                                                                           \
CBN_REDUCER void cbn_gsums_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t n,      \
                                    double mean, double* acc) {                             \
    if (y)                                                                                  \
        CBN_REDUCE(double g = y[i] <= 0 ? 0.0 : (double)dy[i];                              \
                   a += g; q += g * ((double)x[i] - mean);)                                 \
    else                                                                                    \
        CBN_REDUCE(double g = dy[i]; a += g; q += g * ((double)x[i] - mean);)               \
}
#if defined(__AVX2__) && defined(__FMA__)
/* With AVX2: four vectors of partial sums per sum.  With the one vector per sum of the
 * `omp simd` loop, the additions' latency bounds the loop (measured on one Zen 3 core,
 * 50 K float32 values in cache: 0.136 ns per value, 0.102 with four). */
#include <immintrin.h>
static inline double cbn_hadd4(__m256d a, __m256d b, __m256d c, __m256d d) {
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(_mm256_add_pd(a, b), _mm256_add_pd(c, d)));
    return (t[0] + t[1]) + (t[2] + t[3]);
}
/* a + b and a - b as fused multiply-adds by 1.0 (the same results, exactly).  On AMD
 * Zen cores additions and FMAs issue on separate pipes, two each, and the float32 sums
 * have more additions (the conversions share their pipes) than FMAs, so some additions
 * go as FMAs.  Measured on a 2-core AMD EPYC VM (Zen 5), separate builds alternated in
 * three rounds, all float32 sums so / plain, one and two threads: statistics planar
 * 0.74-0.80, channels-last 0.79-0.92; training 0.84-0.94; backward 0.85-0.97 (a 25.7
 * MB channels-last backward from memory 1.05-1.06, within that cell's spread).  The
 * float64 planar sums (no conversions) were 1.06-1.13x slower so: they add plainly.
 * On an Intel Xeon (Sapphire Rapids) the plain additions are the quicker: the planar
 * sums take them there (the _add reductions below; _kernels.pyx _fma_adds), while the
 * interleaved loops keep these (0.93-1.02 either way there). */
#define CBN_FADD(a, b) _mm256_fmadd_pd(a, _mm256_set1_pd(1.0), b)
#define CBN_FSUB(a, b) _mm256_fmsub_pd(a, _mm256_set1_pd(1.0), b)
/* four vectors of partial sums, over values 16i + k (k = 0, 4, 8, 12), then 4 values at
 * a time into the first; the functions below add the last 0-3 values into local sums
 * (short planar runs, 5x5 planes, had up to 15 values added one by one through acc:
 * float32 32x512x5x5 training took 1.6-1.7x the time, backward 1.1-1.2x).
 * D(L, S, k) loads the 4 values at k as doubles with L into g and d (subtracting with
 * S), then a = ADD(a, A) and q += Q * d.  CBN_REDUCE16: the whole reduction into acc;
 * its parts (declarations, loops over i < n, reduction into acc) serve the runs'
 * sums too (cbn_runs_sums_T) */
#define CBN_REDUCE16_DECL                                                                   \
    __m256d a0 = _mm256_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;                            \
    __m256d q0 = a0, q1 = a0, q2 = a0, q3 = a0, g, d;
#define CBN_REDUCE16_LOOPS(D, L, S, ADD, A, Q)                                              \
    for (; i + 16 <= n; i += 16) {                                                          \
        CBN_REDUCE16_STEP                                                                   \
        D(L, S, 0) a0 = ADD(a0, A); q0 = _mm256_fmadd_pd(Q, d, q0);                          \
        D(L, S, 4) a1 = ADD(a1, A); q1 = _mm256_fmadd_pd(Q, d, q1);                          \
        D(L, S, 8) a2 = ADD(a2, A); q2 = _mm256_fmadd_pd(Q, d, q2);                          \
        D(L, S, 12) a3 = ADD(a3, A); q3 = _mm256_fmadd_pd(Q, d, q3);                         \
    }                                                                                       \
    for (; i + 4 <= n; i += 4) {                                                            \
        D(L, S, 0) a0 = ADD(a0, A); q0 = _mm256_fmadd_pd(Q, d, q0);                          \
    }
#define CBN_REDUCE16_INTO(acc)                                                              \
    acc[0] += cbn_hadd4(a0, a1, a2, a3);                                                    \
    acc[1] += cbn_hadd4(q0, q1, q2, q3);                                                    \
    (void)g;
/* what each 16-value step does first: nothing, but in cbn_sums_pf_T (CBN_PF_STREAMS) */
#define CBN_REDUCE16_STEP
#define CBN_REDUCE16(D, L, S, ADD, A, Q)                                                    \
    {                                                                                       \
        CBN_REDUCE16_DECL                                                                   \
        CBN_REDUCE16_LOOPS(D, L, S, ADD, A, Q)                                              \
        CBN_REDUCE16_INTO(acc)                                                              \
    }
#define CBN_DEV(L, S, k) d = S(L(x + i + k), R);
#define CBN_GDEV(L, S, k) g = L(dy + i + k); d = S(L(x + i + k), M);
/* g = 0 where y <= 0 (NaN y keeps dy) */
#define CBN_GDEV_MASKED(L, S, k)                                                            \
    g = _mm256_and_pd(_mm256_cmp_pd(L(y + i + k), Z, _CMP_NLE_UQ), L(dy + i + k));          \
    d = S(L(x + i + k), M);
/* the reductions for type T, whose 4 values at p load as doubles with L4(p) and one
 * value v converts with TOD(v); the sums add with ADD, the backward sums subtract the
 * mean with GSUB */
/* the last values of a run, one by one, into local sums s1, s2 (d1, g1: doubles): those
 * of the statistics about ref, and of the backward about mean (g = 0 where y <= 0) */
#define CBN_SUMS_REST(TOD)                                                                  \
    for (; i < n; i++) { d1 = TOD(x[i]) - ref; s1 += d1; s2 += d1 * d1; }
#define CBN_GSUMS_REST(TOD)                                                                 \
    for (; i < n; i++) {                                                                    \
        g1 = y && TOD(y[i]) <= 0 ? 0.0 : TOD(dy[i]);                                        \
        s1 += g1;                                                                           \
        s2 += g1 * (TOD(x[i]) - mean);                                                      \
    }
/* the body of cbn_sums_T (x, n, ref, acc) */
#define CBN_SUMS16_BODY(L4, TOD, ADD)                                                       \
    const __m256d R = _mm256_set1_pd(ref);                                                  \
    Py_ssize_t i = 0;                                                                       \
    double d1, s1 = 0.0, s2 = 0.0;                                                          \
    CBN_REDUCE16(CBN_DEV, L4, _mm256_sub_pd, ADD, d, d)                                     \
    CBN_SUMS_REST(TOD)                                                                      \
    acc[0] += s1;                                                                           \
    acc[1] += s2;
/* the body of cbn_gsums_T (x, dy, y, n, mean, acc) */
#define CBN_GSUMS16_BODY(L4, TOD, ADD, GSUB)                                                \
    const __m256d M = _mm256_set1_pd(mean), Z = _mm256_setzero_pd();                        \
    Py_ssize_t i = 0;                                                                       \
    double g1, s1 = 0.0, s2 = 0.0;                                                          \
    if (y)                                                                                  \
        CBN_REDUCE16(CBN_GDEV_MASKED, L4, GSUB, ADD, g, g)                                  \
    else                                                                                    \
        CBN_REDUCE16(CBN_GDEV, L4, GSUB, ADD, g, g)                                         \
    CBN_GSUMS_REST(TOD)                                                                     \
    acc[0] += s1;                                                                           \
    acc[1] += s2;
#define CBN_DEFINE_REDUCTIONS16(SUFFIX, T, L4, TOD, ADD, GSUB)                              \
CBN_REDUCER void cbn_sums_##SUFFIX(const T* x, Py_ssize_t n, double ref, double* acc) {    \
    CBN_SUMS16_BODY(L4, TOD, ADD)                                                           \
}                                                                                           \
CBN_REDUCER void cbn_gsums_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t n,      \
                                    double mean, double* acc) {                             \
    CBN_GSUMS16_BODY(L4, TOD, ADD, GSUB)                                                    \
}
#define CBN_TOD(v) ((double)(v))
#define CBN_CVT4(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
CBN_DEFINE_REDUCTIONS16(f64, double, _mm256_loadu_pd, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
CBN_DEFINE_REDUCTIONS16(f32, float, CBN_CVT4, CBN_TOD, CBN_FADD, CBN_FSUB)
/* The same with plain additions and subtractions (_kernels.pyx _fma_adds: every CPU but
 * AMD's).  On an Intel Xeon (Golden Cove: FMAs issue on two ports, additions on two,
 * one port shared, so FMAs by 1.0 leave one adder idle) the FMAs are the slower choice:
 * a C loop, one thread,
 * TSC ticks per 16 values in L1 / L2: statistics 3.45 / 3.79 plain against 3.79 /
 * 3.89 as above, backward sums 4.36-4.62 / 4.80 against 6.22 / 6.69. */
CBN_DEFINE_REDUCTIONS16(f32_add, float, CBN_CVT4, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
/* cbn_sums_pf_T(x, n, ref, acc, ahead) and cbn_gsums_pf_T(x, dy, y, n, mean, acc, ahead):
 * cbn_sums_T and cbn_gsums_T that also prefetch, with each step of the loop (16 values;
 * float16: 32), the lines that lie `ahead` values past the step's in each array read:
 * a software stream at a fixed distance ahead in the caller's reading order
 * (_kernels.pyx _sums_ahead: in the run, then in the next one), one prefetch per line
 * read instead of a block's prefetches at once (whose burst fills the fill buffers
 * and stalls the sums).  Measured in a C loop, 2 threads, 2-core Intel Xeon VM,
 * float32 planar channel-order sums, runs of 49 KB: 8 KB ahead 864 us at 51 MB (a 2 KB
 * head of the next run 938, none 1007), 1950 us at 102 MB (3446, 3922).  SB and GB
 * name the sums' bodies; pd and py are dy and y, NULL in the statistics. */
#define CBN_PF_LINES(p, nv)                                                                 \
    {                                                                                       \
        int k_;                                                                             \
        for (k_ = 0; k_ < (nv) * (int)sizeof(*(p)); k_ += 64)                               \
            _mm_prefetch((const char*)((p) + i + ahead) + k_, _MM_HINT_T0);                 \
    }
#define CBN_PF_STREAMS(nv)                                                                  \
    CBN_PF_LINES(x, nv)                                                                     \
    if (pd) CBN_PF_LINES(pd, nv)                                                            \
    if (py) CBN_PF_LINES(py, nv)
#define CBN_DEFINE_PF_SUMS(SUFFIX, T, SB, GB)                                               \
CBN_REDUCER void cbn_sums_pf_##SUFFIX(const T* x, Py_ssize_t n, double ref, double* acc,   \
                                      Py_ssize_t ahead) {                                   \
    const T *pd = NULL, *py = NULL;                                                         \
    SB                                                                                      \
}                                                                                           \
CBN_REDUCER void cbn_gsums_pf_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t n,   \
                                       double mean, double* acc, Py_ssize_t ahead) {        \
    const T *pd = dy, *py = y;                                                              \
    GB                                                                                      \
}
#define CBN_SB_F32 CBN_SUMS16_BODY(CBN_CVT4, CBN_TOD, _mm256_add_pd)
#define CBN_GB_F32 CBN_GSUMS16_BODY(CBN_CVT4, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
#define CBN_SB_F64 CBN_SUMS16_BODY(_mm256_loadu_pd, CBN_TOD, _mm256_add_pd)
#define CBN_GB_F64 CBN_GSUMS16_BODY(_mm256_loadu_pd, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
#undef CBN_REDUCE16_STEP
#define CBN_REDUCE16_STEP CBN_PF_STREAMS(16)
CBN_DEFINE_PF_SUMS(f32_add, float, CBN_SB_F32, CBN_GB_F32)
CBN_DEFINE_PF_SUMS(f64, double, CBN_SB_F64, CBN_GB_F64)
/* the same with the additions and the backward subtractions as FMAs by 1.0, as
 * cbn_sums_f32 and cbn_gsums_f32 (AMD: _kernels.pyx _fma_adds) */
#define CBN_SB_F32_FMA CBN_SUMS16_BODY(CBN_CVT4, CBN_TOD, CBN_FADD)
#define CBN_GB_F32_FMA CBN_GSUMS16_BODY(CBN_CVT4, CBN_TOD, CBN_FADD, CBN_FSUB)
CBN_DEFINE_PF_SUMS(f32, float, CBN_SB_F32_FMA, CBN_GB_F32_FMA)
#undef CBN_REDUCE16_STEP
#define CBN_REDUCE16_STEP
#if defined(__F16C__)
/* float16 with F16C: converted to double, the sums run at the conversions' throughput
 * (0.19 ns per value on one Zen 3 core, slower than float32 per value), so here each
 * vector lane first sums 4 x CBN_HK = 32 values of d = x - ref (and d * d) in float32,
 * about ref rounded to float32 (rf), and adds that to double (0.11 ns per value; the
 * statistics' ref, a float16 value, is rf exactly); the error of those short sums,
 * a few float32 roundings of the values' own size (float16 data carry 11 bits), is
 * far below the float16 output's rounding.  Sums about rf become sums about ref in
 * double: with lo = ref - rf, sum(x - ref) = S1 - m lo, sum((x - ref)^2) = S2 - 2 lo S1
 * + m lo^2, sum(g (x - ref)) = Q - lo G. */
#define CBN_SUMS_F16_HW
/* CBN_HK: the 32-value steps whose values a lane sums in float32 (CBN_HREDUCE, CBN_HRUN)
 * before the double sums take them, through the fold of the partial vectors that every
 * CBN_HK steps costs about as much as one step.  Measured in one process (a run-time
 * CBN_HK, the values alternated, 11 rounds; 2-core AMD EPYC VM, Zen 5, the AVX-512
 * passes), 8 / 4, 1 / 2 threads: float16 1x64x56x56 statistics 0.86 / 0.90-0.92,
 * training 0.92-0.93 / 0.93-0.95, backward 0.94-0.95 / 0.96-0.97; 1x128x28x28 and
 * 1x256x14x14 training 0.93-0.94 / 0.96-0.98; 4x32x16x28x28 training 0.89 / 0.91; runs
 * of 49 values 1.00 (a step per run); 16: 0.82 and 0.90 on 1x64x56x56 statistics and
 * training, at 20 float32 roundings per value.  The error this adds: 8 chained additions
 * where 4 were, 12 roundings per value at most (tests/conftest.py F16_ACC); the
 * variance's measured worst went from 1.27 to 1.86 float32 roundoffs in runs of 3136
 * values, 1.60 to 1.70 in runs of 784 (README.md, Numerics). */
#define CBN_HK 8
#define CBN_LDH8(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(p)))
/* the 8 float32 lanes of v, added pairwise into 4 doubles */
static inline __m256d cbn_wide8(__m256 v) {
    return _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v)),
                         _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}
/* a + b as an FMA (as CBN_FADD).  Measured (Zen 5 VM, separate builds alternated),
 * float16 so / plain: planar statistics 0.83-0.89, training 0.90-0.95, backward
 * 0.91-0.93; channels-last register tiles (CBN_HROW) 0.87-0.96, 0.95, 0.96-0.97. */
#define CBN_FADD8(a, b) _mm256_fmadd_ps(a, _mm256_set1_ps(1.0f), b)
/* 32 values at a time, four float32 vectors of partial sums per sum, each summing
 * CBN_HK values per lane before the double accumulators A, Q take them, then 8 at a
 * time straight into A, Q (the last 0-7 values are the callers'; short planar runs had
 * up to 31 converted one by one): D(k) loads the 8 values at i + 8k into g and d
 * (float32), then a += g and q += g * d */
/* the last whole vectors of 8, straight into A, Q, and their sums into s1, s2 */
#define CBN_HREDUCE_TAIL(D)                                                                 \
        for (; i + 8 <= n; i += 8) {                                                        \
            __m256 g, d;                                                                    \
            D(0) A = _mm256_add_pd(A, cbn_wide8(g));                                        \
            Q = _mm256_add_pd(Q, cbn_wide8(_mm256_mul_ps(g, d)));                           \
        }                                                                                   \
        s1 = cbn_hadd4(A, Z, Z, Z);                                                         \
        s2 = cbn_hadd4(Q, Z, Z, Z);
#define CBN_HREDUCE_STEP     /* what each 32-value step does first (cbn_sums_pf_f16) */
#define CBN_HREDUCE(D)                                                                      \
    {                                                                                       \
        __m256d A = _mm256_setzero_pd(), Q = A;                                             \
        while (i + 32 <= n) {                                                               \
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                     \
            __m256 q0 = a0, q1 = a0, q2 = a0, q3 = a0, g, d;                                \
            Py_ssize_t j_, k_ = (n - i) / 32 < CBN_HK ? (n - i) / 32 : CBN_HK;              \
            for (j_ = 0; j_ < k_; j_++, i += 32) {                                          \
                CBN_HREDUCE_STEP                                                            \
                D(0) a0 = CBN_FADD8(g, a0); q0 = _mm256_fmadd_ps(g, d, q0);                  \
                D(8) a1 = CBN_FADD8(g, a1); q1 = _mm256_fmadd_ps(g, d, q1);                  \
                D(16) a2 = CBN_FADD8(g, a2); q2 = _mm256_fmadd_ps(g, d, q2);                 \
                D(24) a3 = CBN_FADD8(g, a3); q3 = _mm256_fmadd_ps(g, d, q3);                 \
            }                                                                               \
            A = _mm256_add_pd(A, cbn_wide8(_mm256_add_ps(_mm256_add_ps(a0, a2),              \
                                                         _mm256_add_ps(a1, a3))));          \
            Q = _mm256_add_pd(Q, cbn_wide8(_mm256_add_ps(_mm256_add_ps(q0, q2),              \
                                                         _mm256_add_ps(q1, q3))));          \
        }                                                                                   \
        CBN_HREDUCE_TAIL(D)                                                                 \
    }
/* D of CBN_HREDUCE and CBN_HRUN (below): deviations from R (statistics) and backward
 * sums' g, x - M (g = 0 where y <= 0; NaN y keeps dy) */
#define CBN_HDEV(k) d = _mm256_sub_ps(CBN_LDH8(x + i + k), R); g = d;
#define CBN_HGDEV(k) g = CBN_LDH8(dy + i + k); d = _mm256_sub_ps(CBN_LDH8(x + i + k), M);
#define CBN_HGDEV_MASKED(k)                                                                 \
    g = _mm256_and_ps(_mm256_cmp_ps(CBN_LDH8(y + i + k), Z8, _CMP_NLE_UQ),                  \
                      CBN_LDH8(dy + i + k));                                                \
    d = _mm256_sub_ps(CBN_LDH8(x + i + k), M);
#define CBN_SB_F16                                                                          \
    const float rf = (float)ref;                                                            \
    const double lo = ref - (double)rf;                                                     \
    const __m256 R = _mm256_set1_ps(rf);                                                    \
    const __m256d Z = _mm256_setzero_pd();                                                  \
    Py_ssize_t i = 0;                                                                       \
    double s1, s2, m, d1;                                                                   \
    CBN_HRED(CBN_HDEV)                                                                      \
    m = (double)i;                                                                          \
    acc[0] += s1 - m * lo;                                                                  \
    acc[1] += s2 - 2.0 * lo * s1 + m * lo * lo;                                             \
    for (; i < n; i++) { d1 = (double)cbn_h2f(x[i]) - ref; acc[0] += d1; acc[1] += d1 * d1; }
#define CBN_GB_F16                                                                          \
    const float mf = (float)mean;                                                           \
    const double lo = mean - (double)mf;                                                    \
    const __m256 M = _mm256_set1_ps(mf), Z8 = _mm256_setzero_ps();                          \
    const __m256d Z = _mm256_setzero_pd();                                                  \
    Py_ssize_t i = 0;                                                                       \
    double s1, s2, g1;                                                                      \
    if (y)                                                                                  \
        CBN_HRED(CBN_HGDEV_MASKED)                                                          \
    else                                                                                    \
        CBN_HRED(CBN_HGDEV)                                                                 \
    acc[0] += s1;                                                                           \
    acc[1] += s2 - lo * s1;                                                                 \
    for (; i < n; i++) {                                                                    \
        g1 = y && cbn_h2f(y[i]) <= 0 ? 0.0 : (double)cbn_h2f(dy[i]);                        \
        acc[0] += g1;                                                                       \
        acc[1] += g1 * ((double)cbn_h2f(x[i]) - mean);                                      \
    }
#define CBN_HRED CBN_HREDUCE
CBN_REDUCER void cbn_sums_f16(const cbn_half* x, Py_ssize_t n, double ref, double* acc) {
    CBN_SB_F16
}
CBN_REDUCER void cbn_gsums_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                               Py_ssize_t n, double mean, double* acc) {
    CBN_GB_F16
}
#undef CBN_HREDUCE_STEP
#define CBN_HREDUCE_STEP CBN_PF_STREAMS(32)
CBN_DEFINE_PF_SUMS(f16, cbn_half, CBN_SB_F16, CBN_GB_F16)
#undef CBN_HREDUCE_STEP
#define CBN_HREDUCE_STEP
#endif
#else
CBN_DEFINE_REDUCTIONS(f64, double)
CBN_DEFINE_REDUCTIONS(f32, float)
#define cbn_sums_f32_add cbn_sums_f32      /* no FMAs here: one loop */
#define cbn_sums_pf_f32_add cbn_sums_pf_f32
#define cbn_gsums_pf_f32_add cbn_gsums_pf_f32
#define cbn_gsums_f32_add cbn_gsums_f32
#endif

/* The sums over nr short runs of n values, ld values apart (one planar channel's runs
 * in several samples), into acc as cbn_sums_T and cbn_gsums_T would over each run, but
 * with one set of partial sums for all the runs (AVX2 build: the 16-value loop's four
 * vectors, the rest of each run 4 values at a time and the last 0-3 into local sums;
 * float16 with F16C below, cbn_runs_sums_f16), reduced once, instead of two horizontal
 * additions per run.  Each run prefetches the
 * run CBN_RUNS_AHEAD ahead (one channel's runs lie far apart; the prefetchers do not
 * follow) while one exists: left runs lie from the first on. */
#define CBN_RUNS_AHEAD 8
/* without AVX2 (and float16 without F16C): a call per run */
#define CBN_DEFINE_RUNS_SUMS_EACH(SUFFIX, T)                                                \
static void cbn_runs_sums_##SUFFIX(const T* x, Py_ssize_t n, Py_ssize_t nr, Py_ssize_t ld,  \
                                   Py_ssize_t left, double ref, double* acc) {              \
    Py_ssize_t j;                                                                           \
    for (j = 0; j < nr; j++) {                                                              \
        if (j + CBN_RUNS_AHEAD < left)                                                      \
            cbn_prefetch(x + (j + CBN_RUNS_AHEAD) * ld, n * (Py_ssize_t)sizeof(T));         \
        cbn_sums_##SUFFIX(x + j * ld, n, ref, acc);                                         \
    }                                                                                       \
}                                                                                           \
static void cbn_runs_gsums_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t n,      \
                                    Py_ssize_t nr, Py_ssize_t ld, Py_ssize_t left,          \
                                    double mean, double* acc) {                             \
    Py_ssize_t j;                                                                           \
    for (j = 0; j < nr; j++) {                                                              \
        if (j + CBN_RUNS_AHEAD < left) {                                                    \
            cbn_prefetch(x + (j + CBN_RUNS_AHEAD) * ld, n * (Py_ssize_t)sizeof(T));         \
            cbn_prefetch(dy + (j + CBN_RUNS_AHEAD) * ld, n * (Py_ssize_t)sizeof(T));        \
            if (y)                                                                          \
                cbn_prefetch(y + (j + CBN_RUNS_AHEAD) * ld, n * (Py_ssize_t)sizeof(T));     \
        }                                                                                   \
        cbn_gsums_##SUFFIX(x + j * ld, dy + j * ld, y ? y + j * ld : NULL, n, mean, acc);   \
    }                                                                                       \
}
/* without AVX2 (and float16 without F16C): cbn_sums_pf_T and cbn_gsums_pf_T (above)
 * prefetch a call's stream at once, then sum */
#define CBN_DEFINE_PF_SUMS_EACH(SUFFIX, T)                                                  \
static void cbn_sums_pf_##SUFFIX(const T* x, Py_ssize_t n, double ref, double* acc,        \
                                 Py_ssize_t ahead) {                                        \
    cbn_prefetch(x + ahead, n * (Py_ssize_t)sizeof(T));                                     \
    cbn_sums_##SUFFIX(x, n, ref, acc);                                                      \
}                                                                                           \
static void cbn_gsums_pf_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t n,       \
                                  double mean, double* acc, Py_ssize_t ahead) {             \
    cbn_prefetch(x + ahead, n * (Py_ssize_t)sizeof(T));                                     \
    cbn_prefetch(dy + ahead, n * (Py_ssize_t)sizeof(T));                                    \
    if (y)                                                                                  \
        cbn_prefetch(y + ahead, n * (Py_ssize_t)sizeof(T));                                 \
    cbn_gsums_##SUFFIX(x, dy, y, n, mean, acc);                                             \
}
#if defined(__AVX2__) && defined(__FMA__)
#define CBN_DEFINE_RUNS_SUMS(SUFFIX, T, L4, TOD, ADD, GSUB)                                 \
CBN_REDUCER void cbn_runs_sums_##SUFFIX(const T* x0, Py_ssize_t n, Py_ssize_t nr,           \
                                        Py_ssize_t ld, Py_ssize_t left, double ref,         \
                                        double* acc) {                                      \
    const __m256d R = _mm256_set1_pd(ref);                                                  \
    const T* x;                                                                             \
    double d1, s1 = 0.0, s2 = 0.0;                                                          \
    Py_ssize_t i, j;                                                                        \
    CBN_REDUCE16_DECL                                                                       \
    for (j = 0; j < nr; j++) {                                                              \
        x = x0 + j * ld;                                                                    \
        if (j + CBN_RUNS_AHEAD < left)                                                      \
            cbn_prefetch(x + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(T));               \
        i = 0;                                                                              \
        CBN_REDUCE16_LOOPS(CBN_DEV, L4, _mm256_sub_pd, ADD, d, d)                           \
        CBN_SUMS_REST(TOD)                                                                  \
    }                                                                                       \
    CBN_REDUCE16_INTO(acc)                                                                  \
    acc[0] += s1;                                                                           \
    acc[1] += s2;                                                                           \
}                                                                                           \
CBN_REDUCER void cbn_runs_gsums_##SUFFIX(const T* x0, const T* dy0, const T* y0,            \
                                         Py_ssize_t n, Py_ssize_t nr, Py_ssize_t ld,        \
                                         Py_ssize_t left, double mean, double* acc) {       \
    const __m256d M = _mm256_set1_pd(mean), Z = _mm256_setzero_pd();                        \
    const T *x, *dy, *y;                                                                    \
    double g1, s1 = 0.0, s2 = 0.0;                                                          \
    Py_ssize_t i, j;                                                                        \
    CBN_REDUCE16_DECL                                                                       \
    for (j = 0; j < nr; j++) {                                                              \
        x = x0 + j * ld;                                                                    \
        dy = dy0 + j * ld;                                                                  \
        y = y0 ? y0 + j * ld : NULL;                                                        \
        if (j + CBN_RUNS_AHEAD < left) {                                                    \
            cbn_prefetch(x + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(T));               \
            cbn_prefetch(dy + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(T));              \
            if (y)                                                                          \
                cbn_prefetch(y + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(T));           \
        }                                                                                   \
        i = 0;                                                                              \
        if (y) {                                                                            \
            CBN_REDUCE16_LOOPS(CBN_GDEV_MASKED, L4, GSUB, ADD, g, g)                        \
        } else {                                                                            \
            CBN_REDUCE16_LOOPS(CBN_GDEV, L4, GSUB, ADD, g, g)                               \
        }                                                                                   \
        CBN_GSUMS_REST(TOD)                                                                 \
    }                                                                                       \
    CBN_REDUCE16_INTO(acc)                                                                  \
    acc[0] += s1;                                                                           \
    acc[1] += s2;                                                                           \
}
CBN_DEFINE_RUNS_SUMS(f64, double, _mm256_loadu_pd, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
CBN_DEFINE_RUNS_SUMS(f32, float, CBN_CVT4, CBN_TOD, CBN_FADD, CBN_FSUB)
CBN_DEFINE_RUNS_SUMS(f32_add, float, CBN_CVT4, CBN_TOD, _mm256_add_pd, _mm256_sub_pd)
#if defined(CBN_SUMS_F16_HW)
/* float16: each run 32 values at a time into the float32 partial sums a0..a3 and q0..q3
 * (one vector each), then its last 1-3 whole vectors into a0, a1, a2 and its last 1-7
 * values as one vector ending at the run's end into a3 (the lanes before them, counted
 * already, masked to 0: cbn_tail8); the partial sums go on across runs and go into
 * the double accumulators A, Q (CBN_HFLUSH) before a lane would sum more than CBN_HK
 * values (c: what a0's lanes hold; a1..a3 hold no more), as CBN_HREDUCE's do.  Sums
 * about rf, corrected once as cbn_sums_f16 does.  Runs under 8 values go one by one.
 * A single run keeps CBN_HREDUCE (cbn_sums_f16): through this loop, runs of 784 and
 * 3136 values took 1.03-1.06x the time (statistics; training 1.01-1.03), with its
 * 32-value steps counted one by one or k at a time as there. */
static const int cbn_tail8[16] = {0, 0, 0, 0, 0, 0, 0, 0, -1, -1, -1, -1, -1, -1, -1, -1};
#define CBN_HFLUSH                                                                          \
    {                                                                                       \
        A = _mm256_add_pd(A, cbn_wide8(_mm256_add_ps(_mm256_add_ps(a0, a1),                  \
                                                     _mm256_add_ps(a2, a3))));              \
        Q = _mm256_add_pd(Q, cbn_wide8(_mm256_add_ps(_mm256_add_ps(q0, q1),                  \
                                                     _mm256_add_ps(q2, q3))));              \
        a0 = a1 = a2 = a3 = q0 = q1 = q2 = q3 = _mm256_setzero_ps();                        \
        c = 0;                                                                              \
    }
#define CBN_HSTEP(D, k, a, q) D(k) a = CBN_FADD8(g, a); q = _mm256_fmadd_ps(g, d, q);
#define CBN_HRUN(D)                                                                         \
    for (i = 0; i + 32 <= n; i += 32) {                                                     \
        if (c == CBN_HK) CBN_HFLUSH                                                         \
        c++;                                                                                \
        CBN_HSTEP(D, 0, a0, q0) CBN_HSTEP(D, 8, a1, q1)                                     \
        CBN_HSTEP(D, 16, a2, q2) CBN_HSTEP(D, 24, a3, q3)                                   \
    }                                                                                       \
    if (i < n) {                                                                            \
        if (c == CBN_HK) CBN_HFLUSH                                                         \
        c++;                                                                                \
        if (i + 8 <= n) {                                                                   \
            CBN_HSTEP(D, 0, a0, q0) i += 8;                                                 \
            if (i + 8 <= n) {                                                               \
                CBN_HSTEP(D, 0, a1, q1) i += 8;                                             \
                if (i + 8 <= n) { CBN_HSTEP(D, 0, a2, q2) i += 8; }                         \
            }                                                                               \
        }                                                                                   \
        if (i < n) {                                                                        \
            const __m256 k_ = _mm256_loadu_ps((const float*)(cbn_tail8 + (n - i)));        \
            i = n - 8;                                                                      \
            D(0) g = _mm256_and_ps(g, k_); d = _mm256_and_ps(d, k_);                        \
            a3 = CBN_FADD8(g, a3); q3 = _mm256_fmadd_ps(g, d, q3);                          \
        }                                                                                   \
    }
#define CBN_HRUNS_DECL                                                                      \
    __m256d A = _mm256_setzero_pd(), Q = A;                                                 \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                             \
    __m256 q0 = a0, q1 = a0, q2 = a0, q3 = a0, g, d;                                        \
    int c = 0;
CBN_REDUCER void cbn_runs_sums_f16(const cbn_half* x0, Py_ssize_t n, Py_ssize_t nr,
                                   Py_ssize_t ld, Py_ssize_t left, double ref, double* acc) {
    const float rf = (float)ref;
    const double lo = ref - (double)rf;
    const __m256 R = _mm256_set1_ps(rf);
    const __m256d Z = _mm256_setzero_pd();
    const cbn_half* x;
    double v1, v2, m = (double)n * (double)nr;
    Py_ssize_t i, j;
    CBN_HRUNS_DECL
    if (n < 8) {
        for (j = 0; j < nr; j++)
            cbn_sums_f16(x0 + j * ld, n, ref, acc);
        return;
    }
    for (j = 0; j < nr; j++) {
        x = x0 + j * ld;
        if (j + CBN_RUNS_AHEAD < left)
            cbn_prefetch(x + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(cbn_half));
        CBN_HRUN(CBN_HDEV)
    }
    CBN_HFLUSH
    v1 = cbn_hadd4(A, Z, Z, Z);
    v2 = cbn_hadd4(Q, Z, Z, Z);
    acc[0] += v1 - m * lo;
    acc[1] += v2 - 2.0 * lo * v1 + m * lo * lo;
}
CBN_REDUCER void cbn_runs_gsums_f16(const cbn_half* x0, const cbn_half* dy0,
                                    const cbn_half* y0, Py_ssize_t n, Py_ssize_t nr,
                                    Py_ssize_t ld, Py_ssize_t left, double mean, double* acc) {
    const float mf = (float)mean;
    const double lo = mean - (double)mf;
    const __m256 M = _mm256_set1_ps(mf), Z8 = _mm256_setzero_ps();
    const __m256d Z = _mm256_setzero_pd();
    const cbn_half *x, *dy, *y;
    double v1;
    Py_ssize_t i, j;
    CBN_HRUNS_DECL
    if (n < 8) {
        for (j = 0; j < nr; j++)
            cbn_gsums_f16(x0 + j * ld, dy0 + j * ld, y0 ? y0 + j * ld : NULL, n, mean, acc);
        return;
    }
    for (j = 0; j < nr; j++) {
        x = x0 + j * ld;
        dy = dy0 + j * ld;
        y = y0 ? y0 + j * ld : NULL;
        if (j + CBN_RUNS_AHEAD < left) {
            cbn_prefetch(x + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(cbn_half));
            cbn_prefetch(dy + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(cbn_half));
            if (y)
                cbn_prefetch(y + CBN_RUNS_AHEAD * ld, n * (Py_ssize_t)sizeof(cbn_half));
        }
        if (y) {
            CBN_HRUN(CBN_HGDEV_MASKED)
        } else {
            CBN_HRUN(CBN_HGDEV)
        }
    }
    CBN_HFLUSH
    v1 = cbn_hadd4(A, Z, Z, Z);
    acc[0] += v1;
    acc[1] += cbn_hadd4(Q, Z, Z, Z) - lo * v1;
}
#endif
#else
CBN_DEFINE_RUNS_SUMS_EACH(f64, double)
CBN_DEFINE_RUNS_SUMS_EACH(f32, float)
CBN_DEFINE_PF_SUMS_EACH(f64, double)
CBN_DEFINE_PF_SUMS_EACH(f32, float)
#define cbn_runs_sums_f32_add cbn_runs_sums_f32
#define cbn_runs_gsums_f32_add cbn_runs_gsums_f32
#endif

/* ---------------------------------------------------- elementwise primitives
 * The output passes over runs (planar: one channel's scalars) and rows (interleaved:
 * per-channel arrays) of float32 / float64 data, in the data's own type.  Compiled
 * apart from the kernels' large functions for the same reason as the reductions:
 * there GCC spills the loops' pointers and bounds (measured 10-30% slower).
 *
 *   cbn_run_affine_T(x, out, n, hi, s, t, relu):   out = (x - hi) * s + t   (max(., 0) with relu)
 *   cbn_rows_affine_T(x, out, ld, n, m, hi, s, t, relu):  the same over n rows of m
 *                                                  channels, ld apart, per-channel arrays
 *   cbn_run_dx_T(x, dy, y, dx, n, hi, s, t, k):    dx = (x - hi) * s + g * k + t, g = dy,
 *                                                  or 0 where y <= 0 (y not NULL)
 *   cbn_rows_dx_T(x, dy, y, dx, ld, n, m, ...):   the same over n rows, per-channel arrays
 *
 * relu keeps NaN (the comparison is false).  `omp simd`: element i is computed from
 * element i only, so out may be x itself and dx may be x or dy (the API never passes
 * partly overlapping arrays), and no runtime overlap checks are needed.
 */
/* stream in the float16 output passes: 0 plain stores, 1 streaming stores,
 * CBN_STREAM_PF streaming stores with the inputs prefetched CBN_HPF_AHEAD values (4 KB)
 * ahead, once per vector (F16C builds; the passes over arrays in memory order, whose
 * inputs come from memory; the planar channel-by-channel passes read theirs from
 * cache).  The F16C conversions make these passes issue more micro-ops per byte than
 * float32's, and the hardware prefetchers alone kept fewer lines in flight: in a C
 * loop, 25.7 MB from memory (evicted before each call), 2 threads, 2-core Intel Xeon
 * VM, 0.83-0.89 of the time without (the time of a plain streaming copy of the same
 * bytes). */
#define CBN_STREAM_PF 2
#if defined(__GNUC__) || defined(__clang__)
#define CBN_PASS static __attribute__((noinline))
#define CBN_SIMD_LANES _Pragma("omp simd")
#else
#define CBN_PASS static
#define CBN_SIMD_LANES
#endif

/* The output passes store from the first element of their output that is vector-aligned
 * (CBN_ALIGN bytes) on: NumPy's arrays are only 16-byte aligned (often 16 bytes into a
 * 64-byte line), and every other 32-byte store then splits two lines.  Measured on an
 * Intel Xeon (float32, 0.8 MB in L2, output 16 bytes into a line, the whole call):
 * planar inference 1.23x the time of this peeled loop.  CBN_ALIGNED_LANES(DST, N,
 * BODY): BODY for i over [0, N), the elements before DST + i is aligned first. */
#if defined(__AVX__)
#define CBN_ALIGN 32
#else
#define CBN_ALIGN 16
#endif
static inline Py_ssize_t cbn_head_to(const void* p, Py_ssize_t size, Py_ssize_t n, uintptr_t a) {
    Py_ssize_t h = (Py_ssize_t)((0 - (uintptr_t)p) & (a - 1)) / size;
    return h < n ? h : n;
}
#define CBN_ALIGNED_LOOP(DST, N, BODY, LOOP)                                                \
    {                                                                                       \
        Py_ssize_t h_ = cbn_head_to(DST, (Py_ssize_t)sizeof *(DST), N, CBN_ALIGN);          \
        for (i = 0; i < h_; i++) { BODY }                                                   \
        LOOP for (i = h_; i < (N); i++) { BODY }                                            \
    }
#define CBN_ALIGNED_LANES(DST, N, BODY) CBN_ALIGNED_LOOP(DST, N, BODY, CBN_SIMD_LANES)
/* The planar run pass's loop, four vectors per step (GCC: `ivdep` asserts what `omp simd`
 * does, element i from element i only, and unlike it combines with `unroll`; clang
 * interleaves vector loops by itself).  Measured on the 2-core AMD EPYC Zen 5 VM, four-
 * vector / one-vector time: the pass alone (C loop, one thread, float32 runs of 196-784
 * values in L2) 0.86-0.97, from L3 or memory 0.98-1.01; whole planar inference calls,
 * separate builds alternated process by process (8 pairs, medians), 1x128x28x28 and
 * 1x256x14x14 0.91-0.97 on 1 and 2 threads, 1x256x56x56 and 4x32x16x28x28 0.83-0.89 on
 * one thread and 0.99-1.00 on two; the SSE2 build 0.73-0.83 on 1x128x28x28.  Not for
 * the interleaved rows (four loads per vector: 1.00-1.10 of the time) or dx (no gain). */
#if defined(__GNUC__) && !defined(__clang__) && !defined(__INTEL_COMPILER)
#define CBN_RUN_LANES _Pragma("GCC ivdep") _Pragma("GCC unroll 4")
#else
#define CBN_RUN_LANES CBN_SIMD_LANES
#endif

#define CBN_AFFINE(v, i, H, S, T) v = (x[i] - (H)) * (S) + (T);
/* dx = (x - H) * S + g * K + T takes one rounding order everywhere, scalar and vector:
 * fma(x - H, S, g * K) + T in the x86 builds with FMAs (GCC, clang; as the float16
 * passes' intrinsics, cbn_dx8h), the plain expression elsewhere (without FMAs nothing is
 * contracted; GCC 12 for aarch64 contracted head and body alike, checked under qemu at
 * eight output offsets).  Left to the compiler (GCC contracts a * b + c
 * by default), the scalar head of an aligned loop and its vector body contracted the
 * masked dx (g = 0 where y <= 0) differently, so dx changed in its last bit with the
 * output's address: float32 planar and (N, C) backward with y, a few values per run,
 * measured with the output at eight offsets.  CBN_DXV: element i; CBN_VDXV: vectors. */
#if defined(__FMA__) && defined(__AVX__) && (defined(__GNUC__) || defined(__clang__))
#define CBN_FMA(a, b, c) _Generic((a), float: __builtin_fmaf, default: __builtin_fma)(a, b, c)
#define CBN_DX3(d, S, gk, T) (CBN_FMA(d, S, gk) + (T))
#define CBN_VFMA(a, b, c) _Generic((a), cbn_v_f32: _mm256_fmadd_ps, default: _mm256_fmadd_pd)(a, b, c)
#define CBN_VDXV(xv, g, H, S, K, T) (CBN_VFMA((xv) - (H), S, (g) * (K)) + (T))
#else
#define CBN_DX3(d, S, gk, T) ((d) * (S) + (gk) + (T))
#define CBN_VDXV(xv, g, H, S, K, T) (((xv) - (H)) * (S) + (g) * (K) + (T))
#endif
#define CBN_DXV(g, i, H, S, K, T) CBN_DX3(x[i] - (H), S, (g) * (K), T)
#define CBN_DX(g, i, H, S, K, T) dx[i] = CBN_DXV(g, i, H, S, K, T);

/* a run's output pass NAME, its elements walked by LANES(BODY) */
#define CBN_RUN_AFFINE(NAME, R, LANES)                                                      \
CBN_PASS void NAME(const R* x, R* out, Py_ssize_t n, R hi, R s, R t, int relu) {            \
    Py_ssize_t i;                                                                           \
    R v;                                                                                    \
    if (relu) {                                                                             \
        LANES(CBN_AFFINE(v, i, hi, s, t) out[i] = v < 0 ? 0 : v;)                           \
    } else {                                                                                \
        LANES(CBN_AFFINE(v, i, hi, s, t) out[i] = v;)                                       \
    }                                                                                       \
}
#define CBN_PLAIN_LANES(BODY) CBN_ALIGNED_LOOP(out, n, BODY, CBN_RUN_LANES)
#define CBN_DEFINE_PASSES(SUFFIX, R)                                                        \
CBN_RUN_AFFINE(cbn_run_affine_##SUFFIX, R, CBN_PLAIN_LANES)                                 \
CBN_PASS void cbn_rows_affine_##SUFFIX(const R* x, R* out, Py_ssize_t ld, Py_ssize_t n,    \
                                       Py_ssize_t m, const R* hi, const R* s, const R* t,   \
                                       int relu) {                                          \
    Py_ssize_t r, i;                                                                        \
    R v;                                                                                    \
    for (r = 0; r < n; r++, x += ld, out += ld) {                                           \
        if (relu) {                                                                         \
            CBN_ALIGNED_LANES(out, m, CBN_AFFINE(v, i, hi[i], s[i], t[i]) out[i] = v < 0 ? 0 : v;) \
        } else {                                                                            \
            CBN_ALIGNED_LANES(out, m, CBN_AFFINE(v, i, hi[i], s[i], t[i]) out[i] = v;)      \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
CBN_PASS void cbn_run_dx_##SUFFIX(const R* x, const R* dy, const R* y, R* dx, Py_ssize_t n, \
                                  R hi, R s, R t, R k) {                                    \
    Py_ssize_t i;                                                                           \
    if (y) {                                                                                \
        CBN_ALIGNED_LANES(dx, n, CBN_DX(y[i] <= 0 ? 0 : dy[i], i, hi, s, k, t))             \
    } else {                                                                                \
        CBN_ALIGNED_LANES(dx, n, CBN_DX(dy[i], i, hi, s, k, t))                             \
    }                                                                                       \
}                                                                                           \
CBN_PASS void cbn_rows_dx_##SUFFIX(const R* x, const R* dy, const R* y, R* dx, Py_ssize_t ld, \
                                   Py_ssize_t n, Py_ssize_t m, const R* hi, const R* s,     \
                                   const R* t, const R* k) {                                \
    Py_ssize_t r, i;                                                                        \
    for (r = 0; r < n; r++, x += ld, dy += ld, dx += ld) {                                  \
        if (y) {                                                                            \
            CBN_ALIGNED_LANES(dx, m, CBN_DX(y[i] <= 0 ? 0 : dy[i], i, hi[i], s[i], k[i], t[i])) \
            y += ld;                                                                        \
        } else {                                                                            \
            CBN_ALIGNED_LANES(dx, m, CBN_DX(dy[i], i, hi[i], s[i], k[i], t[i]))             \
        }                                                                                   \
    }                                                                                       \
}
CBN_DEFINE_PASSES(f32, float)
CBN_DEFINE_PASSES(f64, double)

/* Runs from the last-level cache (cbn_run_affine_pf_T; when, see _opf_on in
 * _kernels.pyx): the same pass in blocks of four lines of output, each block first
 * prefetching into L1 the four lines of x CBN_PF_OUT bytes ahead of its own. */
#define CBN_PF_OUT 1024
static inline void cbn_pf_line(const char* p) {
#if defined(__GNUC__) || defined(__clang__)
    __builtin_prefetch(p, 0, 3);
#else
    (void)p;
#endif
}
#define CBN_PF_RUNS(SRC, DST, N, BODY)                                                      \
    {                                                                                       \
        const Py_ssize_t B_ = 256 / (Py_ssize_t)sizeof *(DST);  /* four lines */            \
        Py_ssize_t h_ = cbn_head_to(DST, (Py_ssize_t)sizeof *(DST), N, CBN_ALIGN), j_, k;  \
        for (i = 0; i < h_; i++) { BODY }                                                   \
        for (j_ = h_; j_ + B_ <= (N); j_ += B_) {                                           \
            for (k = 0; k < 4; k++)                                                         \
                cbn_pf_line((const char*)((SRC) + j_) + CBN_PF_OUT + 64 * k);              \
            CBN_SIMD_LANES for (i = j_; i < j_ + B_; i++) { BODY }                          \
        }                                                                                   \
        for (i = j_; i < (N); i++) { BODY }                                                 \
    }
#define CBN_PF_LANES(BODY) CBN_PF_RUNS(x, out, n, BODY)
CBN_RUN_AFFINE(cbn_run_affine_pf_f32, float, CBN_PF_LANES)
CBN_RUN_AFFINE(cbn_run_affine_pf_f64, double, CBN_PF_LANES)

/* Streamed passes: cbn_*_nt_T, the same passes with non-temporal stores, for outputs
 * too large to stay in the last-level cache (the stores skip reading the output's
 * lines from memory first).  Written with GCC/clang vector extensions (the same
 * arithmetic as the `omp simd` loops, hence the same results): scalar up to the
 * first vector-aligned element of each run (planar) or of a task's rows taken as one
 * run (interleaved, CBN_ROWS_STREAMED), then whole vectors, then the rest.  The
 * caller ends each task with cbn_stream_fence().  Elsewhere (MSVC, non-x86) they are
 * the plain passes. */
/* Rows per block of the register-tiled output passes whose rows span several tiles, at
 * most (0: no limit; _kernels.pyx sets it to TILE_BLOCK on Zen 4) */
static Py_ssize_t cbn_tile_block = 0;
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__SSE2__) || defined(__x86_64__))
#include <immintrin.h>
#define CBN_CAN_STREAM 1
#define CBN_VBYTES CBN_ALIGN     /* one vector */
#if defined(__AVX__)
#define CBN_VSTREAM(p, v) _mm256_stream_si256((__m256i*)(void*)(p), (__m256i)(v))
#else
#define CBN_VSTREAM(p, v) _mm_stream_si128((__m128i*)(void*)(p), (__m128i)(v))
#endif
static inline void cbn_stream_fence(void) { _mm_sfence(); }
/* one value stored with a streaming store (movnti; on 32-bit x86 a double plainly) */
static inline void cbn_stream1_f32(float* p, float v) {
    int b;
    memcpy(&b, &v, sizeof b);
    _mm_stream_si32((int*)(void*)p, b);
}
static inline void cbn_stream1_f64(double* p, double v) {
#if defined(__x86_64__)
    long long b;
    memcpy(&b, &v, sizeof b);
    _mm_stream_si64((long long*)(void*)p, b);
#else
    *p = v;
#endif
}

/* i over [0, N): SCALAR until DST + i starts a cache line, VECTOR a vector at a time
 * over the whole lines from there, SCALAR for the rest; the planar runs' passes store
 * their SCALAR values with streaming stores too (cbn_stream1_T).  So no line is left
 * half filled by vectors and then stored into plainly.  Before, the vectors began at
 * the first vector-aligned value and the values outside them were stored plainly: where
 * a run's output began 48 bytes into a line, each run's last line was half streamed,
 * then stored into plainly, which made the core flush the half-filled line and read
 * it back.  Measured, 2-core Intel Xeon VM, float32 NCHW 32x128x56x56, 2 threads,
 * separate builds alternated, out= at 0 / 16 / 48 bytes into a line, this / before:
 * training with the arrays in L3 1.00-1.01 / 0.91-0.92 / 0.64-0.65, from memory
 * (evicted first) 1.02 / 0.98 / 0.77; backward in L3 0.97-1.07 / 0.97-1.03 / 0.80-0.82,
 * from memory 1.03 / 0.99 / 0.92.  (Vectors over whole lines but the rest stored
 * plainly, from memory: training 1.00-1.02 / 1.00-1.01 / 0.79-0.80, backward
 * 0.98-1.01 / 0.96-1.00 / 0.89-0.92.)  NumPy's and PyTorch's large arrays start 16,
 * 3104 or 3248 bytes into a page: the last, 48 bytes into a line, is common. */
#define CBN_STREAMED(R, DST, N, SCALAR, VECTOR)                                              \
    {                                                                                        \
        const Py_ssize_t L_ = CBN_VBYTES / (Py_ssize_t)sizeof(R);                            \
        const Py_ssize_t W_ = 64 / (Py_ssize_t)sizeof(R);       /* values per line */        \
        Py_ssize_t i = 0, e_;                                                                \
        for (; i < (N) && ((uintptr_t)((DST) + i) & 63); i++) { SCALAR }                     \
        e_ = i + ((N) - i) / W_ * W_;                                                        \
        for (; i < e_; i += L_) { VECTOR }                                                   \
        for (; i < (N); i++) { SCALAR }                                                      \
    }
/* Rows of m channels one after another, as one run of N values whose channel c wraps to 0
 * at each row's end: SCALAR until DST + i is ALIGN-aligned, then vectors of L: VFAST
 * while the vector stays inside the row (parameters at c), VWRAP for one that crosses
 * the row's end, then SCALAR.  (Peeling each row to alignment instead put plain stores
 * into the lines the streaming stores were filling: 2-10x slower on float32 rows of 64
 * channels, depending on where out starts.) */
#define CBN_ROWS_STREAMED(L, ALIGN, DST, N, m, SCALAR, VFAST, VWRAP)                         \
    {                                                                                        \
        Py_ssize_t i = 0, c = 0, e_;                                                         \
        for (; i < (N) && ((uintptr_t)((DST) + i) & ((ALIGN) - 1)); i++) {                   \
            SCALAR                                                                           \
            c = c + 1 == (m) ? 0 : c + 1;                                                    \
        }                                                                                    \
        while (i + (L) <= (N)) {                                                             \
            e_ = i + ((m) - c) / (L) * (L);                                                  \
            if (e_ > (N) - (L)) e_ = i + ((N) - i) / (L) * (L);                              \
            for (; i < e_; i += (L), c += (L)) { VFAST }                                     \
            if (i + (L) > (N)) break;                                                        \
            if (c == (m)) { c = 0; continue; }                                               \
            VWRAP                                                                            \
            i += (L);                                                                        \
            for (c += (L); c >= (m); c -= (m)) {}                                            \
        }                                                                                    \
        for (; i < (N); i++) {                                                               \
            SCALAR                                                                           \
            c = c + 1 == (m) ? 0 : c + 1;                                                    \
        }                                                                                    \
    }
/* relu and the ReLU mask on vectors: lanes where the comparison holds become +0.0 */
#define CBN_VZERO_WHERE(M, v, cond) ((v) = (__typeof__(v))((M)(v) & ~(M)(cond)))

#define CBN_DEFINE_STREAMED(SUFFIX, R, I)                                                   \
typedef R cbn_v_##SUFFIX __attribute__((vector_size(CBN_VBYTES)));                          \
typedef I cbn_m_##SUFFIX __attribute__((vector_size(CBN_VBYTES)));                          \
static inline cbn_v_##SUFFIX cbn_vld_##SUFFIX(const R* p) {                                 \
    cbn_v_##SUFFIX v;                                                                       \
    memcpy(&v, p, sizeof v);                                                                \
    return v;                                                                               \
}                                                                                           \
/* every lane a: a - 0 is a exactly (-0 too), and GCC 12 makes it one broadcast where \
 * a loop of lane stores became a chain of lane inserts inside an outer loop */            \
static inline cbn_v_##SUFFIX cbn_vset_##SUFFIX(R a) {                                       \
    const cbn_v_##SUFFIX Z = {0};                                                           \
    return a - Z;                                                                           \
}                                                                                           \
/* the parameters p[c], p[c + 1], ... of a vector starting at channel c of rows of m     \
 * channels, wrapping to channel 0 past the row's end */                                   \
static inline cbn_v_##SUFFIX cbn_vpar_##SUFFIX(const R* p, Py_ssize_t c, Py_ssize_t m) {    \
    cbn_v_##SUFFIX v;                                                                       \
    int k;                                                                                  \
    for (k = 0; k < (int)(sizeof v / sizeof(R)); k++) {                                     \
        v[k] = p[c];                                                                        \
        c = c + 1 == m ? 0 : c + 1;                                                         \
    }                                                                                       \
    return v;                                                                               \
}                                                                                           \
/* the output vector at x: (x - H) * S + T (max(., 0) with relu), and dx's:            \
 * (x - H) * S + g * K + T, g = dy or 0 where y <= 0 */                                    \
static inline cbn_v_##SUFFIX cbn_vout_##SUFFIX(const R* x, cbn_v_##SUFFIX H,                \
                                              cbn_v_##SUFFIX S, cbn_v_##SUFFIX T, int relu) { \
    const cbn_v_##SUFFIX Z = {0};                                                           \
    cbn_v_##SUFFIX w = (cbn_vld_##SUFFIX(x) - H) * S + T;                                   \
    if (relu) CBN_VZERO_WHERE(cbn_m_##SUFFIX, w, w < Z);                                    \
    return w;                                                                               \
}                                                                                           \
static inline cbn_v_##SUFFIX cbn_vdxout_##SUFFIX(const R* x, const R* dy, const R* y,      \
                                                cbn_v_##SUFFIX H, cbn_v_##SUFFIX S,         \
                                                cbn_v_##SUFFIX T, cbn_v_##SUFFIX K) {       \
    const cbn_v_##SUFFIX Z = {0};                                                           \
    cbn_v_##SUFFIX g = cbn_vld_##SUFFIX(dy);                                                \
    if (y) CBN_VZERO_WHERE(cbn_m_##SUFFIX, g, cbn_vld_##SUFFIX(y) <= Z);                    \
    return CBN_VDXV(cbn_vld_##SUFFIX(x), g, H, S, K, T);                                    \
}                                                                                           \
CBN_PASS void cbn_run_affine_nt_##SUFFIX(const R* x, R* out, Py_ssize_t n, R hi, R s, R t,  \
                                         int relu) {                                        \
    const cbn_v_##SUFFIX H = cbn_vset_##SUFFIX(hi), S = cbn_vset_##SUFFIX(s),               \
                         T = cbn_vset_##SUFFIX(t);                                          \
    R v;                                                                                    \
    CBN_STREAMED(R, out, n,                                                                 \
                 CBN_AFFINE(v, i, hi, s, t) cbn_stream1_##SUFFIX(out + i, relu && v < 0 ? 0 : v);, \
                 CBN_VSTREAM(out + i, cbn_vout_##SUFFIX(x + i, H, S, T, relu));)            \
}                                                                                           \
static inline void cbn_vaffine_##SUFFIX(const R* x, R* out, cbn_v_##SUFFIX H,              \
                                        cbn_v_##SUFFIX S, cbn_v_##SUFFIX T, int relu) {     \
    CBN_VSTREAM(out, cbn_vout_##SUFFIX(x, H, S, T, relu));                                  \
}                                                                                           \
CBN_PASS void cbn_rows_affine_nt_##SUFFIX(const R* x, R* out, Py_ssize_t ld, Py_ssize_t n,  \
                                          Py_ssize_t m, const R* hi, const R* s,            \
                                          const R* t, int relu) {                           \
    Py_ssize_t r;                                                                           \
    R v;                                                                                    \
    if (ld != m) {                                                                          \
        for (r = 0; r < n; r++)                                                             \
            cbn_rows_affine_nt_##SUFFIX(x + r * ld, out + r * ld, m, 1, m, hi, s, t, relu); \
        return;                                                                             \
    }                                                                                       \
    CBN_ROWS_STREAMED(CBN_VBYTES / (Py_ssize_t)sizeof(R), CBN_VBYTES, out, n * m, m,       \
        CBN_AFFINE(v, i, hi[c], s[c], t[c]) out[i] = relu && v < 0 ? 0 : v;,                \
        cbn_vaffine_##SUFFIX(x + i, out + i, cbn_vld_##SUFFIX(hi + c), cbn_vld_##SUFFIX(s + c), \
                             cbn_vld_##SUFFIX(t + c), relu);,                               \
        cbn_vaffine_##SUFFIX(x + i, out + i, cbn_vpar_##SUFFIX(hi, c, m),                   \
                             cbn_vpar_##SUFFIX(s, c, m), cbn_vpar_##SUFFIX(t, c, m), relu);) \
}                                                                                           \
CBN_PASS void cbn_run_dx_nt_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,            \
                                     Py_ssize_t n, R hi, R s, R t, R k) {                   \
    const cbn_v_##SUFFIX H = cbn_vset_##SUFFIX(hi), S = cbn_vset_##SUFFIX(s),               \
                         T = cbn_vset_##SUFFIX(t), K = cbn_vset_##SUFFIX(k);                \
    CBN_STREAMED(R, dx, n,                                                                  \
                 cbn_stream1_##SUFFIX(dx + i, CBN_DXV(y && y[i] <= 0 ? 0 : dy[i], i, hi, s, k, t));, \
                 CBN_VSTREAM(dx + i, cbn_vdxout_##SUFFIX(x + i, dy + i, y ? y + i : NULL,   \
                                                         H, S, T, K));)                     \
}                                                                                           \
static inline void cbn_vdx_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,            \
                                    cbn_v_##SUFFIX H, cbn_v_##SUFFIX S, cbn_v_##SUFFIX T,   \
                                    cbn_v_##SUFFIX K) {                                     \
    CBN_VSTREAM(dx, cbn_vdxout_##SUFFIX(x, dy, y, H, S, T, K));                             \
}                                                                                           \
CBN_PASS void cbn_rows_dx_nt_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,           \
                                      Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,            \
                                      const R* hi, const R* s, const R* t, const R* k) {    \
    Py_ssize_t r;                                                                           \
    if (ld != m) {                                                                          \
        for (r = 0; r < n; r++)                                                             \
            cbn_rows_dx_nt_##SUFFIX(x + r * ld, dy + r * ld, y ? y + r * ld : NULL,         \
                                    dx + r * ld, m, 1, m, hi, s, t, k);                     \
        return;                                                                             \
    }                                                                                       \
    CBN_ROWS_STREAMED(CBN_VBYTES / (Py_ssize_t)sizeof(R), CBN_VBYTES, dx, n * m, m,        \
        CBN_DX(y && y[i] <= 0 ? 0 : dy[i], i, hi[c], s[c], k[c], t[c]),                     \
        cbn_vdx_##SUFFIX(x + i, dy + i, y ? y + i : NULL, dx + i, cbn_vld_##SUFFIX(hi + c), \
                         cbn_vld_##SUFFIX(s + c), cbn_vld_##SUFFIX(t + c),                  \
                         cbn_vld_##SUFFIX(k + c));,                                         \
        cbn_vdx_##SUFFIX(x + i, dy + i, y ? y + i : NULL, dx + i, cbn_vpar_##SUFFIX(hi, c, m), \
                         cbn_vpar_##SUFFIX(s, c, m), cbn_vpar_##SUFFIX(t, c, m),            \
                         cbn_vpar_##SUFFIX(k, c, m));)                                      \
}
CBN_DEFINE_STREAMED(f32, float, int32_t)
CBN_DEFINE_STREAMED(f64, double, int64_t)

/* Short planar runs: whole vectors from the run's first value, unaligned, and one last
 * vector ending at the run's end that overlaps the one before it, instead of scalar
 * values up to the first aligned one and after the last.  The last vector's inputs are
 * loaded before any store (out may be x), so the overlap stores the same values twice.
 * One run (n >= one vector) each: */
#define CBN_DEFINE_SHORT(SUFFIX, R)                                                         \
static inline __attribute__((always_inline)) void cbn_short_affine_##SUFFIX(                \
        const R* x, R* out, Py_ssize_t n, cbn_v_##SUFFIX H, cbn_v_##SUFFIX S,               \
        cbn_v_##SUFFIX T, int relu) {                                                       \
    const Py_ssize_t L = CBN_VBYTES / (Py_ssize_t)sizeof(R);                                \
    const cbn_v_##SUFFIX e = cbn_vout_##SUFFIX(x + n - L, H, S, T, relu);                   \
    Py_ssize_t i;                                                                           \
    for (i = 0; i < n - L; i += L)                                                          \
        cbn_vst_##SUFFIX(out + i, cbn_vout_##SUFFIX(x + i, H, S, T, relu));                 \
    cbn_vst_##SUFFIX(out + n - L, e);                                                       \
}                                                                                           \
static inline __attribute__((always_inline)) void cbn_short_dx_##SUFFIX(                    \
        const R* x, const R* dy, const R* y, R* dx, Py_ssize_t n, cbn_v_##SUFFIX H,         \
        cbn_v_##SUFFIX S, cbn_v_##SUFFIX T, cbn_v_##SUFFIX K) {                             \
    const Py_ssize_t L = CBN_VBYTES / (Py_ssize_t)sizeof(R);                                \
    const cbn_v_##SUFFIX e = cbn_vdxout_##SUFFIX(x + n - L, dy + n - L,                     \
                                                 y ? y + n - L : NULL, H, S, T, K);         \
    Py_ssize_t i;                                                                           \
    for (i = 0; i < n - L; i += L)                                                          \
        cbn_vst_##SUFFIX(dx + i, cbn_vdxout_##SUFFIX(x + i, dy + i, y ? y + i : NULL,       \
                                                     H, S, T, K));                          \
    cbn_vst_##SUFFIX(dx + n - L, e);                                                        \
}                                                                                           \
/* one run (cbn_run_affine_short_T, cbn_run_dx_short_T); runs shorter than a vector     \
 * take the plain pass */                                                                   \
CBN_PASS void cbn_run_affine_short_##SUFFIX(const R* x, R* out, Py_ssize_t n, R hi, R s,    \
                                            R t, int relu) {                                \
    if (n < CBN_VBYTES / (Py_ssize_t)sizeof(R))                                             \
        cbn_run_affine_##SUFFIX(x, out, n, hi, s, t, relu);                                 \
    else                                                                                    \
        cbn_short_affine_##SUFFIX(x, out, n, cbn_vset_##SUFFIX(hi), cbn_vset_##SUFFIX(s),   \
                                  cbn_vset_##SUFFIX(t), relu);                              \
}                                                                                           \
CBN_PASS void cbn_run_dx_short_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,         \
                                        Py_ssize_t n, R hi, R s, R t, R k) {                \
    if (n < CBN_VBYTES / (Py_ssize_t)sizeof(R))                                             \
        cbn_run_dx_##SUFFIX(x, dy, y, dx, n, hi, s, t, k);                                  \
    else                                                                                    \
        cbn_short_dx_##SUFFIX(x, dy, y, dx, n, cbn_vset_##SUFFIX(hi), cbn_vset_##SUFFIX(s), \
                              cbn_vset_##SUFFIX(t), cbn_vset_##SUFFIX(k));                  \
}                                                                                           \
/* nr runs of n values each, one after the other, run j with the parameters hi[j],       \
 * s[j], ... (the planes of consecutive channels), in one loop instead of a call per run \
 * (cbn_runs_affine_short_T, cbn_runs_dx_short_T) */                                        \
CBN_PASS void cbn_runs_affine_short_##SUFFIX(const R* x, R* out, Py_ssize_t n,              \
                                             Py_ssize_t nr, const R* hi, const R* s,        \
                                             const R* t, int relu) {                        \
    Py_ssize_t j;                                                                           \
    if (n < CBN_VBYTES / (Py_ssize_t)sizeof(R)) {                                           \
        for (j = 0; j < nr; j++)                                                            \
            cbn_run_affine_##SUFFIX(x + j * n, out + j * n, n, hi[j], s[j], t[j], relu);    \
        return;                                                                             \
    }                                                                                       \
    for (j = 0; j < nr; j++)                                                                \
        cbn_short_affine_##SUFFIX(x + j * n, out + j * n, n, cbn_vset_##SUFFIX(hi[j]),      \
                                  cbn_vset_##SUFFIX(s[j]), cbn_vset_##SUFFIX(t[j]), relu);  \
}                                                                                           \
static inline __attribute__((always_inline)) void cbn_runs_dx_in_##SUFFIX(                  \
        const R* x, const R* dy, const R* y, R* dx, Py_ssize_t n, Py_ssize_t nr,            \
        const R* hi, const R* s, const R* t, const R* k) {                                  \
    Py_ssize_t j;                                                                           \
    for (j = 0; j < nr; j++)                                                                \
        cbn_short_dx_##SUFFIX(x + j * n, dy + j * n, y ? y + j * n : NULL, dx + j * n, n,   \
                              cbn_vset_##SUFFIX(hi[j]), cbn_vset_##SUFFIX(s[j]),            \
                              cbn_vset_##SUFFIX(t[j]), cbn_vset_##SUFFIX(k[j]));            \
}                                                                                           \
CBN_PASS void cbn_runs_dx_short_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,        \
                                         Py_ssize_t n, Py_ssize_t nr, const R* hi,          \
                                         const R* s, const R* t, const R* k) {              \
    Py_ssize_t j;                                                                           \
    if (n < CBN_VBYTES / (Py_ssize_t)sizeof(R)) {                                           \
        for (j = 0; j < nr; j++)                                                            \
            cbn_run_dx_##SUFFIX(x + j * n, dy + j * n, y ? y + j * n : NULL, dx + j * n, n, \
                                hi[j], s[j], t[j], k[j]);                                   \
        return;                                                                             \
    }                                                                                       \
    if (y)      /* the loop written once, inlined for each case */                         \
        cbn_runs_dx_in_##SUFFIX(x, dy, y, dx, n, nr, hi, s, t, k);                          \
    else                                                                                    \
        cbn_runs_dx_in_##SUFFIX(x, dy, NULL, dx, n, nr, hi, s, t, k);                       \
}

/* Register-tiled rows: cbn_rows_affine_T with the channel loop outside.  Rows go in
 * blocks spanning less than 4 KiB (CBN_BLOCK_ROWS: a load 4 KiB after a pending store
 * to the output would falsely depend on it, as x and out of the same size are
 * usually 4 KiB apart); in a block, CBN_TV vectors of channels at a time keep their
 * parameters in registers down the block's rows, so that a vector of output costs
 * one load and one store instead of four loads.  Rows too wide for two of them in
 * 4 KiB take the plain pass. */
#define CBN_TV 4
#define CBN_TILE_BYTES (CBN_TV * CBN_VBYTES)    /* a tile's width */
#define CBN_BLOCK_ROWS(ld, R) cbn_block_rows(ld, (Py_ssize_t)sizeof(R))
static inline Py_ssize_t cbn_block_rows(Py_ssize_t ld, Py_ssize_t size) {
    return 4096 / (ld * size) - 1;
}
/* whether rows ld values of `size` bytes apart take the register tiles (two rows or more
 * per block): else the plain pass */
static inline int cbn_rows_tile(Py_ssize_t ld, Py_ssize_t size) {
    return cbn_block_rows(ld, size) >= 2;
}
/* the rows per block of a tiled pass (rb: CBN_BLOCK_ROWS) over rows of `bytes` bytes in
 * tiles of `tile` bytes: at most cbn_tile_block where a row spans more than one tile */
static inline Py_ssize_t cbn_tile_rows(Py_ssize_t rb, Py_ssize_t bytes, Py_ssize_t tile) {
    return cbn_tile_block > 0 && bytes > tile && rb > cbn_tile_block ? cbn_tile_block : rb;
}
/* Output rows that start misaligned (NumPy's arrays begin 16 bytes into a line): when
 * rows are contiguous (ld == m) and a whole number of vectors long, the tiles walk
 * windows of m values that begin at the first aligned value of each row and end in
 * the next row, with the per-channel arrays rotated to match (CBN_ROT_BYTES each, on
 * the stack: tiled rows are at most 4096 / 3 bytes).  Row 0's first values and the
 * last row's rest go through the plain pass.  Measured on an Intel Xeon (float32 in
 * L2, x and out 16 bytes into a line, tiles from channel 0 / these windows): rows of
 * 32-256 channels, inference 1.25-1.7x the time, dx 1.1-2x; as fast as from aligned
 * arrays. */
#define CBN_ROT_BYTES 1408
/* The values of out's first row before its first 64-byte-aligned one when the tiles
 * walk rotated windows, else 0 */
static inline Py_ssize_t cbn_rot_head(const void* out, Py_ssize_t size, Py_ssize_t ld,
                                      Py_ssize_t n, Py_ssize_t m) {
    if (ld != m || n < 2 || m * size % CBN_ALIGN || m * size > CBN_ROT_BYTES)
        return 0;
    return cbn_head_to(out, size, m, 64);
}
/* dst[j] = src[(j + h) % m] */
#define CBN_ROTATE(dst, src, m, h)                                                          \
    {                                                                                       \
        memcpy(dst, (src) + (h), ((m) - (h)) * sizeof *(dst));                              \
        memcpy((dst) + (m) - (h), src, (h) * sizeof *(dst));                                \
    }
/* a tile of KV vectors at channel c down the block's rows (KV constant: the loops over
 * them unroll, and the parameters stay in registers) */
#define CBN_TILE_AFFINE(SUFFIX, KV)                                                         \
    for (k = 0; k < (KV); k++) {                                                            \
        H[k] = cbn_vld_##SUFFIX(hi + c + k * L);                                            \
        S[k] = cbn_vld_##SUFFIX(s + c + k * L);                                             \
        T[k] = cbn_vld_##SUFFIX(t + c + k * L);                                             \
    }                                                                                       \
    for (r = 0; r < nb; r++)                                                                \
        for (k = 0; k < (KV); k++) {                                                        \
            v = (cbn_vld_##SUFFIX(xb + r * ld + c + k * L) - H[k]) * S[k] + T[k];           \
            if (relu) CBN_VZERO_WHERE(cbn_m_##SUFFIX, v, v < Z);                            \
            cbn_vst_##SUFFIX(ob + r * ld + c + k * L, v);                                   \
        }
/* The channels a row's tiles leave, fewer than a vector, in one masked vector (AVX2)
 * down the block's rows, instead of the plain pass's values one by one: its loads and
 * stores touch those channels only (x may be out).  Measured in one process (2-core AMD
 * EPYC VM, Zen 5), float32, this / the plain pass, 1 and 2 threads: 4096x100 inference
 * 0.87 and 0.81, training 0.91 and 0.92, backward 0.92 and 0.92; 4096x101 inference
 * 0.79 and 0.81, backward 0.90 and 0.88; channels-last 1x100x126x126 inference 0.84
 * and 0.82, backward 0.90 and 0.89; 1x61x56x56 training (rows folded to 122) 0.94 and
 * 0.95. */
#if defined(__AVX2__)
#define CBN_MASKED_TAIL 1
static inline __m256i cbn_vmask_f32(Py_ssize_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline __m256i cbn_vmask_f64(Py_ssize_t n) {
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
static inline cbn_v_f32 cbn_vmld_f32(const float* p, __m256i k) {
    return (cbn_v_f32)_mm256_maskload_ps(p, k);
}
static inline cbn_v_f64 cbn_vmld_f64(const double* p, __m256i k) {
    return (cbn_v_f64)_mm256_maskload_pd(p, k);
}
static inline void cbn_vmst_f32(float* p, __m256i k, cbn_v_f32 v) {
    _mm256_maskstore_ps(p, k, (__m256)v);
}
static inline void cbn_vmst_f64(double* p, __m256i k, cbn_v_f64 v) {
    _mm256_maskstore_pd(p, k, (__m256d)v);
}
/* the tables' masked vectors at channel c */
#define CBN_TAIL_TABLES(SUFFIX)                                                             \
    const __m256i K_ = cbn_vmask_##SUFFIX(m - c);                                           \
    const cbn_v_##SUFFIX H_ = cbn_vmld_##SUFFIX(hi + c, K_);                                \
    const cbn_v_##SUFFIX S_ = cbn_vmld_##SUFFIX(s + c, K_);                                 \
    const cbn_v_##SUFFIX T_ = cbn_vmld_##SUFFIX(t + c, K_);
#define CBN_TAIL_AFFINE(SUFFIX)                                                             \
    {                                                                                       \
        CBN_TAIL_TABLES(SUFFIX)                                                             \
        for (r = 0; r < nb; r++) {                                                          \
            v = (cbn_vmld_##SUFFIX(xb + r * ld + c, K_) - H_) * S_ + T_;                    \
            if (relu) CBN_VZERO_WHERE(cbn_m_##SUFFIX, v, v < Z);                            \
            cbn_vmst_##SUFFIX(ob + r * ld + c, K_, v);                                      \
        }                                                                                   \
    }
#define CBN_TAIL_DX(SUFFIX)                                                                 \
    {                                                                                       \
        CBN_TAIL_TABLES(SUFFIX)                                                             \
        const cbn_v_##SUFFIX G_ = cbn_vmld_##SUFFIX(kk + c, K_);                            \
        for (r = 0; r < nb; r++) {                                                          \
            o = (r0 + r) * ld + c;                                                          \
            g = cbn_vmld_##SUFFIX(dy + o, K_);                                              \
            if (y) CBN_VZERO_WHERE(cbn_m_##SUFFIX, g, cbn_vmld_##SUFFIX(y + o, K_) <= Z);   \
            cbn_vmst_##SUFFIX(dx + o, K_, CBN_VDXV(cbn_vmld_##SUFFIX(x + o, K_), g, H_, S_, \
                                                  G_, T_));                                 \
        }                                                                                   \
    }
#else
#define CBN_MASKED_TAIL 0
#define CBN_TAIL_AFFINE(SUFFIX)
#define CBN_TAIL_DX(SUFFIX)
#endif
#define CBN_DEFINE_TILED(SUFFIX, R)                                                         \
static inline void cbn_vst_##SUFFIX(R* p, cbn_v_##SUFFIX v) { memcpy(p, &v, sizeof v); }    \
static inline void cbn_rows_affine_tiles_##SUFFIX(const R* x, R* out, Py_ssize_t ld,        \
                                                  Py_ssize_t n, Py_ssize_t m, const R* hi,  \
                                                  const R* s, const R* t, int relu) {       \
    const Py_ssize_t L = CBN_VBYTES / (Py_ssize_t)sizeof(R), W = CBN_TV * L;                \
    const cbn_v_##SUFFIX Z = {0};                                                           \
    cbn_v_##SUFFIX H[CBN_TV], S[CBN_TV], T[CBN_TV], v;                                      \
    Py_ssize_t rb = cbn_tile_rows(CBN_BLOCK_ROWS(ld, R), m * sizeof(R), W * sizeof(R));     \
    Py_ssize_t r0, nb, r, c, k, kv;                                                         \
    for (r0 = 0; r0 < n; r0 += rb) {                                                        \
        const R* xb = x + r0 * ld;                                                          \
        R* ob = out + r0 * ld;                                                              \
        nb = n - r0 < rb ? n - r0 : rb;                                                     \
        for (c = 0; c + L <= m; c += kv * L) {                                              \
            kv = c + W <= m ? CBN_TV : 1;                                                   \
            if (kv == CBN_TV) {                                                             \
                CBN_TILE_AFFINE(SUFFIX, CBN_TV)                                             \
            } else {                                                                        \
                CBN_TILE_AFFINE(SUFFIX, 1)                                                  \
            }                                                                               \
        }                                                                                   \
        if (c < m && CBN_MASKED_TAIL) {                                                     \
            CBN_TAIL_AFFINE(SUFFIX)                                                         \
        } else if (c < m)                                                                   \
            cbn_rows_affine_##SUFFIX(xb + c, ob + c, ld, nb, m - c, hi + c, s + c, t + c, relu); \
    }                                                                                       \
}                                                                                           \
CBN_PASS void cbn_rows_affine_tiled_##SUFFIX(const R* x, R* out, Py_ssize_t ld, Py_ssize_t n, \
                                             Py_ssize_t m, const R* hi, const R* s,         \
                                             const R* t, int relu) {                        \
    R rh[CBN_ROT_BYTES / sizeof(R)], rs[CBN_ROT_BYTES / sizeof(R)], rt[CBN_ROT_BYTES / sizeof(R)]; \
    Py_ssize_t h = cbn_rot_head(out, sizeof(R), ld, n, m), e = (n - 1) * ld + h;             \
    if (!cbn_rows_tile(ld, sizeof(R))) {                                                    \
        cbn_rows_affine_##SUFFIX(x, out, ld, n, m, hi, s, t, relu);                         \
    } else if (h) {                                                                         \
        CBN_ROTATE(rh, hi, m, h)                                                            \
        CBN_ROTATE(rs, s, m, h)                                                             \
        CBN_ROTATE(rt, t, m, h)                                                             \
        cbn_rows_affine_##SUFFIX(x, out, ld, 1, h, hi, s, t, relu);                         \
        cbn_rows_affine_tiles_##SUFFIX(x + h, out + h, ld, n - 1, m, rh, rs, rt, relu);     \
        cbn_rows_affine_##SUFFIX(x + e, out + e, ld, 1, m - h, hi + h, s + h, t + h, relu); \
    } else {                                                                                \
        cbn_rows_affine_tiles_##SUFFIX(x, out, ld, n, m, hi, s, t, relu);                   \
    }                                                                                       \
}
CBN_DEFINE_TILED(f32, float)
CBN_DEFINE_TILED(f64, double)

/* The same for dx: CBN_TVD vectors of channels (four parameters each) at a time. */
#define CBN_TVD 2
#define CBN_TILE_DX(SUFFIX, KV)                                                             \
    for (j = 0; j < (KV); j++) {                                                            \
        H[j] = cbn_vld_##SUFFIX(hi + c + j * L);                                            \
        S[j] = cbn_vld_##SUFFIX(s + c + j * L);                                             \
        T[j] = cbn_vld_##SUFFIX(t + c + j * L);                                             \
        K[j] = cbn_vld_##SUFFIX(kk + c + j * L);                                            \
    }                                                                                       \
    for (r = 0; r < nb; r++)                                                                \
        for (j = 0; j < (KV); j++) {                                                        \
            o = (r0 + r) * ld + c + j * L;                                                  \
            g = cbn_vld_##SUFFIX(dy + o);                                                   \
            if (y) CBN_VZERO_WHERE(cbn_m_##SUFFIX, g, cbn_vld_##SUFFIX(y + o) <= Z);         \
            cbn_vst_##SUFFIX(dx + o, CBN_VDXV(cbn_vld_##SUFFIX(x + o), g, H[j], S[j], K[j], T[j])); \
        }
#define CBN_DEFINE_TILED_DX(SUFFIX, R)                                                      \
static inline void cbn_rows_dx_tiles_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,   \
                                              Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,    \
                                              const R* hi, const R* s, const R* t,          \
                                              const R* kk) {                                \
    const Py_ssize_t L = CBN_VBYTES / (Py_ssize_t)sizeof(R), W = CBN_TVD * L;               \
    const cbn_v_##SUFFIX Z = {0};                                                           \
    cbn_v_##SUFFIX H[CBN_TVD], S[CBN_TVD], T[CBN_TVD], K[CBN_TVD], g;                       \
    Py_ssize_t rb = cbn_tile_rows(CBN_BLOCK_ROWS(ld, R), m * sizeof(R), W * sizeof(R));     \
    Py_ssize_t r0, nb, r, c, j, o, kv;                                                      \
    for (r0 = 0; r0 < n; r0 += rb) {                                                        \
        nb = n - r0 < rb ? n - r0 : rb;                                                     \
        for (c = 0; c + L <= m; c += kv * L) {                                              \
            kv = c + W <= m ? CBN_TVD : 1;                                                  \
            if (kv == CBN_TVD) {                                                            \
                CBN_TILE_DX(SUFFIX, CBN_TVD)                                                \
            } else {                                                                        \
                CBN_TILE_DX(SUFFIX, 1)                                                      \
            }                                                                               \
        }                                                                                   \
        if (c < m && CBN_MASKED_TAIL) {                                                     \
            CBN_TAIL_DX(SUFFIX)                                                             \
        } else if (c < m) {                                                                 \
            o = r0 * ld + c;                                                                \
            cbn_rows_dx_##SUFFIX(x + o, dy + o, y ? y + o : NULL, dx + o, ld, nb, m - c,    \
                                 hi + c, s + c, t + c, kk + c);                             \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
CBN_PASS void cbn_rows_dx_tiled_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,        \
                                         Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,         \
                                         const R* hi, const R* s, const R* t, const R* kk) { \
    R rh[CBN_ROT_BYTES / sizeof(R)], rs[CBN_ROT_BYTES / sizeof(R)], rt[CBN_ROT_BYTES / sizeof(R)]; \
    R rk[CBN_ROT_BYTES / sizeof(R)];                                                        \
    Py_ssize_t h = cbn_rot_head(dx, sizeof(R), ld, n, m), e = (n - 1) * ld + h;              \
    if (!cbn_rows_tile(ld, sizeof(R))) {                                                    \
        cbn_rows_dx_##SUFFIX(x, dy, y, dx, ld, n, m, hi, s, t, kk);                         \
    } else if (h) {                                                                         \
        CBN_ROTATE(rh, hi, m, h)                                                            \
        CBN_ROTATE(rs, s, m, h)                                                             \
        CBN_ROTATE(rt, t, m, h)                                                             \
        CBN_ROTATE(rk, kk, m, h)                                                            \
        cbn_rows_dx_##SUFFIX(x, dy, y, dx, ld, 1, h, hi, s, t, kk);                         \
        cbn_rows_dx_tiles_##SUFFIX(x + h, dy + h, y ? y + h : NULL, dx + h, ld, n - 1, m,   \
                                   rh, rs, rt, rk);                                         \
        cbn_rows_dx_##SUFFIX(x + e, dy + e, y ? y + e : NULL, dx + e, ld, 1, m - h, hi + h, \
                             s + h, t + h, kk + h);                                         \
    } else {                                                                                \
        cbn_rows_dx_tiles_##SUFFIX(x, dy, y, dx, ld, n, m, hi, s, t, kk);                   \
    }                                                                                       \
}
CBN_DEFINE_TILED_DX(f32, float)
CBN_DEFINE_TILED_DX(f64, double)
CBN_DEFINE_SHORT(f32, float)
CBN_DEFINE_SHORT(f64, double)
#else
#define CBN_CAN_STREAM 0
#define CBN_TILE_BYTES 0        /* no register tiles */
static inline void cbn_stream_fence(void) {}
#define cbn_run_affine_nt_f32 cbn_run_affine_f32
#define cbn_run_affine_nt_f64 cbn_run_affine_f64
#define cbn_rows_affine_nt_f32 cbn_rows_affine_f32
#define cbn_rows_affine_nt_f64 cbn_rows_affine_f64
#define cbn_run_dx_nt_f32 cbn_run_dx_f32
#define cbn_run_dx_nt_f64 cbn_run_dx_f64
#define cbn_rows_dx_nt_f32 cbn_rows_dx_f32
#define cbn_rows_dx_nt_f64 cbn_rows_dx_f64
#define cbn_rows_affine_tiled_f32 cbn_rows_affine_f32
#define cbn_rows_affine_tiled_f64 cbn_rows_affine_f64
#define cbn_rows_dx_tiled_f32 cbn_rows_dx_f32
#define cbn_rows_dx_tiled_f64 cbn_rows_dx_f64
/* the plain pass, one call per run */
#define cbn_run_affine_short_f32 cbn_run_affine_f32
#define cbn_run_affine_short_f64 cbn_run_affine_f64
#define cbn_run_dx_short_f32 cbn_run_dx_f32
#define cbn_run_dx_short_f64 cbn_run_dx_f64
#define CBN_DEFINE_SHORT(SUFFIX, R)                                                         \
static void cbn_runs_affine_short_##SUFFIX(const R* x, R* out, Py_ssize_t n, Py_ssize_t nr, \
                                           const R* hi, const R* s, const R* t, int relu) { \
    Py_ssize_t j;                                                                           \
    for (j = 0; j < nr; j++)                                                                \
        cbn_run_affine_##SUFFIX(x + j * n, out + j * n, n, hi[j], s[j], t[j], relu);        \
}                                                                                           \
static void cbn_runs_dx_short_##SUFFIX(const R* x, const R* dy, const R* y, R* dx,          \
                                       Py_ssize_t n, Py_ssize_t nr, const R* hi,            \
                                       const R* s, const R* t, const R* k) {                \
    Py_ssize_t j;                                                                           \
    for (j = 0; j < nr; j++)                                                                \
        cbn_run_dx_##SUFFIX(x + j * n, dy + j * n, y ? y + j * n : NULL, dx + j * n, n,     \
                            hi[j], s[j], t[j], k[j]);                                       \
}
CBN_DEFINE_SHORT(f32, float)
CBN_DEFINE_SHORT(f64, double)
#endif

/* Interleaved reductions: n rows of m channels, ld values apart, into per-channel sums
 * (s1[c], s2[c] += the sums above), two rows per step; the channel loop is vectorized
 * (`omp simd`: the sums of channel c never touch another channel's).  pf > 0: the
 * statistics prefetch, before each row, the bytes pf past its start (for data from
 * memory: _kernels.pyx PF_ROWS_BYTES).
 *
 *   cbn_rows_sums_T(x, ld, n, m, ref, s1, s2, pf):       d = x[., c] - ref[c]
 *   cbn_rows_gsums_T(x, dy, y, ld, n, m, mean, s1, s2):  g, g * (x[., c] - mean[c]), g = dy,
 *                                                        or 0 where y <= 0 (y not NULL)
 */

#define CBN_PLAIN(p, i) ((double)dy[(p) + (i)])
#define CBN_MASK(p, i) (y[(p) + (i)] <= 0 ? 0.0 : (double)dy[(p) + (i)])
/* n rows of backward sums, g = G(offset, channel) */
#define CBN_ROWS_GSUMS(G)                                                                   \
    for (r = 0; r < n; r++) {                                                               \
        p = r * ld;                                                                         \
        if (pf) {                                                                           \
            cbn_prefetch_ahead(x + p, pf, m * (Py_ssize_t)sizeof(*x));                      \
            cbn_prefetch_ahead(dy + p, pf, m * (Py_ssize_t)sizeof(*x));                     \
            if (y)                                                                          \
                cbn_prefetch_ahead(y + p, pf, m * (Py_ssize_t)sizeof(*x));                  \
        }                                                                                   \
        CBN_SIMD_LANES                                                                      \
        for (c = 0; c < m; c++) {                                                           \
            double g = G(p, c);                                                             \
            s1[c] += g;                                                                     \
            s2[c] += g * ((double)x[p + c] - mean[c]);                                      \
        }                                                                                   \
    }

/* One row per step: with two (rows r and r + 1 in one loop) the loop ran 2-3x slower
 * on data from memory once rows are 512 bytes or more (measured, 51 MB of float32 in
 * rows of 128-512 channels), and at most 1.07x faster on data in cache. */
#define CBN_DEFINE_ROW_SUMS(SUFFIX, T)                                                      \
CBN_PASS void cbn_rows_sums_##SUFFIX(const T* x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m, \
                                     const double* ref, double* s1, double* s2,             \
                                     Py_ssize_t pf) {                                       \
    Py_ssize_t r, c;                                                                        \
    for (r = 0; r < n; r++) {                                                               \
        const T* a = x + r * ld;                                                            \
        if (pf)                                                                             \
            cbn_prefetch_ahead(a, pf, m * (Py_ssize_t)sizeof(T));                           \
        CBN_SIMD_LANES                                                                      \
        for (c = 0; c < m; c++) {                                                           \
            double d = (double)a[c] - ref[c];                                               \
            s1[c] += d;                                                                     \
            s2[c] += d * d;                                                                 \
        }                                                                                   \
    }                                                                                       \
}                                                                                           \
CBN_PASS void cbn_rows_gsums_##SUFFIX(const T* x, const T* dy, const T* y, Py_ssize_t ld,   \
                                      Py_ssize_t n, Py_ssize_t m, const double* mean,       \
                                      double* s1, double* s2, Py_ssize_t pf) {              \
    Py_ssize_t r, c, p;                                                                     \
    if (y) {                                                                                \
        CBN_ROWS_GSUMS(CBN_MASK)                                                            \
    } else {                                                                                \
        CBN_ROWS_GSUMS(CBN_PLAIN)                                                           \
    }                                                                                       \
}
CBN_DEFINE_ROW_SUMS(f32, float)
CBN_DEFINE_ROW_SUMS(f64, double)

/* float32 backward sums over interleaved rows, in float32: per channel, g and
 * g * (x - rf) (rf: the mean rounded to float32) summed over groups of CBN_GSUMS32_GROUP
 * rows, two rows per step (the first row of a group sets the partials), before float64
 * takes them, with the mean's remainder L = mean - rf put back per group: sum g (x - mean)
 * = sum g (x - rf) - L sum g.  At most 11 float32 roundings per value (the subtraction
 * when it is not exact, the product, the pair's sum, 8 chained additions).  Each row is
 * read in order along the channels, CBN_GSUMS32_CHUNK channels at a time (the partials,
 * 6 KB on the stack, stay in L1; against 1024 at a time this took 0.93-1.04x the time,
 * 256 0.95-1.07x, rows of 512-2048 channels); the two loops (with and without the mask) are
 * vectorized by the compiler in both builds.  The float64 loops this replaces converted
 * every value of x and dy (vcvtps2pd: 4 floats per cycle on AMD Zen 4), twice the
 * vector work: against them this takes 0.76-0.98 of a whole backward call's time
 * (_kernels.pyx _rows_sums has the measurements).  Rows that the eight-row loop takes
 * (cbn_rows_gsums8_f32) keep it: there this took 1.5-1.6x the time (32768x128). */
#define CBN_GSUMS32_CHUNK 512
#define CBN_GSUMS32_GROUP 16
#define CBN_G32_PLAIN(p) dy[(p) + c]
#define CBN_G32_MASK(p) (!(y[(p) + c] <= 0.0f) ? dy[(p) + c] : 0.0f)
/* row offset p0 (SET: = or +=), or the rows at p0 and p1 (+=), into a and q */
#define CBN_G32_ROW(G, SET)                                                                 \
    CBN_SIMD_LANES                                                                          \
    for (c = 0; c < w; c++) {                                                               \
        const float g0 = G(p0);                                                             \
        a[c] SET g0;                                                                        \
        q[c] SET g0 * (x[p0 + c] - rf[c]);                                                  \
    }
#define CBN_G32_PAIR(G)                                                                     \
    CBN_SIMD_LANES                                                                          \
    for (c = 0; c < w; c++) {                                                               \
        const float g0 = G(p0), g1 = G(p1);                                                 \
        a[c] += g0 + g1;                                                                    \
        q[c] += g0 * (x[p0 + c] - rf[c]) + g1 * (x[p1 + c] - rf[c]);                        \
    }
#define CBN_GSUMS32(G)                                                                      \
    for (r = 0; r < n; r = e) {                                                             \
        e = n - r < CBN_GSUMS32_GROUP ? n : r + CBN_GSUMS32_GROUP;                          \
        p0 = r * ld;                                                                        \
        CBN_G32_ROW(G, =)                                                                   \
        for (r++; r + 2 <= e; r += 2) {                                                     \
            p0 = r * ld;                                                                    \
            p1 = p0 + ld;                                                                   \
            CBN_G32_PAIR(G)                                                                 \
        }                                                                                   \
        if (r < e) {                                                                        \
            p0 = r * ld;                                                                    \
            CBN_G32_ROW(G, +=)                                                              \
        }                                                                                   \
        CBN_SIMD_LANES                                                                      \
        for (c = 0; c < w; c++) {                                                           \
            const double A = a[c];                                                          \
            s1[c] += A;                                                                     \
            s2[c] += (double)q[c] - (mean[c] - (double)rf[c]) * A;                          \
        }                                                                                   \
    }
CBN_PASS void cbn_rows_gsums32_f32(const float* x, const float* dy, const float* y,
                                   Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                   const double* mean, double* s1, double* s2) {
    float rf[CBN_GSUMS32_CHUNK], a[CBN_GSUMS32_CHUNK], q[CBN_GSUMS32_CHUNK];
    Py_ssize_t w, r, e, c, p0, p1;
    for (; m > 0; m -= w, x += w, dy += w, y = y ? y + w : NULL, mean += w, s1 += w, s2 += w) {
        w = m < CBN_GSUMS32_CHUNK ? m : CBN_GSUMS32_CHUNK;
        for (c = 0; c < w; c++)
            rf[c] = (float)mean[c];
        if (y) {
            CBN_GSUMS32(CBN_G32_MASK)
        } else {
            CBN_GSUMS32(CBN_G32_PLAIN)
        }
    }
}

#if defined(__AVX2__) && defined(__FMA__)
/* float32 with AVX2 (float16: cbn_tiles32_f16 below): tiles of 8 channels whose sums
 * stay in registers while the rows go past (no per-row loads and stores of the partial
 * sums).
 * Measured against the lanes loop: 1.1-1.4x faster on data in cache, 0.6x on data from
 * memory in rows of 64 channels (the tile walks the rows with a stride, which the
 * prefetchers follow worse), but 1.3-2x faster from memory in rows of 1024 channels or
 * more (the lanes loop's per-channel sums no longer stay in L1), so the kernels choose
 * them by size and width (_kernels.pyx TILED_MAX, WIDE_TILES).  float16's lanes loop
 * converts rows to float32 blocks first, and there the tiles win from memory too,
 * walking a few rows at a time (CBN_HWALK, cbn_hwalk_stats). */
/* rows per tile walk: all of them for short rows; for rows of 512 floats or more,
 * whose 2 KB+ strides map a tile's rows to few L1 sets, as many as an 8-way L1 holds
 * for the arrays read (8 rows of x; 4 of x and dy; 2 of x, dy and y) */
#define CBN_TILE_ROWS(ld, k) ((ld) < 512 ? (Py_ssize_t)1 << 30 : (Py_ssize_t)(8 / (k)))
#define CBN_LD4D(p) _mm256_cvtps_pd(_mm_loadu_ps(p))
static inline void cbn_add4(double* s, __m256d v) {
    _mm256_storeu_pd(s, _mm256_add_pd(_mm256_loadu_pd(s), v));
}
/* a tile's sums into s1[0:8] (a0, a1) and s2[0:8] (q0, q1) */
static inline void cbn_add_tile(double* s1, double* s2, __m256d a0, __m256d a1, __m256d q0,
                                __m256d q1) {
    cbn_add4(s1, a0);
    cbn_add4(s1 + 4, a1);
    cbn_add4(s2, q0);
    cbn_add4(s2 + 4, q1);
}

/* LD8(p, a, b): a, b = the 8 values at p as two vectors of 4 doubles */
#define CBN_LD8D_F32(p, a, b) { a = CBN_LD4D(p); b = CBN_LD4D((p) + 4); }
/* one row of a tile: A0, A1 += d, Q0, Q1 += d * d with d = the 8 values at x + o - (R0, R1) */
#define CBN_TILE_ROW(LD8, o, A0, A1, Q0, Q1)                                                \
    {                                                                                       \
        __m256d d0_, d1_;                                                                   \
        LD8(x + (o), d0_, d1_)                                                              \
        d0_ = _mm256_sub_pd(d0_, R0);                                                       \
        d1_ = _mm256_sub_pd(d1_, R1);                                                       \
        A0 = CBN_FADD(A0, d0_);                                                             \
        A1 = CBN_FADD(A1, d1_);                                                             \
        Q0 = _mm256_fmadd_pd(d0_, d0_, Q0);                                                 \
        Q1 = _mm256_fmadd_pd(d1_, d1_, Q1);                                                 \
    }
/* A tile's walk down rows r0 .. r0 + nb - 1 from offset o (channel c) with ROW, then its
 * sums into s1[c:c+8], s2[c:c+8].  Even and odd rows go into separate sums (added at
 * the end of the walk): one chain of dependent adds per row would leave the sums
 * waiting on the FMA's latency. */
#define CBN_TILE_WALK(ROW, LD8)                                                             \
    {                                                                                       \
        const __m256d Z_ = _mm256_setzero_pd();                                             \
        __m256d a0 = Z_, a1 = Z_, q0 = Z_, q1 = Z_, b0 = Z_, b1 = Z_, w0 = Z_, w1 = Z_;     \
        for (r = 0; r + 1 < nb; r += 2, o += 2 * ld) {                                      \
            ROW(LD8, o, a0, a1, q0, q1)                                                     \
            ROW(LD8, o + ld, b0, b1, w0, w1)                                                \
        }                                                                                   \
        if (r < nb)                                                                         \
            ROW(LD8, o, a0, a1, q0, q1)                                                     \
        cbn_add_tile(s1 + c, s2 + c, _mm256_add_pd(a0, b0), _mm256_add_pd(a1, b1),         \
                     _mm256_add_pd(q0, w0), _mm256_add_pd(q1, w1));                         \
    }
#define CBN_DEFINE_TILED_SUMS(SUFFIX, T, LD8)                                               \
CBN_PASS void cbn_rows_sums_tiled_##SUFFIX(const T* x, Py_ssize_t ld, Py_ssize_t n,         \
                                           Py_ssize_t m, const double* ref, double* s1,     \
                                           double* s2) {                                    \
    Py_ssize_t c, r, r0, nb, o;                                                             \
    for (r0 = 0; r0 < n; r0 += nb) {                                                        \
        nb = n - r0 < CBN_TILE_ROWS(ld, 1) ? n - r0 : CBN_TILE_ROWS(ld, 1);                 \
        for (c = 0; c + 8 <= m; c += 8) {                                                   \
            const __m256d R0 = _mm256_loadu_pd(ref + c), R1 = _mm256_loadu_pd(ref + c + 4); \
            o = r0 * ld + c;                                                                \
            CBN_TILE_WALK(CBN_TILE_ROW, LD8)                                                \
        }                                                                                   \
        if (c < m)                                                                          \
            cbn_rows_sums_##SUFFIX(x + r0 * ld + c, ld, nb, m - c, ref + c, s1 + c, s2 + c, \
                                   0);                                                      \
    }                                                                                       \
}
CBN_DEFINE_TILED_SUMS(f32, float, CBN_LD8D_F32)
/* Statistics in tiles of 16 channels (a cache line of each row; four vectors of doubles
 * per sum, the references read from L1) walking `walk` rows at a time, the last m % 16
 * channels in the 8-channel tiles above.  _kernels.pyx takes them on AMD Zen 4 for data
 * in cache (_t16, with the measurements), where they are quicker than the 8-channel tiles
 * and the eight-row loop (bench/probes/rows_walk.c). */
#define CBN_T16_DEV(k, A, Q)                                                                \
    {                                                                                       \
        const __m256d d_ = _mm256_sub_pd(CBN_LD4D(p + (k)), _mm256_loadu_pd(ref + c + (k)));\
        A = CBN_FADD(A, d_);                                                                \
        Q = _mm256_fmadd_pd(d_, d_, Q);                                                     \
    }
CBN_PASS void cbn_rows_sums16_f32(const float* x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                  const double* ref, double* s1, double* s2, Py_ssize_t walk) {
    Py_ssize_t c, r, r0, nb, m16 = m & ~(Py_ssize_t)15;
    for (r0 = 0; r0 < n; r0 += nb) {
        nb = n - r0 < walk ? n - r0 : walk;
        for (c = 0; c < m16; c += 16) {
            const __m256d Z = _mm256_setzero_pd();
            __m256d a0 = Z, a1 = Z, a2 = Z, a3 = Z, q0 = Z, q1 = Z, q2 = Z, q3 = Z;
            const float* p = x + r0 * ld + c;
            for (r = 0; r < nb; r++, p += ld) {
                CBN_T16_DEV(0, a0, q0)
                CBN_T16_DEV(4, a1, q1)
                CBN_T16_DEV(8, a2, q2)
                CBN_T16_DEV(12, a3, q3)
            }
            cbn_add_tile(s1 + c, s2 + c, a0, a1, q0, q1);
            cbn_add_tile(s1 + c + 8, s2 + c + 8, a2, a3, q2, q3);
        }
    }
    if (m16 < m)
        cbn_rows_sums_tiled_f32(x + m16, ld, n, m - m16, ref + m16, s1 + m16, s2 + m16);
}
/* Eight rows per step along the channels, four channels at a time: the eight deviations
 * of a channel are added in a tree before they meet its sums in memory, so the sums
 * are loaded and stored once per eight rows (that traffic bounds the one-row loop)
 * and the rows stream past in order (the tiles walk them with a stride).  The last
 * m % 4 channels and n % 8 rows take the one-row loop.  The trees add as FMAs
 * (CBN_FADD), the deviations and the sums in memory plainly: the conversions and
 * subtractions fill the addition pipes (as in cbn_sums_f32).  Measured in a C loop on
 * a 2-core AMD EPYC VM (Zen 5), one thread, TSC ticks per 32 values, rows of 32-256
 * channels in L2, this / the trees' plain additions: 5.4-5.6 / 6.4-6.5 (the backward
 * sums below, their g trees so: 6.7-6.9 / 8.1-8.3); 3.1 MB: 5.9 / 6.8 (7.1 / 9.5). */
/* The eight-row loops (statistics and backward sums) are written once over the vector
 * macros CBN_V*: defined here for AVX2 vectors of 4 channels (CBN_W), redefined below
 * for AVX-512F ones of 8.  CBN_VLD: 4 (8) floats as doubles; CBN_VLDD: doubles; CBN_VACC:
 * a vector added into doubles in memory; CBN_VMASK(y, g): g where y > 0 or NaN, else 0;
 * CBN_VPF(c) / CBN_VPFG(c): a step's prefetches (below). */
#define CBN_V __m256d
#define CBN_W 4
#define CBN_VLD CBN_LD4D
#define CBN_VLDD _mm256_loadu_pd
#define CBN_VSUB _mm256_sub_pd
#define CBN_VADD _mm256_add_pd
#define CBN_VMUL _mm256_mul_pd
#define CBN_VMADD _mm256_fmadd_pd
#define CBN_VFADD CBN_FADD
#define CBN_VFSUB CBN_FSUB
#define CBN_VACC cbn_add4
#define CBN_VZERO _mm256_setzero_pd
#define CBN_VMASK(y, g) _mm256_and_pd(_mm256_cmp_pd(y, Z, _CMP_NLE_UQ), g)
#define CBN_VPF(c) CBN_PF8(a, c)
#define CBN_VPFG(c) CBN_PF8G(c, float, 4)
#define CBN_VDEV(k) CBN_VSUB(CBN_VLD(a + (k) * ld + c), R)
#define CBN_VSQ2(u, v) CBN_VMADD(v, v, CBN_VMUL(u, u))
/* Beyond L2 (pf: the bytes of the rows' channels read ahead, else 0) the eight-row
 * loops prefetch a stream `ahead` values on (rows: a multiple of 8, about pf bytes of
 * reading ahead): in each step of 4 channels, the two lines of the 16-channel block
 * they lie in of rows 2j and 2j + 1 of the eight there, j = (c / 4) % 4, so that four
 * steps cover the block's eight lines, one line per line read (a block's prefetches at once
 * stall the loop on full fill buffers), and the same lines `ahead` values further on
 * into L2 only (T1), which keeps more lines in flight than the L1's fill buffers
 * allow.  Measured from memory (evicted before each call), 25.7 MB, 2 threads, 2-core
 * Intel Xeon VM, separate builds, with / without the L2 stream: float16 statistics
 * 0.85-0.92 (64 and 128 channels), training 0.92-0.97, backward 0.99-1.01; float32
 * statistics 0.80-0.89, training 0.92-0.94, backward 0.97-0.99; with the arrays in
 * L3 0.96-1.04.  The addresses are formed as integers: past the array's end they are
 * only prefetched. */
/* (rb: the bytes of a row's channels) */
#define CBN_ROWS8_AHEAD(pf, rb) ((pf) ? 8 * (((pf) + 8 * (rb) - 1) / (8 * (rb))) : 0)
/* (T: the element type, S: channels per step, 4 S per line; CBN_PF8: float32's) */
#define CBN_PF8T(p, c, T, S)                                                                \
    {                                                                                       \
        uintptr_t b_ = (uintptr_t)(p) +                                                     \
                       (uintptr_t)((ahead + ((c) & ~(Py_ssize_t)(4 * (S) - 1)) +            \
                                    (((c) / (S)) & 3) * 2 * ld) * (Py_ssize_t)sizeof(T));   \
        _mm_prefetch((const char*)b_, _MM_HINT_T0);                                         \
        _mm_prefetch((const char*)(b_ + (uintptr_t)(ld * (Py_ssize_t)sizeof(T))),           \
                     _MM_HINT_T0);                                                          \
        b_ += (uintptr_t)(ahead * (Py_ssize_t)sizeof(T));                                   \
        _mm_prefetch((const char*)b_, _MM_HINT_T1);                                         \
        _mm_prefetch((const char*)(b_ + (uintptr_t)(ld * (Py_ssize_t)sizeof(T))),           \
                     _MM_HINT_T1);                                                          \
    }
#define CBN_PF8(p, c) CBN_PF8T(p, c, float, 4)
/* the backward loops' prefetch: rows xr, gr and (masked) yr of x, dy and y */
#define CBN_PF8G(c, T, S)                                                                   \
    if (ahead) {                                                                            \
        CBN_PF8T(xr, c, T, S)                                                               \
        CBN_PF8T(gr, c, T, S)                                                               \
        if (yr)                                                                             \
            CBN_PF8T(yr, c, T, S)                                                           \
    }
/* a step's eight deviations DEV(0) .. DEV(7) (vectors of type V), their sum added in a
 * tree into S and their squares' into Q (ADD: the tree's addition; SQ2(u, v): u^2 + v^2) */
#define CBN_TREE8(V, DEV, ADD, SQ2, S, Q)                                                   \
    V d0 = DEV(0), d1 = DEV(1), d2 = DEV(2), d3 = DEV(3);                                   \
    V d4 = DEV(4), d5 = DEV(5), d6 = DEV(6), d7 = DEV(7);                                   \
    V S = ADD(ADD(ADD(d0, d1), ADD(d2, d3)), ADD(ADD(d4, d5), ADD(d6, d7)));                \
    V Q = ADD(ADD(SQ2(d0, d1), SQ2(d2, d3)), ADD(SQ2(d4, d5), SQ2(d6, d7)));
/* the statistics' eight-row steps over rows 0 .. n8 - 1 and channels 0 .. mw - 1 */
#define CBN_SUMS8_STEPS                                                                     \
    for (r = 0; r < n8; r += 8) {                                                           \
        const float* a = x + r * ld;                                                        \
        for (c = 0; c < mw; c += CBN_W) {                                                   \
            const CBN_V R = CBN_VLDD(ref + c);                                              \
            if (ahead)                                                                      \
                CBN_VPF(c)                                                                  \
            CBN_TREE8(CBN_V, CBN_VDEV, CBN_VFADD, CBN_VSQ2, s, q)                           \
            CBN_VACC(s1 + c, s);                                                            \
            CBN_VACC(s2 + c, q);                                                            \
        }                                                                                   \
    }
CBN_PASS void cbn_rows_sums8_f32(const float* x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                 const double* ref, double* s1, double* s2, Py_ssize_t pf) {
    Py_ssize_t r, c, mw = m & ~(Py_ssize_t)3, n8 = n & ~(Py_ssize_t)7;
    Py_ssize_t ahead = CBN_ROWS8_AHEAD(pf, m * (Py_ssize_t)sizeof(float)) * ld;
    CBN_SUMS8_STEPS
    if (mw < m)
        cbn_rows_sums_f32(x + mw, ld, n8, m - mw, ref + mw, s1 + mw, s2 + mw, 0);
    if (n8 < n)
        cbn_rows_sums_f32(x + n8 * ld, ld, n - n8, m, ref, s1, s2, 0);
}
/* The same for the backward sums: g = dy, or with y (the ReLU-masked sums) 0 where
 * y <= 0 (NaN y keeps dy).  _kernels.pyx sends masked sums here on Zen 5 only (on an
 * Intel Xeon, three arrays from memory were more streams than its prefetchers follow). */
/* (xr, gr, yr: the rows r .. r + 7 of x, dy, y) */
#define CBN_GQ(k, o) CBN_VMUL(g##k, CBN_VFSUB(CBN_VLD(xr + ((o) + k) * ld + c), M))
#define CBN_G4(k, o) CBN_VLD(gr + ((o) + k) * ld + c)
#define CBN_G4_MASKED(k, o) CBN_VMASK(CBN_VLD(yr + ((o) + k) * ld + c), CBN_G4(k, o))
/* rows o .. o + 3: A, Q = the sums of their g (G(k, o) for row o + k) and g * (x - mean) */
#define CBN_GHALF(G, o, A, Q)                                                               \
    {                                                                                       \
        CBN_V g0 = G(0, o), g1 = G(1, o), g2 = G(2, o), g3 = G(3, o);                       \
        A = CBN_VFADD(CBN_VFADD(g0, g1), CBN_VFADD(g2, g3));                                \
        Q = CBN_VADD(CBN_VADD(CBN_GQ(0, o), CBN_GQ(1, o)),                                  \
                     CBN_VADD(CBN_GQ(2, o), CBN_GQ(3, o)));                                 \
    }
/* the sums over rows 0 .. n8 - 1, channels 0 .. mw - 1 */
#define CBN_GSUMS8(G)                                                                       \
    for (r = 0; r < n8; r += 8) {                                                           \
        const float *xr = x + r * ld, *gr = dy + r * ld, *yr = y ? y + r * ld : NULL;       \
        for (c = 0; c < mw; c += CBN_W) {                                                   \
            const CBN_V M = CBN_VLDD(mean + c);                                             \
            CBN_VPFG(c)                                                                     \
            CBN_V a0, q0, a1, q1;                                                           \
            CBN_GHALF(G, 0, a0, q0)                                                         \
            CBN_GHALF(G, 4, a1, q1)                                                         \
            CBN_VACC(s1 + c, CBN_VADD(a0, a1));                                             \
            CBN_VACC(s2 + c, CBN_VADD(q0, q1));                                             \
        }                                                                                   \
    }
/* the body of both widths' backward sums (mw: the channels they take eight rows at a
 * time; the rest of the rows and channels as the AVX2 loop leaves them) */
#define CBN_GSUMS8_BODY(MW)                                                                 \
    const CBN_V Z = CBN_VZERO();                                                            \
    Py_ssize_t r, c, mw = MW, n8 = n & ~(Py_ssize_t)7;                                      \
    Py_ssize_t ahead = CBN_ROWS8_AHEAD(pf, m * (Py_ssize_t)sizeof(float)) * ld;             \
    if (y)                                                                                  \
        CBN_GSUMS8(CBN_G4_MASKED)                                                           \
    else                                                                                    \
        CBN_GSUMS8(CBN_G4)
CBN_PASS void cbn_rows_gsums8_f32(const float* x, const float* dy, const float* y,
                                  Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                  const double* mean, double* s1, double* s2, Py_ssize_t pf) {
    CBN_GSUMS8_BODY(m & ~(Py_ssize_t)3)
    if (mw < m)
        cbn_rows_gsums_f32(x + mw, dy + mw, y ? y + mw : NULL, ld, n8, m - mw, mean + mw,
                           s1 + mw, s2 + mw, 0);
    if (n8 < n)
        cbn_rows_gsums_f32(x + n8 * ld, dy + n8 * ld, y ? y + n8 * ld : NULL, ld, n - n8, m,
                           mean, s1, s2, 0);
}
/* The eight-row statistics and backward sums again, with AVX-512F vectors of 8
 * channels: in the AVX2 build (GCC and clang), run only where cbn_cpu_runs_avx512f()
 * and _kernels.pyx choose it (_sums512).  Lane for lane they perform the AVX2 loops'
 * operations in the same order, so the sums are bit-identical (the tests compare the
 * two).  On Zen 5, which executes 512-bit operations at full width, the statistics are
 * bound by their floating-point operations, which each do twice the work: C loop, one
 * thread, rows in L1/L2/L3, this / the AVX2 loop: 128x1024 0.68, 16x1024 0.70,
 * 1024x256 0.69, 12544x32 0.69. */
#if defined(__GNUC__) || defined(__clang__)
#define CBN_HAVE_SUMS512 1
/* AVX-512F code inside the AVX2 build (run only where _kernels.pyx chooses it) */
#define CBN_T512 __attribute__((target("avx512f")))
/* as cbn_add4, 8 doubles */
CBN_T512 static inline void cbn_add8(double* s, __m512d v) {
    _mm512_storeu_pd(s, _mm512_add_pd(_mm512_loadu_pd(s), v));
}
#undef CBN_V
#undef CBN_W
#undef CBN_VLD
#undef CBN_VLDD
#undef CBN_VSUB
#undef CBN_VADD
#undef CBN_VMUL
#undef CBN_VMADD
#undef CBN_VFADD
#undef CBN_VFSUB
#undef CBN_VACC
#undef CBN_VZERO
#undef CBN_VMASK
#undef CBN_VPF
#undef CBN_VPFG
#define CBN_V __m512d
#define CBN_W 8
#define CBN_VLD(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define CBN_VLDD _mm512_loadu_pd
#define CBN_VSUB _mm512_sub_pd
#define CBN_VADD _mm512_add_pd
#define CBN_VMUL _mm512_mul_pd
#define CBN_VMADD _mm512_fmadd_pd
#define CBN_VFADD(a, b) _mm512_fmadd_pd(a, _mm512_set1_pd(1.0), b)
#define CBN_VFSUB(a, b) _mm512_fmsub_pd(a, _mm512_set1_pd(1.0), b)
#define CBN_VACC cbn_add8
#define CBN_VZERO _mm512_setzero_pd
#define CBN_VMASK(y, g) _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(y, Z, _CMP_NLE_UQ), g)
/* the prefetches of the AVX2 loop's two steps */
#define CBN_VPF(c) { CBN_PF8(a, c) CBN_PF8(a, (c) + 4) }
#define CBN_VPFG(c) CBN_PF8G(c, float, 4) CBN_PF8G((c) + 4, float, 4)
CBN_T512 CBN_PASS void cbn_rows_sums8_f32_512(
    const float* x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m, const double* ref,
    double* s1, double* s2, Py_ssize_t pf) {
    Py_ssize_t r, c, mw = m & ~(Py_ssize_t)7, n8 = n & ~(Py_ssize_t)7;
    Py_ssize_t ahead = CBN_ROWS8_AHEAD(pf, m * (Py_ssize_t)sizeof(float)) * ld;
    CBN_SUMS8_STEPS
    if (mw < m)
        cbn_rows_sums8_f32(x + mw, ld, n, m - mw, ref + mw, s1 + mw, s2 + mw, pf);
    if (n8 < n && mw)
        cbn_rows_sums_f32(x + n8 * ld, ld, n - n8, mw, ref, s1, s2, 0);
}
CBN_T512 CBN_PASS void cbn_rows_gsums8_f32_512(
    const float* x, const float* dy, const float* y, Py_ssize_t ld, Py_ssize_t n,
    Py_ssize_t m, const double* mean, double* s1, double* s2, Py_ssize_t pf) {
    CBN_GSUMS8_BODY(m & ~(Py_ssize_t)7)
    if (mw < m)
        cbn_rows_gsums8_f32(x + mw, dy + mw, y ? y + mw : NULL, ld, n, m - mw, mean + mw,
                            s1 + mw, s2 + mw, pf);
    if (n8 < n && mw)
        cbn_rows_gsums_f32(x + n8 * ld, dy + n8 * ld, y ? y + n8 * ld : NULL, ld, n - n8, mw,
                           mean, s1, s2, 0);
}
/* The float32 and float64 statistics and backward sums over rows of 64 channels (rows
 * of 64 channels, and the folded rows of 1, 2, 4, 8, 16 and 32), a row at a time in
 * AVX-512F vectors: the 64 channels' two sums and references stay in 24 of the 32
 * registers, so that the rows are read as one stream, one load per 8 values and array
 * and no sums stored until the call's end.  The eight-row loops walk 8 rows at a time,
 * 256 bytes apart, and add into the sums in memory after each step.  _kernels.pyx takes
 * these on Zen 5 (_sums_reg).  They add the rows one after the other (a call: at most
 * ROW_BLOCK rows, _task_reduce), not in the eight-row trees: the sums are not
 * bit-identical to those loops'. */
#define CBN_LD8D(p) _mm512_cvtps_pd(_mm256_loadu_ps(p))
#define CBN_EACH4(STEP) STEP(0) STEP(1) STEP(2) STEP(3)
#define CBN_EACH8(STEP) CBN_EACH4(STEP) STEP(4) STEP(5) STEP(6) STEP(7)
#define CBN_RSUM(q)                                                                         \
    {                                                                                       \
        const __m512d d_ = _mm512_sub_pd(CBN_LD8D(x + 8 * (q)), M[q]);                      \
        A[q] = _mm512_add_pd(A[q], d_);                                                     \
        B[q] = _mm512_fmadd_pd(d_, d_, B[q]);                                               \
    }
/* g, as in the eight-row loops: dy, or 0 where y <= 0 (NaN y keeps dy) */
#define CBN_RG(q) CBN_LD8D(dy + 8 * (q))
#define CBN_RG_MASKED(q)                                                                    \
    _mm512_maskz_mov_pd(_mm512_cmp_pd_mask(CBN_LD8D(y + 8 * (q)), Z, _CMP_NLE_UQ), CBN_RG(q))
#define CBN_RGSUM(G, q)                                                                     \
    {                                                                                       \
        const __m512d g_ = G(q);                                                            \
        A[q] = _mm512_add_pd(A[q], g_);                                                     \
        B[q] = _mm512_fmadd_pd(g_, _mm512_sub_pd(CBN_LD8D(x + 8 * (q)), M[q]), B[q]);       \
    }
#define CBN_RGSUM_PLAIN(q) CBN_RGSUM(CBN_RG, q)
#define CBN_RGSUM_MASKED(q) CBN_RGSUM(CBN_RG_MASKED, q)
/* the sums' start (the references ref in M, the sums A, B at 0) and end (added into s1,
 * s2) */
#define CBN_RSUMS_START                                                                     \
    const __m512d Z = _mm512_setzero_pd();                                                  \
    __m512d M[8], A[8], B[8];                                                               \
    Py_ssize_t r, q;                                                                        \
    for (q = 0; q < 8; q++) {                                                               \
        M[q] = _mm512_loadu_pd(ref + 8 * q);                                                \
        A[q] = B[q] = Z;                                                                    \
    }
#define CBN_RSUMS_END                                                                       \
    for (q = 0; q < 8; q++) {                                                               \
        cbn_add8(s1 + 8 * q, A[q]);                                                         \
        cbn_add8(s2 + 8 * q, B[q]);                                                         \
    }
/* (CBN_LD8D: 8 values of x, dy or y as doubles; T: their type) */
#define CBN_DEFINE_ROWS64(SUFFIX, T)                                                        \
CBN_T512 CBN_PASS void cbn_rows64_sums_##SUFFIX##_512(const T* x, Py_ssize_t ld,            \
                                                       Py_ssize_t n, const double* ref,     \
                                                       double* s1, double* s2) {            \
    CBN_RSUMS_START                                                                         \
    for (r = 0; r < n; r++, x += ld) {                                                      \
        CBN_EACH8(CBN_RSUM)                                                                 \
    }                                                                                       \
    CBN_RSUMS_END                                                                           \
}                                                                                           \
/* (ref: the means) */                                                                      \
CBN_T512 CBN_PASS void cbn_rows64_gsums_##SUFFIX##_512(const T* x, const T* dy,             \
                                                        const T* y, Py_ssize_t ld,          \
                                                        Py_ssize_t n, const double* ref,    \
                                                        double* s1, double* s2) {           \
    CBN_RSUMS_START                                                                         \
    if (y) {                                                                                \
        for (r = 0; r < n; r++, x += ld, dy += ld, y += ld) {                               \
            CBN_EACH8(CBN_RGSUM_MASKED)                                                     \
        }                                                                                   \
    } else {                                                                                \
        for (r = 0; r < n; r++, x += ld, dy += ld) {                                        \
            CBN_EACH8(CBN_RGSUM_PLAIN)                                                      \
        }                                                                                   \
    }                                                                                       \
    CBN_RSUMS_END                                                                           \
}
CBN_DEFINE_ROWS64(f32, float)
#undef CBN_LD8D
#define CBN_LD8D(p) _mm512_loadu_pd(p)
CBN_DEFINE_ROWS64(f64, double)
#endif
#else
#define cbn_rows_sums_tiled_f32(...) cbn_rows_sums_f32(__VA_ARGS__, 0)
#define cbn_rows_sums16_f32(x, ld, n, m, ref, s1, s2, walk) \
    cbn_rows_sums_f32(x, ld, n, m, ref, s1, s2, 0)
#define cbn_rows_sums8_f32 cbn_rows_sums_f32
#define cbn_rows_gsums8_f32 cbn_rows_gsums_f32
#endif
#if !defined(CBN_HAVE_SUMS512)
#define cbn_rows_sums8_f32_512 cbn_rows_sums8_f32
#define cbn_rows_gsums8_f32_512 cbn_rows_gsums8_f32
#define cbn_rows64_sums_f32_512(x, ld, n, ref, s1, s2) \
    cbn_rows_sums_f32(x, ld, n, 64, ref, s1, s2, 0)
#define cbn_rows64_gsums_f32_512(x, dy, y, ld, n, mean, s1, s2) \
    cbn_rows_gsums_f32(x, dy, y, ld, n, 64, mean, s1, s2, 0)
#define cbn_rows64_sums_f64_512(x, ld, n, ref, s1, s2) \
    cbn_rows_sums_f64(x, ld, n, 64, ref, s1, s2, 0)
#define cbn_rows64_gsums_f64_512(x, dy, y, ld, n, mean, s1, s2) \
    cbn_rows_gsums_f64(x, dy, y, ld, n, 64, mean, s1, s2, 0)
#endif

/* ------------------------------------------------------------------ float16
 * The same primitives for float16 data, computed in float32 (rounded once on store):
 * blocks of up to CBN_HCHUNK values are converted to float32 and given to the float32
 * primitive.  With F16C and FMA (the AVX2 build) the output passes convert 8 values
 * at a time in registers instead, with no block buffer, and the planar sums are
 * cbn_sums_f16 / cbn_gsums_f16 above (float32 partial sums per lane).
 */
#define CBN_HBLOCKS(n, BODY)                                                                \
    {                                                                                       \
        Py_ssize_t b_, w_;                                                                  \
        for (b_ = 0; b_ < (n); b_ += w_) {                                                  \
            w_ = (n) - b_ < CBN_HCHUNK ? (n) - b_ : CBN_HCHUNK;                             \
            BODY                                                                            \
        }                                                                                   \
    }

#if !defined(CBN_SUMS_F16_HW)
static inline void cbn_sums_f16(const cbn_half* x, Py_ssize_t n, double ref, double* acc) {
    float bx[CBN_HCHUNK];
    CBN_HBLOCKS(n, cbn_h2f_n(x + b_, bx, w_); cbn_sums_f32(bx, w_, ref, acc);)
}

static inline void cbn_gsums_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                 Py_ssize_t n, double mean, double* acc) {
    float bx[CBN_HCHUNK], bg[CBN_HCHUNK], by[CBN_HCHUNK];
    CBN_HBLOCKS(n, cbn_h2f_n(x + b_, bx, w_); cbn_h2f_n(dy + b_, bg, w_);
                   if (y) cbn_h2f_n(y + b_, by, w_);
                   cbn_gsums_f32(bx, bg, y ? by : NULL, w_, mean, acc);)
}
CBN_DEFINE_RUNS_SUMS_EACH(f16, cbn_half)
CBN_DEFINE_PF_SUMS_EACH(f16, cbn_half)
#endif

/* Rows of at most CBN_HCHUNK / 2 values (the channels the tiles leave, m % 8 or
 * m % 16) go CBN_HCHUNK / m rows per float32 block and call, not one row per call:
 * the same sums in the same order (the float32 loops add row after row).  Measured in
 * one process (2-core AMD EPYC VM, Zen 5), float16 channels-last, this / a call per
 * row, 1 and 2 threads: 1x100x89x89 statistics 0.70 and 0.71, training 0.84 and 0.81,
 * backward 0.89 and 0.89; 1x101x89x89 statistics 0.71 and 0.78; rows the tiles take
 * whole (1x96x89x89) 1.00 and 1.00. */
static inline Py_ssize_t cbn_hrows_group(Py_ssize_t m, Py_ssize_t left) {
    return left < CBN_HCHUNK / m ? left : CBN_HCHUNK / m;      /* rows in the next block */
}
CBN_PASS void cbn_rows_sums_f16(const cbn_half* x, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                const double* ref, double* s1, double* s2) {
    float bx[CBN_HCHUNK];
    Py_ssize_t r, j, k;
    if (m <= CBN_HCHUNK / 2) {
        for (r = 0; r < n; r += k) {
            k = cbn_hrows_group(m, n - r);
            for (j = 0; j < k; j++)
                cbn_h2f_n(x + (r + j) * ld, bx + j * m, m);
            cbn_rows_sums_f32(bx, m, k, m, ref, s1, s2, 0);
        }
        return;
    }
    for (r = 0; r < n; r++, x += ld) {
        CBN_HBLOCKS(m, cbn_h2f_n(x + b_, bx, w_);
                       cbn_rows_sums_f32(bx, w_, 1, w_, ref + b_, s1 + b_, s2 + b_, 0);)
    }
}

CBN_PASS void cbn_rows_gsums_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                 Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m, const double* mean,
                                 double* s1, double* s2) {
    float bx[CBN_HCHUNK], bg[CBN_HCHUNK], by[CBN_HCHUNK];
    Py_ssize_t r, j, k;
    if (m <= CBN_HCHUNK / 2) {
        for (r = 0; r < n; r += k) {
            k = cbn_hrows_group(m, n - r);
            for (j = 0; j < k; j++) {
                cbn_h2f_n(x + (r + j) * ld, bx + j * m, m);
                cbn_h2f_n(dy + (r + j) * ld, bg + j * m, m);
                if (y) cbn_h2f_n(y + (r + j) * ld, by + j * m, m);
            }
            cbn_rows_gsums_f32(bx, bg, y ? by : NULL, m, k, m, mean, s1, s2, 0);
        }
        return;
    }
    for (r = 0; r < n; r++, x += ld, dy += ld) {
        CBN_HBLOCKS(m, cbn_h2f_n(x + b_, bx, w_); cbn_h2f_n(dy + b_, bg, w_);
                       if (y) cbn_h2f_n(y + b_, by, w_);
                       cbn_rows_gsums_f32(bx, bg, y ? by : NULL, w_, 1, w_, mean + b_, s1 + b_,
                                          s2 + b_, 0);)
        if (y) y += ld;
    }
}

#if defined(__F16C__) && defined(__FMA__)
static inline __m256 cbn_ld8h(const cbn_half* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p));
}
/* stream: a non-temporal store (p 16-byte aligned: see CBN_HLINES) */
static inline void cbn_st8h(cbn_half* p, __m256 v, int stream) {
    __m128i h = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT);
    if (stream)
        _mm_stream_si128((__m128i*)p, h);
    else
        _mm_storeu_si128((__m128i*)p, h);
}
/* E: where the streaming stores of a run of N values at OUT end.  A run that starts
 * 16-byte aligned and holds whole vectors streams them all (E = N).  Any other, with
 * stream, stores element by element (BODY) until OUT + i starts a cache line, and
 * streams only the whole lines from there: the vectors after them, and the elements
 * after those, store plainly.  Streaming from the first 16-byte-aligned value instead
 * left each run's last line half streamed and then stored into plainly (as in
 * CBN_STREAMED), which flushed the half-filled line and read it back: float16 NCHW
 * 64x256x35x35 (runs of 1225 values) took 3.0x the time per byte of 64x256x36x34
 * (1224 values) in training and 2.3x in the backward (the arrays in L3, 2 threads,
 * 2-core Intel Xeon VM).  With this, 1.5x and 1.1x (new / old time 0.51 and 0.50;
 * 64x256x36x34 1.01-1.02).  Streaming whole lines only, whatever the run, cost
 * 64x256x36x34 1.30x in training: there the half-streamed lines are never stored
 * into plainly, and cost less than plain ones. */
#define CBN_HLINES(OUT, N, E, BODY)                                                         \
    E = (N);                                                                                \
    if (stream && (((uintptr_t)(OUT) & 15) || ((N) & 7))) {                                 \
        for (; i < (N) && ((uintptr_t)((OUT) + i) & 63); i++) { BODY }                     \
        E = i + ((N) - i) / 32 * 32;                                                        \
    }
/* g: dy, or 0 where y <= 0 (NaN y keeps dy, as the scalar comparison does) */
static inline __m256 cbn_g8h(const cbn_half* dy, const cbn_half* y) {
    __m256 g = cbn_ld8h(dy);
    return y ? _mm256_and_ps(_mm256_cmp_ps(cbn_ld8h(y), _mm256_setzero_ps(), _CMP_NLE_UQ), g) : g;
}
#if defined(__AVX2__)
/* the lower (upper 0) or upper 4 floats of v as doubles */
static inline __m256d cbn_cvt4d(__m256 v, int upper) {
    return _mm256_cvtps_pd(upper ? _mm256_extractf128_ps(v, 1) : _mm256_castps256_ps128(v));
}
#define CBN_TILED_SUMS_F16
/* float16 register tiles: d = x - rf in float32 (rf: the reference rounded to float32)
 * summed per lane in float32 over CBN_HGROUP rows, in chains of 4 rows and a tree (as
 * CBN_HREDUCE: at most 8 float32 roundings per value), before float64 takes them,
 * with the reference's remainder L = ref - rf put back per walk.  Converting every
 * value to float64 instead doubles the vector work.  Rows per walk: CBN_TILE_ROWS for
 * data in cache (walk 0); from memory CBN_HWALK rows at a time (the statistics:
 * cbn_hwalk_stats, below), prefetching the rows
 * CBN_HWALK_AHEAD walks ahead, a few with each tile of the walk.  Measured against the
 * kernels before (groups of 4 rows in one chain in cache; float64 tiles walking 4 rows
 * from memory), 2-core Intel Xeon VM, float16 channels-last, 2 threads, the next walk
 * prefetched at its start: 32x128x56x56 statistics 0.64x the time, training 0.81x,
 * backward 0.83x; 1x64x56x56 statistics 0.85x, training 0.95x, backward 1.0x.  On
 * the 2-core AMD EPYC Zen 5 VM a walk's prefetches at once (4-16 KB per array) left the
 * backward sums at half float32's memory speed; spread over the tiles, two walks ahead,
 * one thread, a C loop, this / before: from memory, rows of 64-1024 values, backward
 * sums 0.29-0.88 (128 values: 0.51), statistics 0.43-1.01; from L3 0.60-1.13.  Whole
 * calls, float16 channels-last, separate builds alternated process by process (4 pairs,
 * medians), 1 and 2 threads: 32x56x56x128 backward 0.64-0.72, with the ReLU mask
 * 0.51-0.62, statistics 0.89-0.96, training 0.94-0.97; 8x112x112x64 0.87-1.05; in L3
 * (2x56x56x256, 2048x1024) 0.93-1.00.  On the 2-core Intel Xeon VM (one process, the
 * distance alternated, 2 threads, 5 rounds), against two walks ahead: one walk,
 * statistics 0.96-0.99 and backward sums 0.99-1.02; four walks 1.00-1.07.  Kept at two.
 * There the same tiles in AVX-512 (16 channels a tile; in L2 in a C loop 0.145 TSC
 * ticks per value against 0.189) took, in cbn, statistics 0.80-0.91 of the time with
 * rows of 128-256 channels but 1.07-1.09 with 64, training 0.90-1.03: not taken.
 * grad 0: s1 += sum d, s2 += sum d^2 about ref; grad 1: s1 += sum g, s2 += sum g d. */
#define CBN_HGROUP(grad) ((grad) ? 8 : 16)
#define CBN_HWALK 16
/* The statistics (one array read) walk about CBN_HWALK_BYTES of each row's values at a
 * time, at least CBN_HWALK rows: their tiles' per-walk work (the float64 sums, the
 * reference's remainder) takes a smaller share of longer walks.  Measured, float16
 * channels-last from memory, 2-core Intel Xeon VM, separate builds alternated, 1 / 2
 * threads, walk rows / 16 rows' time, statistics and training: rows of 64 channels
 * (8x112x112x64) 64 rows 0.83 / 0.80 and 0.93 / 0.93, 32 rows 0.88 / 0.86; rows of 128
 * channels (32x56x56x128) 32 rows 0.89 / 0.88 and 0.96 / 0.95, 64 rows 0.93; rows of
 * 512 channels (64x28x28x512) 64 rows 1.13 / 1.13 and 1.06, 32 rows 0.99-1.00.  The
 * backward sums (two or three arrays) keep CBN_HWALK: 64 rows took 1.04-1.26x. */
#define CBN_HWALK_BYTES 8192
static inline Py_ssize_t cbn_hwalk_stats(Py_ssize_t m) {
    const Py_ssize_t rows = CBN_HWALK_BYTES / (m * (Py_ssize_t)sizeof(cbn_half));
    return rows > CBN_HWALK ? rows : CBN_HWALK;
}
#define CBN_HWALK_AHEAD 2
/* prefetch the rows r0 + [RA, RB) of every array read, ahead bytes on (a macro: written
 * as an inline function, GCC 12 compiled a C benchmark of these loops with no prefetch) */
#define CBN_HWALK_PF(RA, RB)                                                                \
    for (r = (RA); r < (RB); r++) {                                                         \
        o = (r0 + r) * ld;                                                                  \
        cbn_prefetch_ahead(x + o, ahead, hb);                                               \
        if (grad)                                                                           \
            cbn_prefetch_ahead(dy + o, ahead, hb);                                          \
        if (grad && y)                                                                      \
            cbn_prefetch_ahead(y + o, ahead, hb);                                           \
    }
/* one row of a float16 tile into (A, Q): A += g, Q += g * d */
#define CBN_HROW(o, A, Q)                                                                   \
    {                                                                                       \
        const __m256 d_ = _mm256_sub_ps(cbn_ld8h(x + (o)), R);                              \
        const __m256 g_ = grad ? cbn_g8h(dy + (o), y ? y + (o) : NULL) : d_;                \
        A = CBN_FADD8(g_, A);                                                               \
        Q = _mm256_fmadd_ps(g_, d_, Q);                                                     \
    }
/* A tile's rows r0 .. r0 + nb - 1 (of channels c on), written once for both widths
 * (cbn_tiles32_f16 and its AVX-512F form): ROW(o, a, q) adds a row's g into a and g * d
 * into q; the float32 partials (V, zero Zv, addition VADD) of at most CBN_HGROUP rows go
 * to the float64 sums A0, A1, Q0, Q1 (CVT(v, upper): half of v as doubles; DADD, and
 * DNMADD(a, b, c) = c - a b), which then become sums about ref = rf + L: sum g (d - L)
 * = sum g d - L sum g; for the statistics (g = d) also sum (d - L) = sum d - nb L, and
 * sum (d - L)^2 = sum d^2 - L sum d - L sum (d - L).  (Their ref, the channel's first
 * value, is a float16 value: L = 0 there.) */
#define CBN_HTILE_ROWS(V, Zv, ROW, VADD, CVT, DADD, DNMADD)                                 \
    for (r = 0, o = r0 * ld + c; r < nb;) {                                                 \
        V a0 = Zv, a1 = Zv, a2 = Zv, a3 = Zv, q0 = Zv, q1 = Zv, q2 = Zv, q3 = Zv;           \
        const Py_ssize_t e = nb - r < CBN_HGROUP(grad) ? nb : r + CBN_HGROUP(grad);         \
        if (grad) {         /* two chains (registers for dy and y) */                       \
            for (; r + 2 <= e; r += 2, o += 2 * ld) {                                       \
                ROW(o, a0, q0)                                                              \
                ROW(o + ld, a1, q1)                                                         \
            }                                                                               \
        } else {                                                                            \
            for (; r + 4 <= e; r += 4, o += 4 * ld) {                                       \
                ROW(o, a0, q0)                                                              \
                ROW(o + ld, a1, q1)                                                         \
                ROW(o + 2 * ld, a2, q2)                                                     \
                ROW(o + 3 * ld, a3, q3)                                                     \
            }                                                                               \
        }                                                                                   \
        if (r < e) { ROW(o, a0, q0) r++; o += ld; }   /* at most 3 full steps */            \
        if (r < e) { ROW(o, a1, q1) r++; o += ld; }   /* before these */                    \
        if (r < e) { ROW(o, a2, q2) r++; o += ld; }                                         \
        a0 = VADD(VADD(a0, a1), VADD(a2, a3));                                              \
        q0 = VADD(VADD(q0, q1), VADD(q2, q3));                                              \
        A0 = DADD(A0, CVT(a0, 0));                                                          \
        A1 = DADD(A1, CVT(a0, 1));                                                          \
        Q0 = DADD(Q0, CVT(q0, 0));                                                          \
        Q1 = DADD(Q1, CVT(q0, 1));                                                          \
    }                                                                                       \
    Q0 = DNMADD(L0, A0, Q0);                                                                \
    Q1 = DNMADD(L1, A1, Q1);                                                                \
    if (!grad) {                                                                            \
        A0 = DNMADD(N, L0, A0);                                                             \
        A1 = DNMADD(N, L1, A1);                                                             \
        Q0 = DNMADD(L0, A0, Q0);                                                            \
        Q1 = DNMADD(L1, A1, Q1);                                                            \
    }
static inline void cbn_tiles32_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                   Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                   const double* ref, double* s1, double* s2, int grad,
                                   Py_ssize_t walk) {
    const __m256 Z8 = _mm256_setzero_ps();
    const __m256d Z = _mm256_setzero_pd();
    const Py_ssize_t hb = m * (Py_ssize_t)sizeof(cbn_half), nt = m / 8;
    const Py_ssize_t ahead = CBN_HWALK_AHEAD * walk * ld * (Py_ssize_t)sizeof(cbn_half);
    Py_ssize_t c, r, r0, nb, o;
    for (r0 = 0; r0 < n; r0 += nb) {
        nb = walk ? walk : CBN_TILE_ROWS(ld, grad ? (y ? 3 : 2) : 1);
        nb = n - r0 < nb ? n - r0 : nb;
        if (walk && nt == 0)                            /* no tiles: all at once */
            CBN_HWALK_PF(0, nb)
        for (c = 0; c + 8 <= m; c += 8) {
            if (walk)                                   /* tile c / 8: its share of the rows */
                CBN_HWALK_PF(c / 8 * nb / nt, (c / 8 + 1) * nb / nt)
            __m256d L0 = _mm256_loadu_pd(ref + c), L1 = _mm256_loadu_pd(ref + c + 4);
            const __m256 R = _mm256_set_m128(_mm256_cvtpd_ps(L1), _mm256_cvtpd_ps(L0));
            __m256d A0 = Z, A1 = Z, Q0 = Z, Q1 = Z, N = _mm256_set1_pd((double)nb);
            L0 = _mm256_sub_pd(L0, cbn_cvt4d(R, 0));
            L1 = _mm256_sub_pd(L1, cbn_cvt4d(R, 1));
            CBN_HTILE_ROWS(__m256, Z8, CBN_HROW, _mm256_add_ps, cbn_cvt4d, _mm256_add_pd,
                           _mm256_fnmadd_pd)
            cbn_add_tile(s1 + c, s2 + c, A0, A1, Q0, Q1);
        }
        if (c < m) {
            o = r0 * ld + c;
            if (grad)
                cbn_rows_gsums_f16(x + o, dy + o, y ? y + o : NULL, ld, nb, m - c, ref + c,
                                   s1 + c, s2 + c);
            else
                cbn_rows_sums_f16(x + o, ld, nb, m - c, ref + c, s1 + c, s2 + c);
        }
    }
}
/* mem: 0 for data in cache, 1 from memory */
CBN_PASS void cbn_rows_sums_tiled_f16(const cbn_half* x, Py_ssize_t ld, Py_ssize_t n,
                                      Py_ssize_t m, const double* ref, double* s1,
                                      double* s2, int mem) {
    cbn_tiles32_f16(x, NULL, NULL, ld, n, m, ref, s1, s2, 0, mem ? cbn_hwalk_stats(m) : 0);
}
CBN_PASS void cbn_rows_gsums_tiled_f16(const cbn_half* x, const cbn_half* dy,
                                       const cbn_half* y, Py_ssize_t ld, Py_ssize_t n,
                                       Py_ssize_t m, const double* mean, double* s1,
                                       double* s2, int mem) {
    cbn_tiles32_f16(x, dy, y, ld, n, m, mean, s1, s2, 1, mem ? CBN_HWALK : 0);
}
/* float16 statistics eight rows per step along the channels, as cbn_rows_sums8_f32 but
 * in float32 (8 channels a step, 16 bytes of each of the eight rows): the deviations
 * from rf (the reference rounded to float32) added in a tree, their squares so, each
 * into its channel's float32 partial sums, which go into float64 every
 * CBN_HROWS8_FLUSH rows, the reference's remainder L = ref - rf put back at the end (as
 * in the tiles: at most 8 float32 roundings per value).  The rows stream past in order,
 * which the tiles' walks do not: measured in a C loop, 2-core Intel Xeon VM, 2
 * threads, float16 rows of 32-1024 channels, this / the tiles walking with their
 * prefetch: 25.7 MB 0.59-0.80 (1.04-1.14x the time of a float32 sum over the same
 * bytes); in L2 (256 KB per thread), against the walk of all rows, 0.60-0.87.  pf:
 * the bytes of reading to prefetch ahead (two lines per step, CBN_PF8T), else 0.
 * Channels beyond the last 8 and rows beyond the last 8 take cbn_rows_sums_f16. */
#define CBN_HROWS8_FLUSH 32
#define CBN_HROWS8_CHUNK 1024   /* channels per pass over the rows (the partials' size;
                                   _kernels.pyx passes at most its CTILE, 1024) */
#define CBN_DEV8H(k) _mm256_sub_ps(cbn_ld8h(a + (k) * ld + c), R)
#define CBN_SQ2H(u, v) _mm256_fmadd_ps(v, v, _mm256_mul_ps(u, u))
/* The frame of the float16 eight-row loops over rows 0 .. n8 - 1, channels 0 .. m8 - 1:
 * chunks of at most CBN_HROWS8_CHUNK channels, each with its reference REF in float32
 * (rf) and float32 partial sums (p1, p2).  STEPS adds rows r0 .. r - 1 (at most
 * CBN_HROWS8_FLUSH) into the partials, which then go into float64 as they are: p1
 * into t1, p2 into s2.  After the chunk's last row, FIX adds channel c0 + c's t1 (A)
 * into s1 and corrects s1, s2 for REF = rf + L (n8 rows).  (A correction per flush,
 * in the float64 arithmetic, took 10-14% of the loops' time on 128-1024 channels; with
 * it deferred, and _kernels.pyx calling these once for a thread's rows instead of per
 * block of ROW_BLOCK rows, the statistics took 0.82-0.87 of the time in a C loop, 2
 * threads, 25.7 MB on the 2-core Intel Xeon VM.) */
#define CBN_HROWS8(REF, STEPS, FIX)                                                         \
    float p1[CBN_HROWS8_CHUNK], p2[CBN_HROWS8_CHUNK], rf[CBN_HROWS8_CHUNK];                 \
    double t1[CBN_HROWS8_CHUNK];                                                            \
    const Py_ssize_t n8 = n & ~(Py_ssize_t)7, m8 = m & ~(Py_ssize_t)7;                      \
    const Py_ssize_t ahead = CBN_ROWS8_AHEAD(pf, m * (Py_ssize_t)sizeof(cbn_half)) * ld;  \
    Py_ssize_t c0, w, r, r0, c;                                                             \
    for (c0 = 0; c0 < m8; c0 += w) {                                                        \
        w = m8 - c0 < CBN_HROWS8_CHUNK ? m8 - c0 : CBN_HROWS8_CHUNK;                        \
        for (c = 0; c < w; c++) {                                                           \
            rf[c] = (float)(REF)[c0 + c];                                                   \
            p1[c] = p2[c] = 0.0f;                                                           \
            t1[c] = 0.0;                                                                    \
        }                                                                                   \
        for (r0 = 0; r0 < n8; r0 = r) {                                                     \
            STEPS                                                                           \
            for (c = 0; c < w; c++) {                                                       \
                t1[c] += (double)p1[c];                                                     \
                s2[c0 + c] += (double)p2[c];                                                \
                p1[c] = p2[c] = 0.0f;                                                       \
            }                                                                               \
        }                                                                                   \
        for (c = 0; c < w; c++) {                                                           \
            const double L = (REF)[c0 + c] - (double)rf[c], A = t1[c];                      \
            FIX                                                                             \
        }                                                                                   \
    }
#define CBN_HSTEPS                                                                          \
    for (r = r0; r < n8 && r < r0 + CBN_HROWS8_FLUSH; r += 8) {                             \
        const cbn_half* a = x + r * ld + c0;                                                \
        for (c = 0; c < w; c += 8) {                                                        \
            const __m256 R = _mm256_loadu_ps(rf + c);                                       \
            if (ahead)                                                                      \
                CBN_PF8T(a, c, cbn_half, 8)                                                 \
            CBN_TREE8(__m256, CBN_DEV8H, _mm256_add_ps, CBN_SQ2H, sd, sq)                   \
            _mm256_storeu_ps(p1 + c, _mm256_add_ps(_mm256_loadu_ps(p1 + c), sd));           \
            _mm256_storeu_ps(p2 + c, _mm256_add_ps(_mm256_loadu_ps(p2 + c), sq));           \
        }                                                                                   \
    }
CBN_PASS void cbn_rows_sums8_f16(const cbn_half* x, Py_ssize_t ld, Py_ssize_t n,
                                 Py_ssize_t m, const double* ref, double* s1, double* s2,
                                 Py_ssize_t pf) {
    /* sum (d - L) = A - n8 L, sum (d - L)^2 = Q - 2 L A + n8 L^2 (L = 0 for a float16
     * reference) */
    CBN_HROWS8(ref, CBN_HSTEPS,
               s1[c0 + c] += A - (double)n8 * L;
               s2[c0 + c] -= L * (2.0 * A - (double)n8 * L);)
    if (m8 < m)
        cbn_rows_sums_f16(x + m8, ld, n8, m - m8, ref + m8, s1 + m8, s2 + m8);
    if (n8 < n)
        cbn_rows_sums_f16(x + n8 * ld, ld, n - n8, m, ref, s1, s2);
}
/* The backward sums so: g = dy (0 where y <= 0 with y, the ReLU mask; NaN y keeps dy)
 * and g (x - mf), four rows of each step at a time (registers), corrected by the
 * mean's remainder L = mean - mf at the end: sum g (x - mean) = Q - L sum g. */
#define CBN_HG4(k) cbn_ld8h(gr + (k) * ld + c)
#define CBN_HG4_MASKED(k)                                                                   \
    _mm256_and_ps(_mm256_cmp_ps(cbn_ld8h(yr + (k) * ld + c), Z8, _CMP_NLE_UQ), CBN_HG4(k))
#define CBN_HGD(k) _mm256_sub_ps(cbn_ld8h(xr + (k) * ld + c), M)
#define CBN_HGHALF(G, o, A, Q)                                                              \
    {                                                                                       \
        const __m256 g0 = G((o)), g1 = G((o) + 1), g2 = G((o) + 2), g3 = G((o) + 3);        \
        A = _mm256_add_ps(_mm256_add_ps(g0, g1), _mm256_add_ps(g2, g3));                    \
        Q = _mm256_add_ps(                                                                  \
            _mm256_fmadd_ps(g0, CBN_HGD((o)), _mm256_mul_ps(g1, CBN_HGD((o) + 1))),         \
            _mm256_fmadd_ps(g2, CBN_HGD((o) + 2), _mm256_mul_ps(g3, CBN_HGD((o) + 3))));    \
    }
#define CBN_HGSTEPS(G)                                                                      \
    for (r = r0; r < n8 && r < r0 + CBN_HROWS8_FLUSH; r += 8) {                             \
        const cbn_half *xr = x + r * ld + c0, *gr = dy + r * ld + c0;                       \
        const cbn_half* yr = y ? y + r * ld + c0 : NULL;                                    \
        for (c = 0; c < w; c += 8) {                                                        \
            const __m256 M = _mm256_loadu_ps(rf + c);                                       \
            __m256 a0, q0, a1, q1;                                                          \
            CBN_PF8G(c, cbn_half, 8)                                                        \
            CBN_HGHALF(G, 0, a0, q0)                                                        \
            CBN_HGHALF(G, 4, a1, q1)                                                        \
            a0 = _mm256_add_ps(a0, a1);                                                     \
            q0 = _mm256_add_ps(q0, q1);                                                     \
            _mm256_storeu_ps(p1 + c, _mm256_add_ps(_mm256_loadu_ps(p1 + c), a0));           \
            _mm256_storeu_ps(p2 + c, _mm256_add_ps(_mm256_loadu_ps(p2 + c), q0));           \
        }                                                                                   \
    }
CBN_PASS void cbn_rows_gsums8_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                  Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                                  const double* mean, double* s1, double* s2, Py_ssize_t pf) {
    const __m256 Z8 = _mm256_setzero_ps();
    /* sum g (d - L) = Q - L sum g */
    CBN_HROWS8(mean, if (y) CBN_HGSTEPS(CBN_HG4_MASKED) else CBN_HGSTEPS(CBN_HG4),
               s1[c0 + c] += A; s2[c0 + c] -= L * A;)
    if (m8 < m)
        cbn_rows_gsums_f16(x + m8, dy + m8, y ? y + m8 : NULL, ld, n8, m - m8, mean + m8,
                           s1 + m8, s2 + m8);
    if (n8 < n)
        cbn_rows_gsums_f16(x + n8 * ld, dy + n8 * ld, y ? y + n8 * ld : NULL, ld, n - n8, m,
                           mean, s1, s2);
}
#endif
/* relu: max(0, v) returns v when v is NaN, as v < 0 ? 0 : v does */
#define CBN_RELU8(v) (relu ? _mm256_max_ps(_mm256_setzero_ps(), (v)) : (v))
#define CBN_RELU1(v) (relu && (v) < 0 ? 0.0f : (v))
/* x - h and v + t in the float16 output passes as fused multiply-adds by 1.0 (the same
 * results, exactly, as CBN_FADD): on AMD Zen cores the F16C conversions issue on the
 * adders' pipes, and the subtraction waited for them.  Measured on the Zen 5 VM: in a C
 * loop, one thread, fmsub / sub time, runs of 3136 values in L2 0.92, of 196 values
 * 0.68, of 49 values 0.87; separate builds alternated (6 pairs), float16, 1 / 2
 * threads, this / before: planar inference 1x64x56x56 0.79 / 0.85, 1x256x14x14 0.82 /
 * 0.91, 8x64x56x56 0.79 / 0.95, 32x512x7x7 0.92 / 0.99; training 0.90-0.98, backward
 * 0.93-0.99, channels-last 1x56x56x64 0.92-1.0, 51 MB 0.91-0.99.  Outputs unchanged bit
 * for bit (140 arrays compared).  The sums' x - ref (CBN_HDEV) stays a subtraction:
 * as an fmsub it took 1.02-1.14x the time (their additions are FMAs already). */
#define CBN_HSUB(a, b) _mm256_fmsub_ps(a, _mm256_set1_ps(1.0f), b)
#define CBN_HADD(a, b) _mm256_fmadd_ps(a, _mm256_set1_ps(1.0f), b)
#define CBN_G1(i) (y && cbn_h2f(y[i]) <= 0 ? 0.0f : cbn_h2f(dy[i]))
#define CBN_DX1H dx[i] = cbn_f2h(CBN_DX3(cbn_h2f(x[i]) - hi, s, CBN_G1(i) * k, t));
/* the prefetch of the passes whose stream is CBN_STREAM_PF (see there) */
#define CBN_HPF_AHEAD 2048
#define CBN_HPF(p) _mm_prefetch((const char*)((p) + CBN_HPF_AHEAD), _MM_HINT_T0)

#define CBN_AFFINE1H(HI, S, T) { float v = (cbn_h2f(x[i]) - (HI)) * (S) + (T); out[i] = cbn_f2h(CBN_RELU1(v)); }
/* The arithmetic of the float16 output passes on 8 values, written once: vectors that
 * overlap (a run's or a row's last 8 values) give the values they share the same results */
static inline __m256 cbn_affine8v(const cbn_half* x, __m256 H, __m256 S, __m256 T) {
    return _mm256_fmadd_ps(CBN_HSUB(cbn_ld8h(x), H), S, T);
}
static inline void cbn_affine8h(const cbn_half* x, cbn_half* out, __m256 H, __m256 S, __m256 T,
                                int relu, int stream) {
    __m256 v = cbn_affine8v(x, H, S, T);
    if (stream == CBN_STREAM_PF)
        CBN_HPF(x);
    cbn_st8h(out, CBN_RELU8(v), stream);
}
CBN_PASS void cbn_run_affine_f16(const cbn_half* x, cbn_half* out, Py_ssize_t n, float hi,
                                 float s, float t, int relu, int stream) {
    const __m256 H = _mm256_set1_ps(hi), S = _mm256_set1_ps(s), T = _mm256_set1_ps(t);
    Py_ssize_t i = 0, e;
    CBN_HLINES(out, n, e, CBN_AFFINE1H(hi, s, t))
    for (; i + 8 <= e; i += 8)
        cbn_affine8h(x + i, out + i, H, S, T, relu, stream);
    for (; i + 8 <= n; i += 8)
        cbn_affine8h(x + i, out + i, H, S, T, relu, 0);
    for (; i < n; i++) CBN_AFFINE1H(hi, s, t)
}
/* the parameters p[c], p[c + 1], ... of 8 values starting at channel c of rows of m
 * channels, wrapping to channel 0 past the row's end */
static inline __m256 cbn_par8(const float* p, Py_ssize_t c, Py_ssize_t m) {
    float v[8];
    int k;
    for (k = 0; k < 8; k++) {
        v[k] = p[c];
        c = c + 1 == m ? 0 : c + 1;
    }
    return _mm256_loadu_ps(v);
}
/* nr short runs of n values, one after the other, run j with hi[j], s[j], t[j] (as
 * cbn_runs_affine_short_T, CBN_DEFINE_SHORT): 8 values at a time from each run's first,
 * the last 8 overlapping the ones before and loaded before any store, instead of up to
 * 7 values converted one by one after the last whole vector; runs under 8 values take
 * the plain pass */
CBN_PASS void cbn_runs_affine_short_f16(const cbn_half* x, cbn_half* out, Py_ssize_t n,
                                        Py_ssize_t nr, const float* hi, const float* s,
                                        const float* t, int relu) {
    __m256 H, S, T, e;
    Py_ssize_t i, j;
    if (n < 8) {
        for (j = 0; j < nr; j++)
            cbn_run_affine_f16(x + j * n, out + j * n, n, hi[j], s[j], t[j], relu, 0);
        return;
    }
    for (j = 0; j < nr; j++, x += n, out += n) {
        H = _mm256_set1_ps(hi[j]);
        S = _mm256_set1_ps(s[j]);
        T = _mm256_set1_ps(t[j]);
        e = cbn_affine8v(x + n - 8, H, S, T);
        for (i = 0; i < n - 8; i += 8)
            cbn_affine8h(x + i, out + i, H, S, T, relu, 0);
        cbn_st8h(out + n - 8, CBN_RELU8(e), 0);
    }
}

/* Rows of m channels, m a multiple of 8, in cache (not stream): two rows per step with
 * the parameters' vectors of channels c .. c + 7 loaded once (LOAD) for both (STEP(j):
 * the 8 values from j), the odd last row through ONE.  The float16 passes there are
 * bound by their micro-ops (two conversions per vector), of which the parameters'
 * loads were a quarter.  Measured against one run of n * m values (separate builds
 * alternated, 6 pairs, 2 threads, 2-core Intel Xeon VM): inference 1x56x56x64 0.69-0.73,
 * 1x28x28x128 0.82-0.90, 1x14x14x256 0.89, 1x56x56x24 0.88; training 0.80-0.92;
 * backward 0.83-0.97; from memory (streamed) the same code as before (0.98-1.01). */
#define CBN_HROWS2_FOR(n, m, stream) (!(stream) && (m) % 8 == 0 && (n) >= 2)
#define CBN_HROWS2(LOAD, STEP, ONE)                                                         \
    for (r = 0; r + 2 <= n; r += 2)                                                         \
        for (c = 0; c < m; c += 8) {                                                        \
            LOAD                                                                            \
            STEP(r * m + c)                                                                 \
            STEP((r + 1) * m + c)                                                           \
        }                                                                                   \
    if (r < n) { ONE }
#define CBN_HPAR(P, p) const __m256 P = _mm256_loadu_ps((p) + c);
#define CBN_AFFINE2H(j) cbn_affine8h(x + (j), out + (j), H, S, T, relu, 0);
/* Rows of more than 8 channels, not a multiple of 8, in cache (not stream): each row in
 * vectors of 8 from its first value, its last 8 values in one more vector that overlaps
 * the one before, computed before any of the row's stores (out may be x; the values it
 * shares with that vector get the same operations, so the same results), instead of one
 * run whose vectors wrap past each row's end and gather their parameters value by
 * value (cbn_par8).  Measured in one process (2-core AMD EPYC VM, Zen 5), channels-last,
 * this / the run, 1 and 2 threads: float16 1x100x89x89 inference 0.59 and 0.61, training
 * 0.77 and 0.79, backward 0.74 and 0.76; 1x101x89x89 inference 0.45 and 0.45;
 * 1x250x57x57 inference 0.83 and 0.80. */
#define CBN_HTAIL_FOR(m, stream) (!(stream) && (m) % 8 && (m) > 8)
#define CBN_HPAR_AT(p, c) _mm256_loadu_ps((p) + (c))
/* Rows one after another (ld == m, as the kernels call them) are one run of n * m
 * values, as in cbn_rows_affine_nt_T. */
CBN_PASS void cbn_rows_affine_f16(const cbn_half* x, cbn_half* out, Py_ssize_t ld, Py_ssize_t n,
                                  Py_ssize_t m, const float* hi, const float* s, const float* t,
                                  int relu, int stream) {
    Py_ssize_t r, c;
    if (ld != m) {
        for (r = 0; r < n; r++)
            cbn_rows_affine_f16(x + r * ld, out + r * ld, m, 1, m, hi, s, t, relu, stream);
        return;
    }
    if (CBN_HROWS2_FOR(n, m, stream)) {
        CBN_HROWS2(CBN_HPAR(H, hi) CBN_HPAR(S, s) CBN_HPAR(T, t), CBN_AFFINE2H,
                   cbn_rows_affine_f16(x + r * m, out + r * m, m, 1, m, hi, s, t, relu, 0);)
        return;
    }
    if (CBN_HTAIL_FOR(m, stream)) {
        for (r = 0; r < n; r++, x += m, out += m) {
            __m256 e = cbn_affine8v(x + m - 8, CBN_HPAR_AT(hi, m - 8), CBN_HPAR_AT(s, m - 8),
                                    CBN_HPAR_AT(t, m - 8));
            for (c = 0; c + 8 < m; c += 8)
                cbn_affine8h(x + c, out + c, CBN_HPAR_AT(hi, c), CBN_HPAR_AT(s, c),
                             CBN_HPAR_AT(t, c), relu, 0);
            cbn_st8h(out + m - 8, CBN_RELU8(e), 0);
        }
        return;
    }
    CBN_ROWS_STREAMED(8, stream ? 16 : 1, out, n * m, m,
        CBN_AFFINE1H(hi[c], s[c], t[c]),
        cbn_affine8h(x + i, out + i, _mm256_loadu_ps(hi + c), _mm256_loadu_ps(s + c),
                     _mm256_loadu_ps(t + c), relu, stream);,
        cbn_affine8h(x + i, out + i, cbn_par8(hi, c, m), cbn_par8(s, c, m), cbn_par8(t, c, m),
                     relu, stream);)
}

/* as cbn_affine8v, for dx */
static inline __m256 cbn_dx8v(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                              __m256 H, __m256 S, __m256 T, __m256 K) {
    return CBN_HADD(_mm256_fmadd_ps(CBN_HSUB(cbn_ld8h(x), H), S,
                                    _mm256_mul_ps(cbn_g8h(dy, y), K)), T);
}
static inline void cbn_dx8h(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                            cbn_half* dx, __m256 H, __m256 S, __m256 T, __m256 K, int stream) {
    __m256 v = cbn_dx8v(x, dy, y, H, S, T, K);
    if (stream == CBN_STREAM_PF) {
        CBN_HPF(x);
        CBN_HPF(dy);
        if (y)
            CBN_HPF(y);
    }
    cbn_st8h(dx, v, stream);
}
CBN_PASS void cbn_run_dx_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                             cbn_half* dx, Py_ssize_t n, float hi, float s, float t, float k,
                             int stream) {
    const __m256 H = _mm256_set1_ps(hi), S = _mm256_set1_ps(s), T = _mm256_set1_ps(t),
                 K = _mm256_set1_ps(k);
    Py_ssize_t i = 0, e;
    CBN_HLINES(dx, n, e, CBN_DX1H)
    for (; i + 8 <= e; i += 8)
        cbn_dx8h(x + i, dy + i, y ? y + i : NULL, dx + i, H, S, T, K, stream);
    for (; i + 8 <= n; i += 8)
        cbn_dx8h(x + i, dy + i, y ? y + i : NULL, dx + i, H, S, T, K, 0);
    for (; i < n; i++) CBN_DX1H
}
/* dx over nr short runs, as cbn_runs_affine_short_f16 (the loop written once, inlined
 * with and without y) */
static inline __attribute__((always_inline)) void cbn_runs_dx_in_f16(
        const cbn_half* x, const cbn_half* dy, const cbn_half* y, cbn_half* dx, Py_ssize_t n,
        Py_ssize_t nr, const float* hi, const float* s, const float* t, const float* k) {
    __m256 H, S, T, K, e;
    Py_ssize_t i, j;
    for (j = 0; j < nr; j++, x += n, dy += n, dx += n, y = y ? y + n : NULL) {
        H = _mm256_set1_ps(hi[j]);
        S = _mm256_set1_ps(s[j]);
        T = _mm256_set1_ps(t[j]);
        K = _mm256_set1_ps(k[j]);
        e = cbn_dx8v(x + n - 8, dy + n - 8, y ? y + n - 8 : NULL, H, S, T, K);
        for (i = 0; i < n - 8; i += 8)
            cbn_dx8h(x + i, dy + i, y ? y + i : NULL, dx + i, H, S, T, K, 0);
        cbn_st8h(dx + n - 8, e, 0);
    }
}
CBN_PASS void cbn_runs_dx_short_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                    cbn_half* dx, Py_ssize_t n, Py_ssize_t nr, const float* hi,
                                    const float* s, const float* t, const float* k) {
    Py_ssize_t j;
    if (n < 8) {
        for (j = 0; j < nr; j++)
            cbn_run_dx_f16(x + j * n, dy + j * n, y ? y + j * n : NULL, dx + j * n, n, hi[j],
                           s[j], t[j], k[j], 0);
        return;
    }
    if (y)
        cbn_runs_dx_in_f16(x, dy, y, dx, n, nr, hi, s, t, k);
    else
        cbn_runs_dx_in_f16(x, dy, NULL, dx, n, nr, hi, s, t, k);
}
#define CBN_DX2H(j) cbn_dx8h(x + (j), dy + (j), y ? y + (j) : NULL, dx + (j), H, S, T, K, 0);
CBN_PASS void cbn_rows_dx_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                              cbn_half* dx, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                              const float* hi, const float* s, const float* t, const float* k,
                              int stream) {
    Py_ssize_t r, c;
    if (ld != m) {
        for (r = 0; r < n; r++)
            cbn_rows_dx_f16(x + r * ld, dy + r * ld, y ? y + r * ld : NULL, dx + r * ld, m, 1,
                            m, hi, s, t, k, stream);
        return;
    }
    if (CBN_HROWS2_FOR(n, m, stream)) {
        CBN_HROWS2(CBN_HPAR(H, hi) CBN_HPAR(S, s) CBN_HPAR(T, t) CBN_HPAR(K, k), CBN_DX2H,
                   cbn_rows_dx_f16(x + r * m, dy + r * m, y ? y + r * m : NULL, dx + r * m, m, 1,
                                   m, hi, s, t, k, 0);)
        return;
    }
    if (CBN_HTAIL_FOR(m, stream)) {
        for (r = 0; r < n; r++, x += m, dy += m, dx += m, y = y ? y + m : NULL) {
            Py_ssize_t l = m - 8;
            __m256 e = cbn_dx8v(x + l, dy + l, y ? y + l : NULL, CBN_HPAR_AT(hi, l),
                                CBN_HPAR_AT(s, l), CBN_HPAR_AT(t, l), CBN_HPAR_AT(k, l));
            for (c = 0; c + 8 < m; c += 8)
                cbn_dx8h(x + c, dy + c, y ? y + c : NULL, dx + c, CBN_HPAR_AT(hi, c),
                         CBN_HPAR_AT(s, c), CBN_HPAR_AT(t, c), CBN_HPAR_AT(k, c), 0);
            cbn_st8h(dx + l, e, 0);
        }
        return;
    }
    CBN_ROWS_STREAMED(8, stream ? 16 : 1, dx, n * m, m,
        dx[i] = cbn_f2h(CBN_DX3(cbn_h2f(x[i]) - hi[c], s[c], CBN_G1(i) * k[c], t[c]));,
        cbn_dx8h(x + i, dy + i, y ? y + i : NULL, dx + i, _mm256_loadu_ps(hi + c),
                 _mm256_loadu_ps(s + c), _mm256_loadu_ps(t + c), _mm256_loadu_ps(k + c), stream);,
        cbn_dx8h(x + i, dy + i, y ? y + i : NULL, dx + i, cbn_par8(hi, c, m), cbn_par8(s, c, m),
                 cbn_par8(t, c, m), cbn_par8(k, c, m), stream);)
}
#if defined(CBN_HAVE_SUMS512)
/* The float16 output passes in cache (not streamed) again with AVX-512F vectors of 16
 * values: in the AVX2 build, run only where _kernels.pyx chooses them (_h512: Zen 5,
 * which executes 512-bit conversions at full width).  Each value goes through the same
 * operations as in the AVX2 passes above, to which they leave what is not a whole vector
 * of 16 (and rows that are not whole vectors), so the outputs are bit-identical (the
 * tests compare the two).  The AVX2 passes are bound by their conversions (two per
 * vector of 8): in a C loop on the 2-core AMD EPYC Zen 5 VM, one thread, inference of
 * runs in L2 (200704, 50176, 12544 values), this / the AVX2 loop 0.51-0.54; float16 per
 * byte against float32 0.97 / 1.80 at 200704 values, 1.58 / 3.04-3.15 at 12544. */
#define CBN_HAVE_H512 1
CBN_T512 static inline __m512 cbn_ld16h(const cbn_half* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p));
}
CBN_T512 static inline void cbn_st16h(cbn_half* p, __m512 v) {
    _mm256_storeu_si256((__m256i*)p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}
/* the affine of the 16 values at x, then max(., 0) with relu (NaN stays NaN) */
CBN_T512 static inline __m512 cbn_vaffine16h(const cbn_half* x, __m512 H, __m512 S, __m512 T,
                                             int relu) {
    __m512 v = _mm512_fmadd_ps(_mm512_fmsub_ps(cbn_ld16h(x), _mm512_set1_ps(1.0f), H), S, T);
    return relu ? _mm512_max_ps(_mm512_setzero_ps(), v) : v;
}
CBN_T512 static inline void cbn_affine16h(const cbn_half* x, cbn_half* out, __m512 H,
                                          __m512 S, __m512 T, int relu) {
    cbn_st16h(out, cbn_vaffine16h(x, H, S, T, relu));
}
/* g: dy, or 0 where y <= 0 (as cbn_g8h) */
CBN_T512 static inline __m512 cbn_g16h(const cbn_half* dy, const cbn_half* y) {
    __m512 g = cbn_ld16h(dy);
    return y ? _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(cbn_ld16h(y), _mm512_setzero_ps(),
                                                      _CMP_NLE_UQ), g)
             : g;
}
/* dx of the 16 values at x (as cbn_dx8h: the shift added last, as an FMA) */
CBN_T512 static inline __m512 cbn_vdx16h(const cbn_half* x, const cbn_half* dy,
                                         const cbn_half* y, __m512 H, __m512 S, __m512 T,
                                         __m512 K) {
    __m512 v = _mm512_fmadd_ps(_mm512_fmsub_ps(cbn_ld16h(x), _mm512_set1_ps(1.0f), H), S,
                               _mm512_mul_ps(cbn_g16h(dy, y), K));
    return _mm512_fmadd_ps(v, _mm512_set1_ps(1.0f), T);
}
CBN_T512 static inline void cbn_dx16h(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                      cbn_half* dx, __m512 H, __m512 S, __m512 T, __m512 K) {
    cbn_st16h(dx, cbn_vdx16h(x, dy, y, H, S, T, K));
}
CBN_T512 CBN_PASS void cbn_run_affine_f16_512(const cbn_half* x, cbn_half* out, Py_ssize_t n,
                                              float hi, float s, float t, int relu) {
    const __m512 H = _mm512_set1_ps(hi), S = _mm512_set1_ps(s), T = _mm512_set1_ps(t);
    Py_ssize_t i;
    for (i = 0; i + 16 <= n; i += 16)
        cbn_affine16h(x + i, out + i, H, S, T, relu);
    if (i < n)
        cbn_run_affine_f16(x + i, out + i, n - i, hi, s, t, relu, 0);
}
CBN_T512 CBN_PASS void cbn_run_dx_f16_512(const cbn_half* x, const cbn_half* dy,
                                          const cbn_half* y, cbn_half* dx, Py_ssize_t n,
                                          float hi, float s, float t, float k) {
    const __m512 H = _mm512_set1_ps(hi), S = _mm512_set1_ps(s), T = _mm512_set1_ps(t),
                 K = _mm512_set1_ps(k);
    Py_ssize_t i;
    for (i = 0; i + 16 <= n; i += 16)
        cbn_dx16h(x + i, dy + i, y ? y + i : NULL, dx + i, H, S, T, K);
    if (i < n)
        cbn_run_dx_f16(x + i, dy + i, y ? y + i : NULL, dx + i, n - i, hi, s, t, k, 0);
}
/* rows one after another of a whole number of vectors (else the AVX2 pass): two rows
 * per step, as CBN_HROWS2 */
#define CBN_HROWS16(n, m) ((m) % 16 == 0 && (n) >= 2)
#define CBN_HPAR16(P, p) const __m512 P = _mm512_loadu_ps((p) + c);
CBN_T512 CBN_PASS void cbn_rows_affine_f16_512(const cbn_half* x, cbn_half* out, Py_ssize_t ld,
                                               Py_ssize_t n, Py_ssize_t m, const float* hi,
                                               const float* s, const float* t, int relu) {
    Py_ssize_t r, c;
    if (ld != m || !CBN_HROWS16(n, m)) {
        cbn_rows_affine_f16(x, out, ld, n, m, hi, s, t, relu, 0);
        return;
    }
    for (r = 0; r + 2 <= n; r += 2)
        for (c = 0; c < m; c += 16) {
            CBN_HPAR16(H, hi) CBN_HPAR16(S, s) CBN_HPAR16(T, t)
            cbn_affine16h(x + r * m + c, out + r * m + c, H, S, T, relu);
            cbn_affine16h(x + (r + 1) * m + c, out + (r + 1) * m + c, H, S, T, relu);
        }
    if (r < n)
        cbn_rows_affine_f16(x + r * m, out + r * m, m, 1, m, hi, s, t, relu, 0);
}
CBN_T512 CBN_PASS void cbn_rows_dx_f16_512(const cbn_half* x, const cbn_half* dy,
                                           const cbn_half* y, cbn_half* dx, Py_ssize_t ld,
                                           Py_ssize_t n, Py_ssize_t m, const float* hi,
                                           const float* s, const float* t, const float* k) {
    Py_ssize_t r, c, o;
    if (ld != m || !CBN_HROWS16(n, m)) {
        cbn_rows_dx_f16(x, dy, y, dx, ld, n, m, hi, s, t, k, 0);
        return;
    }
    for (r = 0; r + 2 <= n; r += 2)
        for (c = 0; c < m; c += 16) {
            CBN_HPAR16(H, hi) CBN_HPAR16(S, s) CBN_HPAR16(T, t) CBN_HPAR16(K, k)
            o = r * m + c;
            cbn_dx16h(x + o, dy + o, y ? y + o : NULL, dx + o, H, S, T, K);
            o += m;
            cbn_dx16h(x + o, dy + o, y ? y + o : NULL, dx + o, H, S, T, K);
        }
    if (r < n)
        cbn_rows_dx_f16(x + r * m, dy + r * m, y ? y + r * m : NULL, dx + r * m, m, 1, m, hi,
                        s, t, k, 0);
}
/* nr short runs of n values, as cbn_runs_affine_short_f16 (runs under 16 values: that) */
CBN_T512 CBN_PASS void cbn_runs_affine_short_f16_512(const cbn_half* x, cbn_half* out,
                                                     Py_ssize_t n, Py_ssize_t nr,
                                                     const float* hi, const float* s,
                                                     const float* t, int relu) {
    __m512 H, S, T, e;
    Py_ssize_t i, j;
    if (n < 16) {
        cbn_runs_affine_short_f16(x, out, n, nr, hi, s, t, relu);
        return;
    }
    for (j = 0; j < nr; j++, x += n, out += n) {
        H = _mm512_set1_ps(hi[j]);
        S = _mm512_set1_ps(s[j]);
        T = _mm512_set1_ps(t[j]);
        e = cbn_vaffine16h(x + n - 16, H, S, T, relu);
        for (i = 0; i < n - 16; i += 16)
            cbn_affine16h(x + i, out + i, H, S, T, relu);
        cbn_st16h(out + n - 16, e);
    }
}
/* the same for dx (cbn_runs_dx_short_f16) */
CBN_T512 CBN_PASS void cbn_runs_dx_short_f16_512(const cbn_half* x, const cbn_half* dy,
                                                 const cbn_half* y, cbn_half* dx,
                                                 Py_ssize_t n, Py_ssize_t nr, const float* hi,
                                                 const float* s, const float* t,
                                                 const float* k) {
    __m512 H, S, T, K, e;
    Py_ssize_t i, j;
    if (n < 16) {
        cbn_runs_dx_short_f16(x, dy, y, dx, n, nr, hi, s, t, k);
        return;
    }
    for (j = 0; j < nr; j++, x += n, dy += n, dx += n, y = y ? y + n : NULL) {
        H = _mm512_set1_ps(hi[j]);
        S = _mm512_set1_ps(s[j]);
        T = _mm512_set1_ps(t[j]);
        K = _mm512_set1_ps(k[j]);
        e = cbn_vdx16h(x + n - 16, dy + n - 16, y ? y + n - 16 : NULL, H, S, T, K);
        for (i = 0; i < n - 16; i += 16)
            cbn_dx16h(x + i, dy + i, y ? y + i : NULL, dx + i, H, S, T, K);
        cbn_st16h(dx + n - 16, e);
    }
}
/* The float16 sums of a run (cbn_sums_f16, cbn_gsums_f16) likewise: CBN_HREDUCE's 32
 * values per step as two vectors of 16, whose lanes sum what the AVX2 loop's four
 * vectors of 8 sum, combined in the same order (a0 + a2 and a1 + a3 first). */
#define CBN_HDEV16(k) d = _mm512_sub_ps(cbn_ld16h(x + i + k), _mm512_set1_ps(rf)); g = d;
#define CBN_HGDEV16(k)                                                                      \
    g = cbn_ld16h(dy + i + k);                                                              \
    d = _mm512_sub_ps(cbn_ld16h(x + i + k), _mm512_set1_ps(mf));
#define CBN_HGDEV_MASKED16(k)                                                               \
    g = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(cbn_ld16h(y + i + k), _mm512_setzero_ps(),   \
                                               _CMP_NLE_UQ), cbn_ld16h(dy + i + k));        \
    d = _mm512_sub_ps(cbn_ld16h(x + i + k), _mm512_set1_ps(mf));
/* lanes 8 .. 15 of v */
CBN_T512 static inline __m256 cbn_hi8(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}
/* the two halves of v added: lanes j and j + 8 */
CBN_T512 static inline __m256 cbn_fold16(__m512 v) {
    return _mm256_add_ps(_mm512_castps512_ps256(v), cbn_hi8(v));
}
#define CBN_HREDUCE512(D)                                                                   \
    {                                                                                       \
        const __m512 one_ = _mm512_set1_ps(1.0f);                                           \
        __m256d A = _mm256_setzero_pd(), Q = A;                                             \
        while (i + 32 <= n) {                                                               \
            __m512 a0 = _mm512_setzero_ps(), a1 = a0, q0 = a0, q1 = a0, g, d;               \
            Py_ssize_t j_, k_ = (n - i) / 32 < CBN_HK ? (n - i) / 32 : CBN_HK;              \
            for (j_ = 0; j_ < k_; j_++, i += 32) {                                          \
                D##16(0) a0 = _mm512_fmadd_ps(g, one_, a0); q0 = _mm512_fmadd_ps(g, d, q0);  \
                D##16(16) a1 = _mm512_fmadd_ps(g, one_, a1); q1 = _mm512_fmadd_ps(g, d, q1); \
            }                                                                               \
            A = _mm256_add_pd(A, cbn_wide8(cbn_fold16(_mm512_add_ps(a0, a1))));             \
            Q = _mm256_add_pd(Q, cbn_wide8(cbn_fold16(_mm512_add_ps(q0, q1))));             \
        }                                                                                   \
        CBN_HREDUCE_TAIL(D)                                                                 \
    }
#undef CBN_HRED
#define CBN_HRED CBN_HREDUCE512
CBN_T512 CBN_PASS void cbn_sums_f16_512(const cbn_half* x, Py_ssize_t n, double ref,
                                        double* acc) {
    CBN_SB_F16
}
CBN_T512 CBN_PASS void cbn_gsums_f16_512(const cbn_half* x, const cbn_half* dy,
                                         const cbn_half* y, Py_ssize_t n, double mean,
                                         double* acc) {
    CBN_GB_F16
}
#undef CBN_HRED
#define CBN_HRED CBN_HREDUCE
/* The channels-last float16 sums in cache (cbn_tiles32_f16 without its walk) in tiles
 * of 16 channels, through the same loop (CBN_HTILE_ROWS): each lane does what the AVX2
 * tiles' lane for its channel does, over the same blocks of rows; the channels after
 * the last whole tile of 16 go to the AVX2 tiles. */
#define CBN_HROW16(o, A, Q)                                                                 \
    {                                                                                       \
        const __m512 d_ = _mm512_sub_ps(cbn_ld16h(x + (o)), R);                             \
        __m512 g_ = d_;                                                                     \
        if (grad) {                                                                         \
            g_ = cbn_ld16h(dy + (o));                                                       \
            if (y)                                                                          \
                g_ = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(cbn_ld16h(y + (o)), Z16,         \
                                                            _CMP_NLE_UQ), g_);              \
        }                                                                                   \
        A = _mm512_fmadd_ps(g_, one_, A);                                                   \
        Q = _mm512_fmadd_ps(g_, d_, Q);                                                     \
    }
CBN_T512 static inline __m512d cbn_cvt8d(__m512 v, int upper) {
    return _mm512_cvtps_pd(upper ? cbn_hi8(v) : _mm512_castps512_ps256(v));
}
CBN_T512 CBN_PASS void cbn_tiles32_f16_512(const cbn_half* x, const cbn_half* dy,
                                           const cbn_half* y, Py_ssize_t ld, Py_ssize_t n,
                                           Py_ssize_t m, const double* ref, double* s1,
                                           double* s2, int grad) {
    const __m512 Z16 = _mm512_setzero_ps(), one_ = _mm512_set1_ps(1.0f);
    const __m512d Z = _mm512_setzero_pd();
    Py_ssize_t c, r, r0, nb, o, m16 = m & ~(Py_ssize_t)15;
    for (r0 = 0; r0 < n && m16; r0 += nb) {
        nb = CBN_TILE_ROWS(ld, grad ? (y ? 3 : 2) : 1);
        nb = n - r0 < nb ? n - r0 : nb;
        for (c = 0; c < m16; c += 16) {
            __m512d L0 = _mm512_loadu_pd(ref + c), L1 = _mm512_loadu_pd(ref + c + 8);
            const __m512 R = _mm512_castpd_ps(_mm512_insertf64x4(
                _mm512_castpd256_pd512(_mm256_castps_pd(_mm512_cvtpd_ps(L0))),
                _mm256_castps_pd(_mm512_cvtpd_ps(L1)), 1));
            __m512d A0 = Z, A1 = Z, Q0 = Z, Q1 = Z, N = _mm512_set1_pd((double)nb);
            L0 = _mm512_sub_pd(L0, cbn_cvt8d(R, 0));
            L1 = _mm512_sub_pd(L1, cbn_cvt8d(R, 1));
            CBN_HTILE_ROWS(__m512, Z16, CBN_HROW16, _mm512_add_ps, cbn_cvt8d, _mm512_add_pd,
                           _mm512_fnmadd_pd)
            cbn_add8(s1 + c, A0);
            cbn_add8(s1 + c + 8, A1);
            cbn_add8(s2 + c, Q0);
            cbn_add8(s2 + c + 8, Q1);
        }
    }
    if (m16 < m)
        cbn_tiles32_f16(x + m16, dy ? dy + m16 : NULL, y ? y + m16 : NULL, ld, n, m - m16,
                        ref + m16, s1 + m16, s2 + m16, grad, 0);
}
#endif
#else
/* Without F16C: float32 blocks, stored plainly (stream is ignored). */
CBN_PASS void cbn_run_affine_f16(const cbn_half* x, cbn_half* out, Py_ssize_t n, float hi,
                                 float s, float t, int relu, int stream) {
    float bx[CBN_HCHUNK];
    CBN_HBLOCKS(n, cbn_h2f_n(x + b_, bx, w_); cbn_run_affine_f32(bx, bx, w_, hi, s, t, relu);
                   cbn_f2h_n(bx, out + b_, w_);)
}
CBN_PASS void cbn_runs_affine_short_f16(const cbn_half* x, cbn_half* out, Py_ssize_t n,
                                        Py_ssize_t nr, const float* hi, const float* s,
                                        const float* t, int relu) {
    Py_ssize_t j;
    for (j = 0; j < nr; j++)
        cbn_run_affine_f16(x + j * n, out + j * n, n, hi[j], s[j], t[j], relu, 0);
}

CBN_PASS void cbn_rows_affine_f16(const cbn_half* x, cbn_half* out, Py_ssize_t ld, Py_ssize_t n,
                                  Py_ssize_t m, const float* hi, const float* s, const float* t,
                                  int relu, int stream) {
    float bx[CBN_HCHUNK];
    Py_ssize_t r;
    for (r = 0; r < n; r++, x += ld, out += ld) {
        CBN_HBLOCKS(m, cbn_h2f_n(x + b_, bx, w_);
                       cbn_rows_affine_f32(bx, bx, w_, 1, w_, hi + b_, s + b_, t + b_, relu);
                       cbn_f2h_n(bx, out + b_, w_);)
    }
}

CBN_PASS void cbn_run_dx_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                             cbn_half* dx, Py_ssize_t n, float hi, float s, float t, float k,
                             int stream) {
    float bx[CBN_HCHUNK], bg[CBN_HCHUNK], by[CBN_HCHUNK];
    CBN_HBLOCKS(n, cbn_h2f_n(x + b_, bx, w_); cbn_h2f_n(dy + b_, bg, w_);
                   if (y) cbn_h2f_n(y + b_, by, w_);
                   cbn_run_dx_f32(bx, bg, y ? by : NULL, bx, w_, hi, s, t, k);
                   cbn_f2h_n(bx, dx + b_, w_);)
}

CBN_PASS void cbn_rows_dx_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                              cbn_half* dx, Py_ssize_t ld, Py_ssize_t n, Py_ssize_t m,
                              const float* hi, const float* s, const float* t, const float* k,
                              int stream) {
    float bx[CBN_HCHUNK], bg[CBN_HCHUNK], by[CBN_HCHUNK];
    Py_ssize_t r;
    for (r = 0; r < n; r++, x += ld, dy += ld, dx += ld, y = y ? y + ld : NULL) {
        CBN_HBLOCKS(m, cbn_h2f_n(x + b_, bx, w_); cbn_h2f_n(dy + b_, bg, w_);
                       if (y) cbn_h2f_n(y + b_, by, w_);
                       cbn_rows_dx_f32(bx, bg, y ? by : NULL, bx, w_, 1, w_, hi + b_, s + b_,
                                       t + b_, k + b_);
                       cbn_f2h_n(bx, dx + b_, w_);)
    }
}
CBN_PASS void cbn_runs_dx_short_f16(const cbn_half* x, const cbn_half* dy, const cbn_half* y,
                                    cbn_half* dx, Py_ssize_t n, Py_ssize_t nr, const float* hi,
                                    const float* s, const float* t, const float* k) {
    Py_ssize_t j;
    for (j = 0; j < nr; j++)
        cbn_run_dx_f16(x + j * n, dy + j * n, y ? y + j * n : NULL, dx + j * n, n, hi[j], s[j],
                       t[j], k[j], 0);
}
#endif
#if !defined(CBN_HAVE_H512)
#define cbn_run_affine_f16_512(x, out, n, hi, s, t, relu) \
    cbn_run_affine_f16(x, out, n, hi, s, t, relu, 0)
#define cbn_run_dx_f16_512(x, dy, y, dx, n, hi, s, t, k) \
    cbn_run_dx_f16(x, dy, y, dx, n, hi, s, t, k, 0)
#define cbn_rows_affine_f16_512(x, out, ld, n, m, hi, s, t, relu) \
    cbn_rows_affine_f16(x, out, ld, n, m, hi, s, t, relu, 0)
#define cbn_rows_dx_f16_512(x, dy, y, dx, ld, n, m, hi, s, t, k) \
    cbn_rows_dx_f16(x, dy, y, dx, ld, n, m, hi, s, t, k, 0)
#define cbn_sums_f16_512 cbn_sums_f16
#define cbn_runs_affine_short_f16_512 cbn_runs_affine_short_f16
#define cbn_runs_dx_short_f16_512 cbn_runs_dx_short_f16
#define cbn_tiles32_f16_512(x, dy, y, ld, n, m, ref, s1, s2, grad)                          \
    ((grad) ? cbn_rows_gsums_tiled_f16(x, dy, y, ld, n, m, ref, s1, s2, 0)                  \
            : cbn_rows_sums_tiled_f16(x, ld, n, m, ref, s1, s2, 0))
#define cbn_gsums_f16_512 cbn_gsums_f16
#endif
#if !defined(CBN_TILED_SUMS_F16)
#define cbn_rows_sums_tiled_f16(x, ld, n, m, ref, s1, s2, mem) \
    cbn_rows_sums_f16(x, ld, n, m, ref, s1, s2)
#define cbn_rows_sums8_f16(x, ld, n, m, ref, s1, s2, pf) \
    cbn_rows_sums_f16(x, ld, n, m, ref, s1, s2)
#define cbn_rows_gsums8_f16(x, dy, y, ld, n, m, mean, s1, s2, pf) \
    cbn_rows_gsums_f16(x, dy, y, ld, n, m, mean, s1, s2)
#define cbn_rows_gsums_tiled_f16(x, dy, y, ld, n, m, mean, s1, s2, mem) \
    cbn_rows_gsums_f16(x, dy, y, ld, n, m, mean, s1, s2)
#endif

/* The float32 output passes over interleaved rows in cache (cbn_rows_affine_f32,
 * cbn_rows_dx_f32: per-channel tables, four and six loads per vector of output) again
 * with AVX-512F vectors of 16: in the AVX2 build, run only where _kernels.pyx chooses
 * them (_r512: Zen 5, which executes 512-bit loads and operations at full width).
 * Every value goes through the operations of the AVX2 passes (the affine's contracted
 * fma(x - hi, s, t), dx's fma(x - hi, s, g * k) + t, ReLU and mask keeping NaN), so the
 * outputs are bit-identical (the tests compare the two).  Each row's output is stored
 * 64-byte aligned after a masked head (its tables start at its offset: _matched), the
 * head and the last partial vector masked.  Measured in a C loop on the 2-core AMD EPYC
 * Zen 5 VM (bench/probes/rows512.c: one thread, rows 16 bytes into a line, tables at the
 * same offset), this / the AVX2 pass: 32x1024 (L2) affine 0.64, dx 0.73; 128x1024 (a
 * thread's half of 256x1024, L2) 0.77, 0.89; 256x1024 (L3) 0.87, 0.91; 128x400 and
 * 128x1027 0.73-0.83, 0.71-0.86 (memcpy of x: 0.39-0.52 of the AVX2 affine in L2: it is
 * bound by its loads, not the bytes).  Planar runs (one scalar per run for each table)
 * gained nothing (0.90-1.06): they keep AVX2.  Beyond the register tiles' sizes (_store:
 * arrays of tens of MB) they keep AVX2 too: there this took 1.07-1.19x the time
 * (2x112x112x128 inference, 4096x512 backward, in one process). */
#if defined(CBN_HAVE_SUMS512)
#define CBN_HAVE_R512 1
CBN_T512 static inline __mmask16 cbn_lanes16(Py_ssize_t n) {
    return (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
}
#define CBN_LD16(p) _mm512_maskz_loadu_ps(k_, p)
/* The arithmetic on 16 values, written once (the masked vectors below and the register
 * passes share it): the affine, then max(., 0) with relu (NaN stays NaN); the masked
 * backward's g (dy, 0 where y <= 0: NaN y keeps dy); dx from x and g */
CBN_T512 static inline __m512 cbn_vaffine16(__m512 x, __m512 H, __m512 S, __m512 T,
                                            int relu) {
    const __m512 v = _mm512_fmadd_ps(_mm512_sub_ps(x, H), S, T);
    return relu ? _mm512_max_ps(_mm512_setzero_ps(), v) : v;
}
CBN_T512 static inline __m512 cbn_vmask16(__m512 g, __m512 y) {
    return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(y, _mm512_setzero_ps(), _CMP_NLE_UQ), g);
}
CBN_T512 static inline __m512 cbn_vdx16(__m512 x, __m512 g, __m512 H, __m512 S, __m512 T,
                                        __m512 K) {
    return _mm512_add_ps(_mm512_fmadd_ps(_mm512_sub_ps(x, H), S, _mm512_mul_ps(g, K)), T);
}
CBN_T512 static inline void cbn_affine16(const float* x, float* out, const float* hi,
                                          const float* s, const float* t, int relu,
                                          __mmask16 k_) {
    _mm512_mask_storeu_ps(out, k_, cbn_vaffine16(CBN_LD16(x), CBN_LD16(hi), CBN_LD16(s),
                                                 CBN_LD16(t), relu));
}
CBN_T512 static inline void cbn_dx16(const float* x, const float* dy, const float* y,
                                      float* dx, const float* hi, const float* s,
                                      const float* t, const float* k, __mmask16 k_) {
    __m512 g = CBN_LD16(dy);
    if (y)
        g = cbn_vmask16(g, CBN_LD16(y));
    _mm512_mask_storeu_ps(dx, k_, cbn_vdx16(CBN_LD16(x), g, CBN_LD16(hi), CBN_LD16(s),
                                            CBN_LD16(t), CBN_LD16(k)));
}
/* BODY over the m values of a row (i: the first of a vector, k_: its lanes), the
 * values before DST + i is 64-byte aligned first */
#define CBN_LANES16(DST, M, BODY)                                                           \
    {                                                                                       \
        Py_ssize_t i = 0, h_ = cbn_head_to(DST, (Py_ssize_t)sizeof *(DST), M, 64);          \
        __mmask16 k_;                                                                       \
        if (h_) {                                                                           \
            k_ = cbn_lanes16(h_);                                                           \
            BODY                                                                            \
        }                                                                                   \
        k_ = (__mmask16)0xFFFF;                                                             \
        for (i = h_; i + 16 <= (M); i += 16) {                                              \
            BODY                                                                            \
        }                                                                                   \
        if (i < (M)) {                                                                      \
            k_ = cbn_lanes16((M) - i);                                                      \
            BODY                                                                            \
        }                                                                                   \
    }
CBN_T512 CBN_PASS void cbn_rows_affine_f32_512(const float* x, float* out, Py_ssize_t ld,
                                                Py_ssize_t n, Py_ssize_t m, const float* hi,
                                                const float* s, const float* t, int relu) {
    Py_ssize_t r;
    for (r = 0; r < n; r++, x += ld, out += ld) {
        if (relu)
            CBN_LANES16(out, m, cbn_affine16(x + i, out + i, hi + i, s + i, t + i, 1, k_);)
        else
            CBN_LANES16(out, m, cbn_affine16(x + i, out + i, hi + i, s + i, t + i, 0, k_);)
    }
}
CBN_T512 CBN_PASS void cbn_rows_dx_f32_512(const float* x, const float* dy, const float* y,
                                            float* dx, Py_ssize_t ld, Py_ssize_t n,
                                            Py_ssize_t m, const float* hi, const float* s,
                                            const float* t, const float* k) {
    Py_ssize_t r;
    for (r = 0; r < n; r++, x += ld, dy += ld, dx += ld) {
        if (y) {
            CBN_LANES16(dx, m, cbn_dx16(x + i, dy + i, y + i, dx + i, hi + i, s + i, t + i,
                                        k + i, k_);)
            y += ld;
        } else {
            CBN_LANES16(dx, m, cbn_dx16(x + i, dy + i, NULL, dx + i, hi + i, s + i, t + i,
                                        k + i, k_);)
        }
    }
}
/* The same passes over contiguous rows (ld = m) of m = 16 Q values, Q from 4 to 8 (dx:
 * 4), taken as one run of n m values whose tables repeat every m values: every table's Q
 * vectors stay in registers (affine 3 Q, dx 16 of the 32), so that a vector of output
 * costs its loads of x (and dy) and one store, and the rows are read and written as one
 * stream.  The tables are rotated to the run's first 64-byte-aligned output value, whose
 * stores are then aligned; the values before it and the last ones (fewer than m) go in
 * masked vectors (cbn_affine16, cbn_dx16).  The arithmetic is the vectors' above:
 * bit-identical outputs. */
/* STEP(q) for q = 0 .. Q - 1, Q a constant from 4 to 8 */
#define CBN_UPTO8(Q, STEP)                                                                  \
    CBN_EACH4(STEP)                                                                         \
    if ((Q) > 4) STEP(4)                                                                    \
    if ((Q) > 5) STEP(5)                                                                    \
    if ((Q) > 6) STEP(6)                                                                    \
    if ((Q) > 7) STEP(7)
/* V[q] = the vectors q = 0 .. m / 16 - 1 of table src rotated by h (in buf) */
#define CBN_ROT16(V, buf, src)                                                              \
    CBN_ROTATE(buf, src, m, h)                                                              \
    for (q = 0; q < m / 16; q++)                                                            \
        V[q] = _mm512_loadu_ps((buf) + 16 * q);
#define CBN_PAFFINE(q)                                                                      \
    _mm512_storeu_ps(out + i + 16 * (q), cbn_vaffine16(_mm512_loadu_ps(x + i + 16 * (q)),  \
                                                       H[q], S[q], T[q], relu));
#define CBN_PAFFINE_RUN(Q)                                                                  \
    for (; i + 16 * (Q) <= e; i += 16 * (Q)) {                                              \
        CBN_UPTO8(Q, CBN_PAFFINE)                                                           \
    }                                                                                       \
    break;
CBN_T512 CBN_PASS void cbn_period_affine_f32_512(const float* x, float* out, Py_ssize_t n,
                                                  Py_ssize_t m, const float* hi,
                                                  const float* s, const float* t, int relu) {
    float rh[128], rs[128], rt[128];
    __m512 H[8], S[8], T[8];
    Py_ssize_t e = n * m, h = cbn_head_to(out, (Py_ssize_t)sizeof(float), e, 64), i = h, j, q;
    if (h)
        cbn_affine16(x, out, hi, s, t, relu, cbn_lanes16(h));
    CBN_ROT16(H, rh, hi)
    CBN_ROT16(S, rs, s)
    CBN_ROT16(T, rt, t)
    switch (m / 16) {
    case 4: CBN_PAFFINE_RUN(4)
    case 5: CBN_PAFFINE_RUN(5)
    case 6: CBN_PAFFINE_RUN(6)
    case 7: CBN_PAFFINE_RUN(7)
    default: CBN_PAFFINE_RUN(8)
    }
    for (j = 0; i < e; i += 16, j += 16)
        cbn_affine16(x + i, out + i, rh + j, rs + j, rt + j, relu, cbn_lanes16(e - i));
}
#define CBN_PDX(q)                                                                          \
    {                                                                                       \
        const Py_ssize_t o_ = i + 16 * (q);                                                 \
        __m512 g_ = _mm512_loadu_ps(dy + o_);                                               \
        if (y) g_ = cbn_vmask16(g_, _mm512_loadu_ps(y + o_));                               \
        _mm512_storeu_ps(dx + o_, cbn_vdx16(_mm512_loadu_ps(x + o_), g_, H[q], S[q], T[q],  \
                                            K[q]));                                         \
    }
CBN_T512 CBN_PASS void cbn_period64_dx_f32_512(const float* x, const float* dy, const float* y,
                                                float* dx, Py_ssize_t n, const float* hi,
                                                const float* s, const float* t,
                                                const float* k) {
    const Py_ssize_t m = 64;
    float rh[64], rs[64], rt[64], rk[64];
    __m512 H[4], S[4], T[4], K[4];
    Py_ssize_t e = n * m, h = cbn_head_to(dx, (Py_ssize_t)sizeof(float), e, 64), i = h, j, q;
    if (h)
        cbn_dx16(x, dy, y, dx, hi, s, t, k, cbn_lanes16(h));
    CBN_ROT16(H, rh, hi)
    CBN_ROT16(S, rs, s)
    CBN_ROT16(T, rt, t)
    CBN_ROT16(K, rk, k)
    for (; i + m <= e; i += m) {
        CBN_EACH4(CBN_PDX)
    }
    for (j = 0; i < e; i += 16, j += 16)
        cbn_dx16(x + i, dy + i, y ? y + i : NULL, dx + i, rh + j, rs + j, rt + j, rk + j,
                 cbn_lanes16(e - i));
}
#else
#define cbn_rows_affine_f32_512 cbn_rows_affine_f32
#define cbn_rows_dx_f32_512 cbn_rows_dx_f32
#define cbn_period_affine_f32_512(x, out, n, m, hi, s, t, relu) \
    cbn_rows_affine_f32(x, out, m, n, m, hi, s, t, relu)
#define cbn_period64_dx_f32_512(x, dy, y, dx, n, hi, s, t, k) \
    cbn_rows_dx_f32(x, dy, y, dx, 64, n, 64, hi, s, t, k)
#endif

/* ------------------------------------------------------- per-channel scales
 * cbn_scale_invstd(w, v, eps, n): w[i] *= 1 / sqrt(v[i] + eps), and by 0 where
 * v[i] + eps == 0 (as PyTorch), for parameter tables rounded to float32 afterwards
 * (float32 and float16 data).  With AVX2 and FMA: the float32 estimate (rsqrtps, 12
 * bits) refined by two Newton steps in float64, relative error below 2^-44, where every
 * t = v + eps of a vector lies in [2^-125, 2^125] (else, and for the last n % 4, the
 * square root and division: NaN, inf, negative and tiny t keep their exact results).
 * The divider bounds the exact loop: on the 2-core AMD EPYC Zen 5 VM, 2048 channels in
 * L1, 1.70-1.76 TSC ticks per channel against 0.85 with the estimate; no float32 scale
 * of 4 M random w and t over 2^-30..2^30 changed.  float64 data's tables keep the
 * exact loop (_kernels.pyx).
 */
#include <math.h>
/* 1 / sqrt(t), 0 where t == 0 (branch-free: the select, not a jump, so that loops over
 * channels vectorize); the exact loop over n channels */
static inline double cbn_invstd1(double t) {
    double r = 1.0 / sqrt(t);
    return t == 0.0 ? 0.0 : r;
}
static void cbn_scale_invstd_exact(double* w, const double* v, double eps, Py_ssize_t n) {
    Py_ssize_t i;
    for (i = 0; i < n; i++)
        w[i] *= cbn_invstd1(v[i] + eps);
}
#if defined(__AVX2__) && defined(__FMA__)
/* 1 / sqrt(t) of four channels as cbn_scale_invstd takes it */
static inline __m256d cbn_invstd4(__m256d t) {
    const __m256d H = _mm256_set1_pd(1.5);
    const __m256d LO = _mm256_set1_pd(0x1p-125), HI = _mm256_set1_pd(0x1p125);
    __m256d ok = _mm256_and_pd(_mm256_cmp_pd(t, LO, _CMP_GE_OQ),
                               _mm256_cmp_pd(t, HI, _CMP_LE_OQ));
    __m256d y, h;
    if (_mm256_movemask_pd(ok) == 15) {
        h = _mm256_mul_pd(t, _mm256_set1_pd(0.5));
        y = _mm256_cvtps_pd(_mm_rsqrt_ps(_mm256_cvtpd_ps(t)));
        y = _mm256_mul_pd(y, _mm256_fnmadd_pd(h, _mm256_mul_pd(y, y), H));
        y = _mm256_mul_pd(y, _mm256_fnmadd_pd(h, _mm256_mul_pd(y, y), H));
    } else {
        y = _mm256_div_pd(_mm256_set1_pd(1.0), _mm256_sqrt_pd(t));
        y = _mm256_andnot_pd(_mm256_cmp_pd(t, _mm256_setzero_pd(), _CMP_EQ_OQ), y);
    }
    return y;
}
#define CBN_INVSTD4 1
static void cbn_scale_invstd(double* w, const double* v, double eps, Py_ssize_t n) {
    const __m256d E = _mm256_set1_pd(eps);
    Py_ssize_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256d y = cbn_invstd4(_mm256_add_pd(_mm256_loadu_pd(v + i), E));
        _mm256_storeu_pd(w + i, _mm256_mul_pd(_mm256_loadu_pd(w + i), y));
    }
    cbn_scale_invstd_exact(w + i, v + i, eps, n - i);
}
#else
#define CBN_INVSTD4 0
#define cbn_scale_invstd cbn_scale_invstd_exact
#endif

/* cbn_params_f32(m, v, w, b, dflt, eps, inv, hi, s, t, n): the float32 parameter table
 * of n channels (hi, scale s, shift t) from float32 columns with unit stride (NULL: the
 * column's dflt[k] throughout) in one pass, what _param_chunk's general path (double
 * columns, cbn_scale_invstd, _set_params) makes of them bit for bit: a float32 centre
 * is its own hi with no rest to fold into the shift, so hi = m and t = b, and s = w,
 * times 1 / sqrt(v + eps) with inv, four channels at a time from the first as
 * cbn_scale_invstd goes.  Measured (2-core Intel Xeon VM, float32 (N, 1024) inference,
 * whole calls): the general path's set-up took 1.45-1.7 us per thread, this 0.9-1.1. */
static inline void cbn_col_copy(const float* a, double d, float* dst, Py_ssize_t n) {
    Py_ssize_t i;
    if (a)
        memcpy(dst, a, (size_t)n * sizeof(float));
    else
        for (i = 0; i < n; i++) dst[i] = (float)d;
}
static void cbn_params_f32(const float* m, const float* v, const float* w, const float* b,
                           const double* dflt, double eps, int inv, float* hi, float* s,
                           float* t, Py_ssize_t n) {
    Py_ssize_t i = 0;
    cbn_col_copy(m, dflt[0], hi, n);
    cbn_col_copy(b, dflt[3], t, n);
#if CBN_INVSTD4
    {
        const __m256d E = _mm256_set1_pd(eps);
        for (; i + 4 <= n; i += 4) {
            __m256d W = w ? _mm256_cvtps_pd(_mm_loadu_ps(w + i)) : _mm256_set1_pd(dflt[2]);
            if (inv) {
                __m256d V = v ? _mm256_cvtps_pd(_mm_loadu_ps(v + i)) : _mm256_set1_pd(dflt[1]);
                W = _mm256_mul_pd(W, cbn_invstd4(_mm256_add_pd(V, E)));
            }
            _mm_storeu_ps(s + i, _mm256_cvtpd_ps(W));
        }
    }
#endif
    for (; i < n; i++) {
        double wi = w ? (double)w[i] : dflt[2];
        if (inv)
            wi *= cbn_invstd1((v ? (double)v[i] : dflt[1]) + eps);
        s[i] = (float)wi;
    }
}

/* ------------------------------------------------------------ CPU features
 * 1 when this CPU (and OS) can run the AVX2 + FMA + F16C build of the kernels.
 */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
/* cpuid directly: __builtin_cpu_supports("f16c") is unknown to some clang versions. */
#include <cpuid.h>
static int cbn_cpu_has_avx2(void) {
    unsigned int a, b, c, d, lo, hi;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    if (!((c >> 12) & 1) || !((c >> 27) & 1) || !((c >> 28) & 1) || !((c >> 29) & 1))
        return 0;                                          /* FMA, OSXSAVE, AVX, F16C */
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 6) != 6) return 0;                           /* OS saves YMM state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 5) & 1;                                   /* AVX2 */
}
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
#include <intrin.h>
static int cbn_cpu_has_avx2(void) {
    int r[4];
    __cpuid(r, 1);
    int fma = (r[2] >> 12) & 1, osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1;
    int f16c = (r[2] >> 29) & 1;
    if (!(fma && osxsave && avx && f16c)) return 0;
    if ((_xgetbv(0) & 6) != 6) return 0;                  /* OS saves YMM state */
    __cpuidex(r, 7, 0);
    return (r[1] >> 5) & 1;                                /* AVX2 */
}
#else
static int cbn_cpu_has_avx2(void) { return 0; }
#endif

/* The last-level cache's size in bytes from cpuid's deterministic cache parameters
 * (leaf 0x8000001D on AMD, 4 on Intel: ways * partitions * line * sets of the
 * highest level listed); 0 where unknown. */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
static int cbn_cpuid(unsigned int leaf, unsigned int sub, unsigned int* r) {
    if ((unsigned int)__get_cpuid_max(leaf & 0x80000000u, NULL) < leaf) return 0;
    __cpuid_count(leaf, sub, r[0], r[1], r[2], r[3]);
    return 1;
}
#define CBN_HAVE_CPUID 1
#elif defined(_MSC_VER) && (defined(_M_X64) || defined(_M_IX86))
static int cbn_cpuid(unsigned int leaf, unsigned int sub, unsigned int* r) {
    int v[4];
    __cpuid(v, (int)(leaf & 0x80000000u));
    if ((unsigned int)v[0] < leaf) return 0;
    __cpuidex(v, (int)leaf, (int)sub);
    r[0] = (unsigned int)v[0]; r[1] = (unsigned int)v[1];
    r[2] = (unsigned int)v[2]; r[3] = (unsigned int)v[3];
    return 1;
}
#define CBN_HAVE_CPUID 1
#endif

static Py_ssize_t cbn_llc_bytes(void) {
#ifdef CBN_HAVE_CPUID
    static const unsigned int leaves[2] = {0x8000001Du, 4u};
    unsigned int r[4], sub;
    int k, level, best = 0;
    Py_ssize_t size, best_size = 0;
    for (k = 0; k < 2 && best_size == 0; k++) {
        for (sub = 0; sub < 16 && cbn_cpuid(leaves[k], sub, r); sub++) {
            if ((r[0] & 31) == 0) break;                  /* no more caches */
            if ((r[0] & 31) == 1) continue;               /* data caches and unified ones */
            level = (r[0] >> 5) & 7;
            size = (Py_ssize_t)((r[1] >> 22) + 1) * (((r[1] >> 12) & 1023) + 1) *
                   ((r[1] & 4095) + 1) * ((Py_ssize_t)r[2] + 1);
            if (level > best || (level == best && size > best_size)) {
                best = level;
                best_size = size;
            }
        }
    }
    return best_size;
#else
    return 0;
#endif
}

/* 1 if cpuid's vendor string is the 12 bytes ebx, edx, ecx, else 0. */
static int cbn_cpu_vendor(unsigned int ebx, unsigned int edx, unsigned int ecx) {
#ifdef CBN_HAVE_CPUID
    unsigned int r[4];
    if (!cbn_cpuid(0, 0, r)) return 0;
    return r[1] == ebx && r[3] == edx && r[2] == ecx;
#else
    (void)ebx; (void)edx; (void)ecx;
    return 0;
#endif
}

/* 1 on an Intel CPU (cpuid vendor "GenuineIntel"), else 0. */
static int cbn_cpu_is_intel(void) {
    return cbn_cpu_vendor(0x756e6547u, 0x49656e69u, 0x6c65746eu);
}

/* 1 where cpuid reports AVX-512F (leaf 7, ebx bit 16), else 0: among AMD family 0x19
 * CPUs it tells Zen 4 from Zen 3 (cbn._kernels uses it so to choose loops).  Whether
 * AVX-512 code may run also needs the OS's support: cbn_cpu_runs_avx512f below. */
static int cbn_cpu_has_avx512f(void) {
#ifdef CBN_HAVE_CPUID
    unsigned int r[4];
    return cbn_cpuid(7, 0, r) && ((r[1] >> 16) & 1u);
#else
    return 0;
#endif
}

/* 1 where AVX-512F code may run here: cpuid's flag, and the OS saves the opmask and ZMM
 * state (XCR0 bits 5-7 besides the YMM state's 1-2). */
static int cbn_cpu_runs_avx512f(void) {
#if defined(CBN_HAVE_SUMS512)
    unsigned int lo, hi;
    if (!cbn_cpu_has_avx2() || !cbn_cpu_has_avx512f()) return 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xE6u) == 0xE6u;
#else
    return 0;
#endif
}

/* The CPU family of an AMD CPU (cpuid vendor "AuthenticAMD"; 0x19 Zen 3 and 4, 0x1A Zen 5),
 * else 0. */
static int cbn_amd_family(void) {
#ifdef CBN_HAVE_CPUID
    unsigned int r[4], base;
    if (!cbn_cpu_vendor(0x68747541u, 0x69746e65u, 0x444d4163u)) return 0;
    if (!cbn_cpuid(1, 0, r)) return 0;
    base = (r[0] >> 8) & 0xFu;
    return (int)(base == 0xFu ? base + ((r[0] >> 20) & 0xFFu) : base);
#else
    return 0;
#endif
}

#endif /* CBN_KERNELS_C_H */
