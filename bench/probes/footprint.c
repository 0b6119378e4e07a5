/* What the (N, C) cells' bytes alone cost against the roof, and what cbn's row loops
 * cost on them with the parameter tables at given page offsets.
 *
 * Training and backward need every row's sums before any output value (each output
 * depends on its channel's mean over all N rows), so a kernel reads x (and dy) in full,
 * waits for all threads, then reads them again and writes the output: training moves
 * 3X bytes through the core, backward 5X, as the roof's scaling assumes.  This probe
 * times that traffic on T threads with the bench's row split (thread t: rows
 * [N t / T, N (t + 1) / T)), in one parallel region per call:
 *
 *   pass 1: each thread reads its rows of x (and dy), adding the vectors into four
 *           registers (no per-channel sums, no float64: far less than cbn's sums);
 *   a barrier;
 *   pass 2: each thread reads its rows again, first row first or last row first, and
 *           stores them:
 *           bare: x (training), x + dy (backward), plain AVX2 loads and stores;
 *           cbn:  through cbn's own row loops (cbn_rows_affine_f32, cbn_rows_dx_f32 of
 *                 src/cbn/_kernels_c.h: (x - hi) * s + t and fma(x - hi, s, dy * k) + t,
 *                 three and four per-channel tables), the tables starting each SHIFT
 *                 bytes past the arrays' page offset (0: cbn's tables_match_output;
 *                 2048: its table_shift on AMD Zen 4).
 * Inference: one pass, bare (a copy loop) or cbn's.  The roof: memcpy in 64 KB pieces
 * over T threads, as bench/_roof.pyx.  x, dy and the output start OFFSET bytes into a
 * page (NumPy's large arrays: 16).  All alternated in one process, a new order each
 * round, medians of ROUNDS, each call after two untimed ones.  "roof fraction bound":
 * the roof's time for the op's bytes (2X, 3X, 5X) over the quicker order's.
 *
 *   PY=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
 *   gcc -O2 -mavx2 -mfma -mf16c -fno-math-errno -fno-trapping-math -fopenmp \
 *       -I bench/probes -I src/cbn -I "$PY" bench/probes/footprint.c -o /tmp/footprint
 *   /tmp/footprint 256 1024 2 41 16 0,2048    # N C threads rounds offset shifts
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07, a calm phase), arrays 16 bytes into a
 * page, 41 rounds: roof fraction bound inference / training / backward
 *   256x1024, 2 threads: bare 0.98 / 1.55 / 1.60; cbn's loops, tables +0: 0.84 / 1.22 /
 *                        1.05, +2048: 0.91 / 1.32 / 1.26
 *   256x1024, 1 thread:  bare 0.94 / 1.42 / 1.70; +0: 0.84 / 1.26 / 1.05; +2048: 0.91 /
 *                        1.36 / 1.24
 *   128x2048, 2 threads: bare 1.00 / 1.48 / 1.69; +0: 0.59 / 0.87 / 0.87; +2048: 0.64 /
 *                        0.93 / 0.97
 *   512x512, 2 threads:  bare 1.02 / 1.56 / 1.73; +0 and +2048 alike, 0.92-0.93 / 1.34
 *                        / 1.47-1.48.
 * The bytes of these cells are not what holds cbn at 0.50-0.74 of the roof there (run
 * 20261207-081307): the float64 sums and the per-call work are (README.md,
 * Performance).  Tables at the output's page offset cost the rows of 4 KiB or more
 * that every row meets them at (hence table_shift). */
#include <Python.h>
#include "_kernels_c.h"
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

#define MAX_SHIFTS 8

static float sink;

static void roof(char* d, const char* s, size_t n, int T) {
#pragma omp parallel num_threads(T)
    {
        size_t a, b;
        piece_range(n, T, omp_get_thread_num(), &a, &b);
        copy_pieces(d + a, s + a, b - a);
    }
}

/* x[r0:r1] (and dy) read into registers */
static __m256 read_rows(const float* x, const float* dy, long C, long r0, long r1) {
    __m256 a = _mm256_setzero_ps(), b = a, c = a, d = a;
    for (long i = r0 * C; i < r1 * C; i += 16) {
        a = _mm256_add_ps(a, _mm256_loadu_ps(x + i));
        b = _mm256_add_ps(b, _mm256_loadu_ps(x + i + 8));
        if (dy) {
            c = _mm256_add_ps(c, _mm256_loadu_ps(dy + i));
            d = _mm256_add_ps(d, _mm256_loadu_ps(dy + i + 8));
        }
    }
    return _mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d));
}

/* per-channel tables hi, s, t, k of cbn's loops; NULL: the bare stores */
typedef struct {
    const float *h, *s, *t, *k;
} Tables;

/* rows [r0, r1) of the output, from the last row back if back */
static void write_rows(const float* x, const float* dy, float* out, long C, long r0, long r1,
                       int back, const Tables* p) {
    for (long q = r0; q < r1; q++) {
        long r = back ? r0 + r1 - 1 - q : q;
        const float* xr = x + r * C;
        float* o = out + r * C;
        if (p && dy)
            cbn_rows_dx_f32(xr, dy + r * C, NULL, o, C, 1, C, p->h, p->s, p->t, p->k);
        else if (p)
            cbn_rows_affine_f32(xr, o, C, 1, C, p->h, p->s, p->t, 0);
        else if (dy)
            for (long j = 0; j < C; j += 8)
                _mm256_storeu_ps(o + j, _mm256_add_ps(_mm256_loadu_ps(xr + j),
                                                      _mm256_loadu_ps(dy + r * C + j)));
        else
            for (long j = 0; j < C; j += 8) _mm256_storeu_ps(o + j, _mm256_loadu_ps(xr + j));
    }
}

