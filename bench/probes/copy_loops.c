/* The roof's copy (memcpy in 64 KB pieces, as bench/_roof.pyx) against plain copy
 * loops of the same bytes: AVX2, AVX-512F (where the CPU has it) and `rep movsb`,
 * split over T threads as the roof splits them; medians of R calls (each after two
 * untimed ones), alternated.
 *
 *   gcc -O2 -mavx2 -fopenmp bench/probes/copy_loops.c -o /tmp/copy_loops
 *   /tmp/copy_loops 6422528 2        # bytes, threads [, calls]
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07, a contended phase), AVX2 loop / memcpy
 * time in three runs, 2 / 1 threads: 1 MB 0.95-0.99 / 0.97-0.99; 6.4 MB (L3) 0.86-0.96 /
 * 0.96-0.99; 25.7 MB 0.97-1.03 / 0.94-1.02; 51.4 MB 0.99-1.02 / 0.99-1.02.  So there
 * the roof is within a few percent of a plain copy loop, but on two threads in L3 it
 * was up to 1.16x slower than one (the roof fractions of the 6.4 MB cells flatter cbn
 * that much at most).
 *
 * On the 2-core AMD EPYC Zen 5 VM (2026-12-07), glibc's memcpy copies these pieces as
 * fast as `rep movsb` does (within 2%), and faster than either loop, which take the
 * same time as each other: AVX2 loop / memcpy, five runs, 2 threads: 1 MB (in L2)
 * 1.29-1.37, 256 KB 1.22-1.25, 6.4 MB (L3) 1.03-1.27, 51.4 MB 1.11; 1 MB on 1 thread
 * 1.17-1.21;
 * the AVX-512 loop / the AVX2 loop 0.99-1.01 throughout.  A kernel that loads,
 * computes and stores in vector registers moves its bytes no faster than these loops,
 * so in the caches of that core no such kernel reaches more than about 0.73-0.82 of
 * the roof. */
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

__attribute__((target("avx512f"))) static void copy_loop512(char* d, const char* s, size_t n) {
    size_t i = 0;
    for (; i + 128 <= n; i += 128) {
        __m512 a = _mm512_loadu_ps((const float*)(s + i));
        __m512 b = _mm512_loadu_ps((const float*)(s + i + 64));
        _mm512_storeu_ps((float*)(d + i), a);
        _mm512_storeu_ps((float*)(d + i + 64), b);
    }
    memcpy(d + i, s + i, n - i);
}

static void copy_movsb(char* d, const char* s, size_t n) {
    __asm__ volatile("rep movsb" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
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
    int K = __builtin_cpu_supports("avx512f") ? 4 : 3;    /* memcpy, AVX2, movsb, AVX-512 */
    double* t = malloc(sizeof(double) * 4 * (size_t)R);
    void (*f[4])(char*, const char*, size_t) = {copy_pieces, copy_loop, copy_movsb,
                                                copy_loop512};
    memset(s, 1, n);
    memset(d, 2, n);
    for (int r = 0; r < R; r++)
        for (int k = 0; k < K; k++)
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
    for (int k = 0; k < K; k++) qsort(t + k * R, (size_t)R, sizeof(double), cmp_double);
    printf("memcpy in 64 KB pieces %8.2f us, AVX2 loop %8.2f, rep movsb %8.2f", t[R / 2] * 1e6,
           t[R + R / 2] * 1e6, t[2 * R + R / 2] * 1e6);
    if (K == 4) printf(", AVX-512 loop %8.2f", t[3 * R + R / 2] * 1e6);
    printf("; AVX2 loop / memcpy %.2f\n", t[R + R / 2] / t[R / 2]);
    return d[n / 2] == 3;
}
