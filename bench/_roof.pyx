# cython: language_level=3, boundscheck=False, wraparound=False
"""The memory roof (a parallel copy), the write floor (parallel stores) and the
accumulation floor (parallel float64 sums), built by bench/run.py with the project's
toolchain."""

import numpy as np

from cython.parallel cimport prange
from libc.string cimport memcpy

cimport numpy as cnp

cnp.import_array()

cdef enum:
    CHUNK = 1 << 16     # bytes per task


def copy(cnp.ndarray src, cnp.ndarray dst, int n_threads):
    """dst[...] = src (both C-contiguous, same size), in CHUNK-byte pieces split
    statically over n_threads threads, like the kernels split their work."""
    cdef char* s = <char*>cnp.PyArray_DATA(src)
    cdef char* d = <char*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(src), k, nk = (n + CHUNK - 1) // CHUNK
    with nogil:
        if n_threads > 1:
            for k in prange(nk, num_threads=n_threads, schedule='static'):
                memcpy(d + k * CHUNK, s + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK)
        else:   # the same pieces: memcpy of a whole large array would use streaming stores
            for k in range(nk):
                memcpy(d + k * CHUNK, s + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK)


cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    static uint64_t cbn_bench_read(const char* s, Py_ssize_t n) {
        uint64_t a = 0, b = 0, v;
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16) {
            memcpy(&v, s + i, 8);
            a |= v;
            memcpy(&v, s + i + 8, 8);
            b |= v;
        }
        for (; i < n; i++)
            a |= (unsigned char)s[i];
        return a | b;
    }
    """
    unsigned long long cbn_bench_read(const char* s, Py_ssize_t n) noexcept nogil


def read(cnp.ndarray src, int n_threads):
    """Reads all of src's bytes (C-contiguous) in CHUNK-byte pieces split statically over
    n_threads threads: the bench reads a buffer several times the last-level cache's
    share this VM keeps, so that the arrays timed next come from memory.  Returns the
    bytes OR-ed together (so that the reads are kept)."""
    cdef const char* s = <const char*>cnp.PyArray_DATA(src)
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(src), k, nk = (n + CHUNK - 1) // CHUNK
    cdef unsigned long long[::1] acc = np.zeros(nk, np.uint64)
    with nogil:
        for k in prange(nk, num_threads=n_threads, schedule='static'):
            acc[k] = cbn_bench_read(s + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK)
    return int(np.bitwise_or.reduce(np.asarray(acc)))


# The write floor of an output pass: what storing x's bytes costs at least, with the
# stores an output pass can use: plain vector stores (the lines are read for ownership
# first, unless in cache) or streaming ones (written straight to memory); a 32-bit
# pattern that no memset could write, so the compiler keeps the loop.
cdef extern from *:
    """
    #include <stdint.h>
    #if defined(__AVX__)
    #include <immintrin.h>
    #define CBN_BENCH_W 32
    #define CBN_BENCH_VEC __m256i
    #define CBN_BENCH_SET(p) _mm256_set1_epi32(p)
    #define CBN_BENCH_STORE(d, v) _mm256_store_si256((__m256i*)(void*)(d), v)
    #define CBN_BENCH_STREAM(d, v) _mm256_stream_si256((__m256i*)(void*)(d), v)
    #elif defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define CBN_BENCH_W 16
    #define CBN_BENCH_VEC __m128i
    #define CBN_BENCH_SET(p) _mm_set1_epi32(p)
    #define CBN_BENCH_STORE(d, v) _mm_store_si128((__m128i*)(void*)(d), v)
    #define CBN_BENCH_STREAM(d, v) _mm_stream_si128((__m128i*)(void*)(d), v)
    #endif
    static void cbn_bench_write(char* d, Py_ssize_t n, int stream) {
        const uint32_t p = 0x3f8ccccdu;     /* 1.1f */
        Py_ssize_t i = 0;
    #if defined(CBN_BENCH_W)
        const CBN_BENCH_VEC v = CBN_BENCH_SET((int)p);
        for (; i < n && ((uintptr_t)(d + i) & (CBN_BENCH_W - 1)); i++)
            d[i] = (char)(p >> (8 * (i & 3)));
        if (stream) {
            for (; i + CBN_BENCH_W <= n; i += CBN_BENCH_W)
                CBN_BENCH_STREAM(d + i, v);
            _mm_sfence();
        } else {
            for (; i + CBN_BENCH_W <= n; i += CBN_BENCH_W)
                CBN_BENCH_STORE(d + i, v);
        }
    #else
        (void)stream;
    #endif
        for (; i < n; i++)
            d[i] = (char)(p >> (8 * (i & 3)));
    }
    """
    void cbn_bench_write(char* d, Py_ssize_t n, int stream) noexcept nogil


def write(cnp.ndarray dst, int n_threads, bint stream):
    """Stores over all of dst's bytes (C-contiguous), streaming or plain, in CHUNK-byte
    pieces split statically over n_threads threads (as copy)."""
    cdef char* d = <char*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(dst), k, nk = (n + CHUNK - 1) // CHUNK
    with nogil:
        if n_threads > 1:
            for k in prange(nk, num_threads=n_threads, schedule='static'):
                cbn_bench_write(d + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK,
                                stream)
        else:
            for k in range(nk):
                cbn_bench_write(d + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK,
                                stream)


# The float16 conversion floor: what any float16 output pass costs at least, every value
# converted to float32 as it is read and back to float16 as it is written (F16C, 8 at a
# time; 16 at a time in AVX-512F vectors where cbn's passes take them, use_wide), with no
# arithmetic between; only where the roof is built with F16C (AVX2).
cdef extern from *:
    """
    #if defined(__F16C__)
    #include <immintrin.h>
    #define CBN_BENCH_F16C 1
    static void cbn_bench_h2h(const unsigned short* s, unsigned short* d, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 8 <= n; i += 8)
            _mm_storeu_si128((__m128i*)(d + i), _mm256_cvtps_ph(
                _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(s + i))), 0));
        for (; i < n; i++)
            d[i] = s[i];
    }
    __attribute__((target("avx512f")))
    static void cbn_bench_h2h_512(const unsigned short* s, unsigned short* d, Py_ssize_t n) {
        Py_ssize_t i = 0;
        for (; i + 16 <= n; i += 16)
            _mm256_storeu_si256((__m256i*)(d + i), _mm512_cvtps_ph(
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)(s + i))), 0));
        cbn_bench_h2h(s + i, d + i, n - i);
    }
    #else
    #define CBN_BENCH_F16C 0
    static void cbn_bench_h2h(const unsigned short* s, unsigned short* d, Py_ssize_t n) {
        (void)s; (void)d; (void)n;
    }
    #define cbn_bench_h2h_512 cbn_bench_h2h
    #endif
    """
    int CBN_BENCH_F16C
    void cbn_bench_h2h(const unsigned short* s, unsigned short* d, Py_ssize_t n) noexcept nogil
    void cbn_bench_h2h_512(const unsigned short* s, unsigned short* d,
                           Py_ssize_t n) noexcept nogil

cdef bint _wide = False


def use_wide(bint flag):
    """Convert in AVX-512F vectors (flag) or F16C's 8-value ones: the bench sets what cbn's
    float16 passes run on this CPU (cbn._kernels wide_halves()).  The caller checks
    that the CPU runs AVX-512F (cbn's setting is off elsewhere)."""
    global _wide
    _wide = flag and CBN_BENCH_F16C


def f16_convert(cnp.ndarray src, cnp.ndarray dst, int n_threads):
    """dst[...] = src (float16, C-contiguous, same size) through float32: each value
    converted in and out by F16C, in CHUNK-byte pieces split statically over n_threads
    threads (as copy).  Returns False (and does nothing) without F16C."""
    cdef const unsigned short* s = <const unsigned short*>cnp.PyArray_DATA(src)
    cdef unsigned short* d = <unsigned short*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(src), m = CHUNK // 2, k, nk = (n + m - 1) // m
    if not CBN_BENCH_F16C:
        return False
    with nogil:
        if n_threads > 1:
            for k in prange(nk, num_threads=n_threads, schedule='static'):
                _h2h(s + k * m, d + k * m, m if n - k * m > m else n - k * m)
        else:
            for k in range(nk):
                _h2h(s + k * m, d + k * m, m if n - k * m > m else n - k * m)
    return True


cdef inline void _h2h(const unsigned short* s, unsigned short* d, Py_ssize_t n) noexcept nogil:
    if _wide:
        cbn_bench_h2h_512(s, d, n)
    else:
        cbn_bench_h2h(s, d, n)


# The accumulation floor: what the float64 statistics of float32 data cost at
# least, whatever the memory does.  The loops are cbn's own C primitives (float64
# sums of d and d * d, or of g and g * (x - mean)), compiled here with the same
# instruction set and called free-standing: no blocking, no parameters, no output.
cdef extern from "_kernels_c.h":
    void cbn_sums_f32(const float* x, Py_ssize_t n, double ref, double* acc) noexcept nogil
    void cbn_gsums_f32(const float* x, const float* dy, const float* y, Py_ssize_t n,
                       double mean, double* acc) noexcept nogil
    void cbn_sums_f32_add(const float* x, Py_ssize_t n, double ref, double* acc) noexcept nogil
    void cbn_gsums_f32_add(const float* x, const float* dy, const float* y, Py_ssize_t n,
                           double mean, double* acc) noexcept nogil
    void cbn_prefetch(const void* p, Py_ssize_t nbytes) noexcept nogil
    void cbn_sums_pf_f32_add(const float* x, Py_ssize_t n, double ref, double* acc,
                             Py_ssize_t ahead) noexcept nogil
    void cbn_gsums_pf_f32_add(const float* x, const float* dy, const float* y, Py_ssize_t n,
                              double mean, double* acc, Py_ssize_t ahead) noexcept nogil

cdef bint _fma = False


def use_fma_adds(bint flag):
    """Take the sums that add as FMAs (flag) or plainly: the bench sets cbn's choice for
    this CPU (cbn._kernels fma_adds()), so that the floor is cbn's own loop."""
    global _fma
    _fma = flag


cdef inline void _floor_sums(const float* x, Py_ssize_t n, double ref,
                             double* acc) noexcept nogil:
    if _fma:
        cbn_sums_f32(x, n, ref, acc)
    else:
        cbn_sums_f32_add(x, n, ref, acc)


cdef inline void _floor_gsums(const float* x, const float* dy, Py_ssize_t n, double mean,
                              double* acc) noexcept nogil:
    if _fma:
        cbn_gsums_f32(x, dy, NULL, n, mean, acc)
    else:
        cbn_gsums_f32_add(x, dy, NULL, n, mean, acc)


def sums(cnp.ndarray x, cnp.ndarray dy, int n_threads):
    """The float64 sums of a float32 array (dy None: statistics; else backward sums),
    in CHUNK-byte pieces split statically over n_threads threads.  Returns their total."""
    cdef const float* px = <const float*>cnp.PyArray_DATA(x)
    cdef const float* pg = NULL if dy is None else <const float*>cnp.PyArray_DATA(dy)
    cdef Py_ssize_t n = cnp.PyArray_SIZE(x), m = CHUNK // 4, k, nk = (n + m - 1) // m
    cdef double[:, ::1] part = np.zeros((nk, 2))
    with nogil:
        if n_threads > 1:
            for k in prange(nk, num_threads=n_threads, schedule='static'):
                if pg == NULL:
                    _floor_sums(px + k * m, m if n - k * m > m else n - k * m, 0.5,
                                &part[k, 0])
                else:
                    _floor_gsums(px + k * m, pg + k * m, m if n - k * m > m else n - k * m,
                                 0.5, &part[k, 0])
        else:
            for k in range(nk):
                if pg == NULL:
                    _floor_sums(px + k * m, m if n - k * m > m else n - k * m, 0.5,
                                &part[k, 0])
                else:
                    _floor_gsums(px + k * m, pg + k * m, m if n - k * m > m else n - k * m,
                                 0.5, &part[k, 0])
    return float(np.asarray(part).sum())


# The channel-order floor of a fused planar kernel (DESIGN section 3: one channel at a
# time, its slab kept in cache for the output pass): the same float64 sums, but read
# the way such a kernel must read them, channel by channel.
cdef enum:
    BLOCK = 1024        # values per piece of a run; each prefetches the next run's piece
    STREAM = 2048       # or: values ahead of the sums a prefetch stream runs (cbn's PF_STREAM)

cdef bint _stream = False


def use_stream(bint flag):
    """Prefetch the channel-order sums as a stream STREAM values ahead of them, in the
    run and then in the next one (flag), or block by block: the bench sets cbn's choice
    on this CPU (cbn._kernels prefetch_stream())."""
    global _stream
    _stream = flag


cdef inline void _stream_sums(const float* x, const float* g, Py_ssize_t n,
                              Py_ssize_t ahead, double* acc) noexcept nogil:
    if g == NULL:
        cbn_sums_pf_f32_add(x, n, 0.5, acc, ahead)
    else:
        cbn_gsums_pf_f32_add(x, g, NULL, n, 0.5, acc, ahead)


cdef inline void _channel_sums(const float* x, const float* g, Py_ssize_t outer,
                               Py_ssize_t C, Py_ssize_t inner, Py_ssize_t c,
                               double* acc) noexcept nogil:
    """acc += the sums over channel c's outer runs of inner values (C * inner apart), in
    pieces of BLOCK values, each prefetching the same piece of the next run, or (_stream)
    run by run, prefetching a stream a = min(STREAM, inner) values ahead (the last a
    values of a run: the first of the next)."""
    cdef Py_ssize_t o, b, m, off, stride = C * inner
    cdef Py_ssize_t a = STREAM if STREAM < inner else inner
    for o in range(outer):
        off = o * stride + c * inner
        if _stream:
            _stream_sums(x + off, NULL if g == NULL else g + off, inner - a, a, acc)
            off += inner - a
            if o + 1 < outer:
                _stream_sums(x + off, NULL if g == NULL else g + off, a, stride - inner + a,
                             acc)
            elif g == NULL:
                _floor_sums(x + off, a, 0.5, acc)
            else:
                _floor_gsums(x + off, g + off, a, 0.5, acc)
            continue
        b = 0
        while b < inner:
            m = inner - b if inner - b < BLOCK else BLOCK
            off = o * stride + c * inner + b
            if o + 1 < outer:
                cbn_prefetch(x + off + stride, m * sizeof(float))
                if g != NULL:
                    cbn_prefetch(g + off + stride, m * sizeof(float))
            if g == NULL:
                _floor_sums(x + off, m, 0.5, acc)
            else:
                _floor_gsums(x + off, g + off, m, 0.5, acc)
            b += m


def sums_by_channel(cnp.ndarray x, cnp.ndarray dy, Py_ssize_t outer, Py_ssize_t C,
                    Py_ssize_t inner, int n_threads):
    """sums() of a planar float32 array (outer, C, inner), read channel by channel:
    each channel's outer runs of inner values (C * inner apart) one after the other,
    with a software prefetch as cbn's (use_stream); channels split statically over
    n_threads threads.  Returns their total."""
    cdef const float* px = <const float*>cnp.PyArray_DATA(x)
    cdef const float* pg = NULL if dy is None else <const float*>cnp.PyArray_DATA(dy)
    cdef double[:, ::1] part = np.zeros((C, 2))
    cdef Py_ssize_t c
    with nogil:
        if n_threads > 1:
            for c in prange(C, num_threads=n_threads, schedule='static'):
                _channel_sums(px, pg, outer, C, inner, c, &part[c, 0])
        else:
            for c in range(C):
                _channel_sums(px, pg, outer, C, inner, c, &part[c, 0])
    return float(np.asarray(part).sum())
