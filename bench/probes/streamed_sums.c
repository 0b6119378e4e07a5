/* cbn's streamed float32 planar sums (cbn_sums_pf_f32 / cbn_gsums_pf_f32, prefetching
 * 1024 values ahead) with their additions as FMAs by 1.0 (AMD: _kernels.pyx _fma_adds)
 * against plain additions (the _add twins), one core, medians of 41; cycles per 16
 * values at the clock given.
 *
 *   PY=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
 *   gcc -O3 -mavx2 -mfma -mf16c -fno-math-errno -fno-trapping-math -fopenmp-simd \
 *       -I bench/probes -I src/cbn -I "$PY" bench/probes/streamed_sums.c -o /tmp/streamed_sums
 *   for n in 50176 200704 1605632; do taskset -c 1 /tmp/streamed_sums $n 3.5; done
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07): statistics 3.93-4.15 (FMA) against
 * 5.73-5.76 (plain), backward sums 5.98-6.74 against 7.61-7.72; in the VM's slower
 * phases (see fp_pipes.c) 200704 values took 5.69-5.97 against 6.04-6.53 and 8.0-8.8
 * against 8.4-9.0. */
#include <Python.h>
#include "_kernels_c.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "probe.h"

int main(int argc, char** argv) {
    long n = argc > 1 ? atol(argv[1]) : 200704;
    double ghz = argc > 2 ? atof(argv[2]) : 3.5;
    const long ahead = 1024;
    float* x = aligned_alloc(64, (n + ahead) * sizeof(float));
    float* g = aligned_alloc(64, (n + ahead) * sizeof(float));
    for (long i = 0; i < n + ahead; i++) {
        x[i] = (float)((i * 2654435761u % 1000) / 500.0 - 1.0);
        g[i] = (float)((i * 40503u % 1000) / 700.0 - 0.7);
    }
    enum { K = 4, REPS = 41 };
    const char* names[K] = {"statistics FMA", "statistics plain", "backward FMA", "backward plain"};
    static double t[K][REPS];
    double acc[2 * K] = {0};
    for (int r = 0; r < REPS; r++)
        for (int k = 0; k < K; k++) {
            double t0 = now();
            switch (k) {
                case 0: cbn_sums_pf_f32(x, n, 0.1, acc, ahead); break;
                case 1: cbn_sums_pf_f32_add(x, n, 0.1, acc + 2, ahead); break;
                case 2: cbn_gsums_pf_f32(x, g, NULL, n, 0.1, acc + 4, ahead); break;
                default: cbn_gsums_pf_f32_add(x, g, NULL, n, 0.1, acc + 6, ahead); break;
            }
            t[k][r] = now() - t0;
        }
    printf("%ld values:", n);
    for (int k = 0; k < K; k++) {
        qsort(t[k], REPS, sizeof(double), cmp_double);
        printf("  %s %.1f us (%.2f cycles / 16)", names[k], t[k][REPS / 2] * 1e6,
               t[k][REPS / 2] * ghz * 1e9 / (n / 16.0));
    }
    /* the same sums bit for bit: each pair was accumulated REPS times */
    printf("  %s\n", acc[0] == acc[2] && acc[1] == acc[3] && acc[4] == acc[6] && acc[5] == acc[7]
                         ? "same sums" : "SUMS DIFFER");
    free(x);
    free(g);
    return 0;
}
