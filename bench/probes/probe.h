/* what the probes share: a monotonic clock, an ordering of doubles for medians, and the
 * roof's copy (bench/_roof.pyx: memcpy in 64 KB pieces, whole pieces per thread) */
#ifndef CBN_PROBE_H
#define CBN_PROBE_H
#include <stddef.h>
#include <string.h>
#include <time.h>

static inline double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static inline int cmp_double(const void* a, const void* b) {
    double x = *(const double*)a, y = *(const double*)b;
    return x < y ? -1 : x > y;
}

#define ROOF_PIECE (1 << 16)

/* d[0:n] = s[0:n] in ROOF_PIECE pieces */
static inline void copy_pieces(char* d, const char* s, size_t n) {
    for (size_t k = 0; k < n; k += ROOF_PIECE)
        memcpy(d + k, s + k, n - k < ROOF_PIECE ? n - k : ROOF_PIECE);
}

/* thread id's bytes [*a, *b) of n in the roof's static split over T threads */
static inline void piece_range(size_t n, int T, int id, size_t* a, size_t* b) {
    size_t pieces = (n + ROOF_PIECE - 1) / ROOF_PIECE;
    *a = pieces * (size_t)id / (size_t)T * ROOF_PIECE;
    *b = pieces * (size_t)(id + 1) / (size_t)T * ROOF_PIECE;
    if (*b > n) *b = n;
    if (*a > *b) *a = *b;
}
#endif
