/* The roof's copy (memcpy in 64 KB pieces, as bench/_roof.pyx) against a plain AVX2
 * copy loop of the same bytes, split over T threads as the roof splits them; medians of
 * R calls (each after two untimed ones), alternated.
 *
 *   gcc -O2 -mavx2 -fopenmp bench/probes/copy_loops.c -o /tmp/copy_loops
 *   /tmp/copy_loops 6422528 2        # bytes, threads [, calls]
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07, a contended phase), loop / memcpy time
 * in three runs, 2 / 1 threads: 1 MB 0.95-0.99 / 0.97-0.99; 6.4 MB (L3) 0.86-0.96 /
 * 0.96-0.99; 25.7 MB 0.97-1.03 / 0.94-1.02; 51.4 MB 0.99-1.02 / 0.99-1.02.  So the roof
 * is within a few percent of a plain copy loop, but on two threads in L3 it was up to
 * 1.16x slower than one (the roof fractions of the 6.4 MB cells flatter cbn that much
 * at most). */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "probe.h"

static void copy_loop(char* d, const char* s, size_t n) {
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m256 a = _mm256_loadu_ps((const float*)(s + i));
        __m256 b = _mm256_loadu_ps((const float*)(s + i + 32));
        _mm256_storeu_ps((float*)(d + i), a);
        _mm256_storeu_ps((float*)(d + i + 32), b);
    }
    memcpy(d + i, s + i, n - i);
}

int main(int argc, char** argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: copy_loops BYTES THREADS [CALLS]\n");
        return 2;
    }
    size_t n = (size_t)atol(argv[1]);
    int T = atoi(argv[2]), R = argc > 3 ? atoi(argv[3]) : 31;
    char* s = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
    char* d = aligned_alloc(4096, (n + 4095) / 4096 * 4096);
    double* t = malloc(sizeof(double) * 2 * (size_t)R);
    void (*f[2])(char*, const char*, size_t) = {copy_pieces, copy_loop};
    memset(s, 1, n);
    memset(d, 2, n);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < 2; k++)
            for (int w = 0; w < 3; w++) {    /* two untimed calls, then the timed one */
                double t0 = now();
#pragma omp parallel num_threads(T)
                {
                    /* the roof's static split: whole pieces, thread by thread */
                    size_t a, b;
                    piece_range(n, T, omp_get_thread_num(), &a, &b);
                    if (a < b) f[k](d + a, s + a, b - a);
                }
                t[k * R + r] = now() - t0;
            }
    for (int k = 0; k < 2; k++) qsort(t + k * R, (size_t)R, sizeof(double), cmp_double);
    printf("memcpy in 64 KB pieces %9.1f us, AVX2 loop %9.1f us, loop / memcpy %.2f\n",
           t[R / 2] * 1e6, t[R + R / 2] * 1e6, t[R + R / 2] / t[R / 2]);
    return d[n / 2] == 3;
}