/* one call: passes 2 (training, backward: dy not NULL) or 1 (inference) */
static void call(const float* x, const float* dy, float* out, long N, long C, int T,
                 int passes, int back, const Tables* p) {
#pragma omp parallel num_threads(T)
    {
        long t = omp_get_thread_num(), nt = omp_get_num_threads();
        long r0 = N * t / nt, r1 = N * (t + 1) / nt;
        if (passes == 2) {
            float v[8];
            _mm256_storeu_ps(v, read_rows(x, dy, C, r0, r1));
            if (v[0] == 12345.f) sink = v[1];     /* keeps pass 1 */
#pragma omp barrier
        }
        write_rows(x, dy, out, C, r0, r1, back, p);
    }
}

static float* page_array(size_t bytes, long offset, float fill) {
    float* a = (float*)aligned_alloc(4096, (bytes + 8191) / 4096 * 4096) + offset;
    for (size_t i = 0; i < bytes / sizeof(float); i++) a[i] = fill ? fill : (float)(i % 7);
    return a;
}

/* the five ops of a set: inference, training forward / reversed, backward the same */
enum { OPS = 5 };
static const char* OP_NAMES[OPS] = {"inference", "training, fwd", "training, rev",
                                    "backward, fwd", "backward, rev"};
static void op(int k, const float* x, const float* dy, float* out, long N, long C, int T,
               const Tables* p) {
    if (k == 0)
        call(x, NULL, out, N, C, T, 1, 0, p);
    else
        call(x, k >= 3 ? dy : NULL, out, N, C, T, 2, (k - 1) % 2, p);
}

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: footprint N C THREADS [ROUNDS [OFFSET [SHIFT,...]]]\n");
        return 2;
    }
    long N = atol(argv[1]), C = atol(argv[2]);
    int T = atoi(argv[3]), R = argc > 4 ? atoi(argv[4]) : 41, S = 0;
    long o = argc > 5 ? atol(argv[5]) / (long)sizeof(float) : 0, shifts[MAX_SHIFTS];
    char list[256] = "0,2048";
    if (argc > 6) snprintf(list, sizeof list, "%s", argv[6]);
    for (char* q = strtok(list, ","); q && S < MAX_SHIFTS; q = strtok(NULL, ","))
        shifts[S++] = atol(q) / (long)sizeof(float);
    if (C % 16 || N < T) {
        fprintf(stderr, "C must be a multiple of 16, N at least THREADS\n");
        return 2;
    }
    size_t n = (size_t)(N * C), nb = n * sizeof(float);
    float *x = page_array(nb, o, 0), *dy = page_array(nb, o, 0);
    float *out = page_array(nb, o, 0), *dst = page_array(nb, o, 0);
    Tables tabs[MAX_SHIFTS];
    for (int q = 0; q < S; q++) {
        size_t tb = C * sizeof(float) + 4096;
        tabs[q] = (Tables){page_array(tb, o + shifts[q], 0.5f), page_array(tb, o + shifts[q], 1.5f),
                           page_array(tb, o + shifts[q], 0.25f), page_array(tb, o + shifts[q], 0.75f)};
    }
    int K = 1 + OPS * (1 + S);     /* the roof, the bare set, a set per shift */
    double* t = malloc(sizeof(double) * (size_t)(K * R));
    for (int r = 0; r < R; r++)
        for (int k0 = 0; k0 < K; k0++) {
            int k = (k0 + r) % K;     /* a new order each round */
            for (int w = 0; w < 3; w++) {
                double t0 = now();
                if (k == 0)
                    roof((char*)dst, (const char*)x, nb, T);
                else
                    op((k - 1) % OPS, x, dy, out, N, C, T,
                       k <= OPS ? NULL : &tabs[(k - 1) / OPS - 1]);
                t[k * R + r] = now() - t0;
            }
        }
    double* m = malloc(sizeof(double) * (size_t)K);
    for (int k = 0; k < K; k++) {
        qsort(t + k * R, (size_t)R, sizeof(double), cmp_double);
        m[k] = t[k * R + R / 2];
    }
    printf("%ldx%ld float32 (%.2f MB), %d threads, arrays %ld bytes into a page, medians of %d\n",
           N, C, nb / 1e6, T, o * (long)sizeof(float), R);
    printf("  roof (copy of x) %8.2f us\n  %-22s", m[0] * 1e6, "us");
    for (int j = 0; j < OPS; j++) printf("%15s", OP_NAMES[j]);
    printf("   roof fraction bound: inference training backward\n");
    for (int q = -1; q < S; q++) {
        const double* mq = m + 1 + OPS * (q + 1);
        char name[64];
        snprintf(name, sizeof name, q < 0 ? "bare" : "cbn, tables +%ld", q < 0 ? 0 : shifts[q] * 4);
        printf("  %-22s", name);
        for (int j = 0; j < OPS; j++) printf("%15.2f", mq[j] * 1e6);
        printf("   %.2f %.2f %.2f\n", m[0] / mq[0], 1.5 * m[0] / (mq[1] < mq[2] ? mq[1] : mq[2]),
               2.5 * m[0] / (mq[3] < mq[4] ? mq[3] : mq[4]));
    }
    return out[n / 2] == -1.f;
}
