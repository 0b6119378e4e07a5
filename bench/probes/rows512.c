/* cbn's float32 output passes over interleaved rows (per-channel tables: inference and
 * training's (x - hi) * s + t, the backward's fma(x - hi, s, dy * k) + t), the AVX2 loops
 * against their AVX-512F forms (cbn_rows_affine_f32_512, cbn_rows_dx_f32_512), on one
 * core, rows of C values: x, dy and the output 16 bytes into a page (as NumPy's large
 * arrays), the tables at the output's offset in a cache line (as cbn places them), and
 * memcpy of x's bytes.  All alternated in one process, a new order each round, medians
 * of 41 rounds (each sample after two untimed calls), microseconds.
 *
 *   PY=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
 *   gcc -O3 -mavx2 -mfma -mf16c -fno-math-errno -fno-trapping-math -fopenmp-simd \
 *       -I bench/probes -I src/cbn -I "$PY" bench/probes/rows512.c -o /tmp/rows512
 *   taskset -c 1 /tmp/rows512 128 1024      # rows, channels
 *
 * On the 2-core AMD EPYC Zen 5 VM (2026-12-07), AVX-512 / AVX2:
 *   32 x 1024 (L2):                                  affine 0.64, dx 0.73
 *   128 x 1024 (a thread's half of 256x1024, L2):    affine 0.77, dx 0.89
 *   256 x 1024 (all of 256x1024 on one thread, L3):  affine 0.87, dx 0.91
 *   128 x 400, 128 x 1027 (L2):                      affine 0.73, 0.83, dx 0.71, 0.86
 * and memcpy / AVX2 affine 0.42, 0.52, 0.83 (1024 values): in L2 the AVX2 pass is bound
 * by its four loads per vector of output, not by the bytes. */
#include <Python.h>
#include "_kernels_c.h"
#include <stdio.h>
#include <stdlib.h>

#include "probe.h"

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: rows512 ROWS CHANNELS\n");
        return 2;
    }
#if !defined(CBN_HAVE_R512)
    fprintf(stderr, "rows512: build with -mavx2 -mfma (GCC or clang)\n");
    return 2;
#else
    Py_ssize_t n = atol(argv[1]), m = atol(argv[2]), i;
    enum { R = 41, K = 5 };
    const char* names[K] = {"affine AVX2", "affine AVX-512", "dx AVX2", "dx AVX-512",
                            "memcpy"};
    char* raw[7];
    float* a[7];        /* x, dy, out; hi, s, t, k */
    for (i = 0; i < 7; i++) {
        Py_ssize_t len = i < 3 ? n * m : m;
        raw[i] = aligned_alloc(4096, (size_t)(len * 4 + 8192));
        a[i] = (float*)(raw[i] + 16);
        for (Py_ssize_t j = 0; j < len; j++)
            a[i][j] = (float)((j * 7 + i) % 13) * 0.25f + (i >= 3 ? 0.5f : 0.0f);
    }
    double t[K][R];
    for (int r = 0; r < R; r++)
        for (int k0 = 0; k0 < K; k0++) {
            int k = (k0 + r) % K;
            double t0 = 0;
            for (int w = 0; w < 3; w++) {
                t0 = now();
                switch (k) {
                case 0: cbn_rows_affine_f32(a[0], a[2], m, n, m, a[3], a[4], a[5], 0); break;
                case 1: cbn_rows_affine_f32_512(a[0], a[2], m, n, m, a[3], a[4], a[5], 0); break;
                case 2: cbn_rows_dx_f32(a[0], a[1], NULL, a[2], m, n, m, a[3], a[4], a[5], a[6]); break;
                case 3: cbn_rows_dx_f32_512(a[0], a[1], NULL, a[2], m, n, m, a[3], a[4], a[5], a[6]); break;
                default: memcpy(a[2], a[0], (size_t)(n * m * 4));
                }
            }
            t[k][r] = now() - t0;
        }
    printf("%ld rows of %ld float32 values (%.2f MB), one core, medians of %d\n", (long)n,
           (long)m, n * m * 4 / 1e6, R);
    double med[K];
    for (int k = 0; k < K; k++) {
        qsort(t[k], R, sizeof(double), cmp_double);
        med[k] = t[k][R / 2];
        printf("  %-16s %9.2f us\n", names[k], med[k] * 1e6);
    }
    printf("  AVX-512 / AVX2: affine %.2f, dx %.2f; memcpy / AVX2 affine %.2f\n",
           med[1] / med[0], med[3] / med[2], med[4] / med[0]);
    for (i = 0; i < 7; i++)
        free(raw[i]);
    return 0;
#endif
}
