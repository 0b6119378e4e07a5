/* Channels-last float32 statistics (float64 sums about a reference per channel) over n
 * rows of m channels, ld values apart, one core, called in blocks of 64 rows as cbn's
 * interleaved reductions call them: cbn's 8-channel register tiles, its eight-row loop
 * and its 16-channel tiles (cbn_rows_sums16_f32, walking 8 rows or a block's 64 at a
 * time), against the flat planar loop over as many values, and the 16-channel tiles
 * with ld = 0 (every row the same line: the same instructions and loads, one line).
 * Medians of 41, cycles per 16 values at the clock given.
 *
 *   PY=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
 *   gcc -O3 -mavx2 -mfma -mf16c -fno-math-errno -fno-trapping-math -fopenmp-simd \
 *       -I bench/probes -I src/cbn -I "$PY" bench/probes/rows_walk.c -o /tmp/rows_walk
 *   taskset -c 1 /tmp/rows_walk 128 1024 1024 1 3.5   # rows, channels, pitch, calls per sample, GHz
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07, a fast phase; flat / 8-channel tiles /
 * eight rows / 16-channel tiles walking 8 / walking 64 / ld = 0):
 *   128 x 1024 (512 KB, a thread's half of 256x1024, L2)  3.90 5.92 6.16 5.30 5.69 4.13
 *   392 x 256                                              3.86 5.21 5.58 5.01 4.84 4.15
 *   1568 x 64                                              3.88 4.66 5.57 5.01 4.46 4.04
 *   3136 x 64 (800 KB)                                     4.00 5.38 5.90 5.32 5.72 4.05
 * and in a slower phase (flat 4.9-5.3) 12544 x 64 (3.2 MB, L3): eight rows 8.55-9.27,
 * 16-channel tiles walking 8 rows 7.54-7.84.  The same tile loop runs near the pipes'
 * bound (fp_pipes.c: 4 cycles per 16 values, plus the blocks' flushes) when its rows are
 * one line, and 1.2-1.4x slower over rows 256 B to 4 KB apart: what the channels-last
 * sums lose against the flat loop is the walk down the rows, not their operations. */
#include <Python.h>
#include "_kernels_c.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

/* as cbn's interleaved reductions call the loops (_kernels.pyx _task_reduce): blocks of
 * ROW_BLOCK = 64 rows into block sums b1, b2, each block's then added into s1, s2 */
enum { ROW_BLOCK = 64 };
static double b1[1 << 14], b2[1 << 14];
#define BLOCKED(CALL)                                                                       \
    for (Py_ssize_t r0 = 0; r0 < n; r0 += ROW_BLOCK) {                                      \
        Py_ssize_t nb = n - r0 < ROW_BLOCK ? n - r0 : ROW_BLOCK;                            \
        const float* xb = x + r0 * ld;                                                      \
        memset(b1, 0, (size_t)m * 8);                                                       \
        memset(b2, 0, (size_t)m * 8);                                                       \
        CALL;                                                                               \
        for (Py_ssize_t c = 0; c < m; c++) {                                                \
            s1[c] += b1[c];                                                                 \
            s2[c] += b2[c];                                                                 \
        }                                                                                   \
    }

int main(int argc, char** argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: rows_walk ROWS CHANNELS PITCH [CALLS [GHZ]]\n");
        return 2;
    }
    Py_ssize_t n = atol(argv[1]), m = atol(argv[2]), ld = atol(argv[3]);
    int reps = argc > 4 ? atoi(argv[4]) : 1;
    double ghz = argc > 5 ? atof(argv[5]) : 3.5;
    enum { R = 41, K = 6 };
    const char* names[K] = {"flat (cbn_sums_f32)", "8-channel tiles", "eight rows",
                            "16-channel tiles, walk 8", "16-channel tiles, walk 64",
                            "16-channel tiles, ld = 0"};
    if (ld < m || m % 16 || m > (1 << 14)) {
        fprintf(stderr, "PITCH must be >= CHANNELS, CHANNELS a multiple of 16\n");
        return 2;
    }
    float* x = aligned_alloc(64, (size_t)(n * ld * 4 + 64));
    double* ref = aligned_alloc(64, (size_t)m * 8);
    double* s1 = aligned_alloc(64, (size_t)m * 8);
    double* s2 = aligned_alloc(64, (size_t)m * 8);
    double* t = malloc(sizeof(double) * K * R);
    for (Py_ssize_t i = 0; i < n * ld; i++)
        x[i] = (float)((i * 2654435761u % 1000) / 500.0 - 1.0);
    for (Py_ssize_t c = 0; c < m; c++) ref[c] = 0.1;
    double check = 0.0;
    for (int rr = 0; rr < R; rr++)
        for (int k = 0; k < K; k++) {
            double acc[2] = {0, 0}, t0;
            memset(s1, 0, (size_t)m * 8);
            memset(s2, 0, (size_t)m * 8);
            t0 = now();
            for (int rp = 0; rp < reps; rp++) switch (k) {
                case 0: cbn_sums_f32(x, n * m, 0.1, acc); break;   /* the same count of values */
                case 1: BLOCKED(cbn_rows_sums_tiled_f32(xb, ld, nb, m, ref, b1, b2)) break;
                case 2: BLOCKED(cbn_rows_sums8_f32(xb, ld, nb, m, ref, b1, b2, 0)) break;
                case 3: BLOCKED(cbn_rows_sums16_f32(xb, ld, nb, m, ref, b1, b2, 8)) break;
                case 4: BLOCKED(cbn_rows_sums16_f32(xb, ld, nb, m, ref, b1, b2, ROW_BLOCK)) break;
                case 5: BLOCKED(cbn_rows_sums16_f32(x, 0, nb, m, ref, b1, b2, 8)) break;
            }
            t[k * R + rr] = (now() - t0) / reps;
            check += acc[0] + s1[0] + s2[m - 1];
        }
    for (int k = 0; k < K; k++) {
        qsort(t + k * R, R, sizeof(double), cmp_double);
        double med = t[k * R + R / 2];
        printf("%-26s %9.2f us  %5.2f cycles per 16 values\n", names[k], med * 1e6,
               med * ghz * 1e9 / (n * m / 16.0));
    }
    return check == 1.2345 ? 1 : 0;
}
