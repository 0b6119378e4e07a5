/* Planar float32 training in C, each thread a range of channels: the statistics (float64
 * sums about a pivot, four partial vectors per sum, as cbn's planar loop) and then the
 * output pass of each channel one after the other ("seq"), against the output pass of
 * each channel woven into the sums of the next, 16 values of each per step ("woven");
 * with the sums alone, the output pass alone and a plain copy for scale.  Medians of 31.
 *
 *   gcc -O3 -mavx2 -mfma -fopenmp bench/probes/woven_train.c -o /tmp/woven -lm
 *   /tmp/woven 50176 32 2       # values per channel, channels, threads
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07), 2 threads: 32 x 50176 values (6.4 MB)
 * seq 128-147 us, woven 106-118 (0.82-0.88); 64 x 12544 (3.2 MB) 64.7 / 53.3; 128 x
 * 12544 128.3 / 106.0; 32 x 200704 (25.7 MB, from memory) 1170 / 1140 (0.97); one
 * thread 0.82-0.96. */
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "probe.h"

typedef struct { __m256d a[4], q[4], ref; } Sums;
#define FADD(a, b) _mm256_fmadd_pd(a, _mm256_set1_pd(1.0), b)

static inline void sums_init(Sums* s, double ref) {
    for (int k = 0; k < 4; k++) s->a[k] = s->q[k] = _mm256_setzero_pd();
    s->ref = _mm256_set1_pd(ref);
}
/* 16 values at x + i into the sums: d = x - ref, a += d, q += d * d */
static inline void sums16(Sums* s, const float* x, long i) {
    for (int k = 0; k < 4; k++) {
        __m256d d = _mm256_sub_pd(_mm256_cvtps_pd(_mm_loadu_ps(x + i + 4 * k)), s->ref);
        s->a[k] = FADD(d, s->a[k]);
        s->q[k] = _mm256_fmadd_pd(d, d, s->q[k]);
    }
}
static double hsum(const __m256d* v) {
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(_mm256_add_pd(v[0], v[1]), _mm256_add_pd(v[2], v[3])));
    return t[0] + t[1] + t[2] + t[3];
}
typedef struct { __m256 h, s, t; } Params;
static Params params(const Sums* s, long n) {
    double m = hsum(s->a) / n, v = hsum(s->q) / n - m * m, ref;
    ref = _mm256_cvtsd_f64(s->ref);
    Params p = {_mm256_set1_ps((float)(ref + m)), _mm256_set1_ps((float)(1.0 / sqrt(v + 1e-5))),
                _mm256_set1_ps(0.1f)};
    return p;
}
/* 16 output values at i: (x - h) * s + t */
static inline void out16(const float* x, float* o, long i, Params p) {
    for (int k = 0; k < 16; k += 8)
        _mm256_storeu_ps(o + i + k,
                         _mm256_fmadd_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i + k), p.h), p.s, p.t));
}
static Sums channel_sums(const float* x, long n) {
    Sums s;
    sums_init(&s, x[0]);
    for (long i = 0; i < n; i += 16) sums16(&s, x, i);
    return s;
}

static void seq(const float* x, float* o, long n, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
        Sums s = channel_sums(x + c * n, n);
        Params p = params(&s, n);
        for (long i = 0; i < n; i += 16) out16(x + c * n, o + c * n, i, p);
    }
}
static void woven(const float* x, float* o, long n, int c0, int c1) {
    Sums s = channel_sums(x + c0 * n, n);
    for (int c = c0; c < c1; c++) {
        Params p = params(&s, n);
        if (c + 1 < c1) {
            sums_init(&s, x[(c + 1) * n]);
            for (long i = 0; i < n; i += 16) {
                sums16(&s, x + (c + 1) * n, i);
                out16(x + c * n, o + c * n, i, p);
            }
        } else {
            for (long i = 0; i < n; i += 16) out16(x + c * n, o + c * n, i, p);
        }
    }
}
static void sums_only(const float* x, float* o, long n, int c0, int c1) {
    for (int c = c0; c < c1; c++) {
        Sums s = channel_sums(x + c * n, n);
        o[c * n] = (float)hsum(s.a);
    }
}
static void out_only(const float* x, float* o, long n, int c0, int c1) {
    Params p = {_mm256_set1_ps(1.0f), _mm256_set1_ps(1.0f), _mm256_set1_ps(1.0f)};
    for (int c = c0; c < c1; c++)
        for (long i = 0; i < n; i += 16) out16(x + c * n, o + c * n, i, p);
}
static void copy(const float* x, float* o, long n, int c0, int c1) {
    for (long i = c0 * n; i < c1 * n; i += 8) _mm256_storeu_ps(o + i, _mm256_loadu_ps(x + i));
}

typedef void (*Pass)(const float*, float*, long, int, int);

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s values-per-channel(multiple of 16) channels threads\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    int C = atoi(argv[2]), T = atoi(argv[3]);
    float* x = aligned_alloc(64, n * C * sizeof(float));
    float* o = aligned_alloc(64, n * C * sizeof(float));
    for (long i = 0; i < n * C; i++) x[i] = (float)((i * 2654435761u % 1000) / 500.0 - 1.0);
    Pass passes[] = {seq, woven, sums_only, out_only, copy};
    const char* names[] = {"seq", "woven", "sums", "out", "copy"};
    enum { K = 5, REPS = 31 };
    static double t[K][REPS];
    for (int r = 0; r < REPS; r++)
        for (int k = 0; k < K; k++) {
            double t0 = now();
#pragma omp parallel num_threads(T)
            {
                int id = omp_get_thread_num();
                passes[k](x, o, n, C * id / T, C * (id + 1) / T);
            }
            t[k][r] = now() - t0;
        }
    printf("%ld values x %d channels (%.1f MB), %d threads, us:", n, C, n * C * 4 / 1e6, T);
    for (int k = 0; k < K; k++) {
        qsort(t[k], REPS, sizeof(double), cmp_double);
        printf(" %s %.1f", names[k], t[k][REPS / 2] * 1e6);
    }
    printf("\n");
    free(x);
    free(o);
    return 0;
}
