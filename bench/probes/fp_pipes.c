/* Throughput of the instructions cbn's float64 sums are made of, on one core: which
 * issue together and which share pipes (the figures the README's "what bounds the
 * targets" quotes for Zen 4).  Each loop body is independent operations (no chain
 * through a register or memory), so the time per iteration is the pipes' throughput.
 *
 *   gcc -O2 -mavx2 -mfma -mf16c bench/probes/fp_pipes.c -o /tmp/fp_pipes
 *   taskset -c 1 /tmp/fp_pipes 3.5      # the core's clock in GHz, for cycles
 *
 * On the 2-core AMD EPYC Zen 4 VM (2026-12-07): 8 vaddpd 3.9 cycles, 8 vmulpd 3.9,
 * 4 + 4 of them together 1.9 (separate pipes, two each); 4 vcvtps2pd (from memory) + 4
 * vaddpd 3.9, + 4 vmulpd 2.6 (the conversions issue on the adders' pipes); the
 * statistics' mix per 16 float32 values (4 conversions, 4 additions, 8 FMA-pipe
 * operations) 3.85; 4 vcvtph2ps + 4 vaddps 3.8, + 4 vmulps 1.9.  In the VM's slower
 * phases the same loops took up to 1.7x as long (4 + 4 additions and multiplies 2.9-3.2
 * cycles), as if another thread shared the core's pipes: compare runs of one phase. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "probe.h"

#define ITERS 50000000L
#define CLOBBER "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "memory"
/* independent operations: sources ymm14, ymm15 or memory, destinations ymm0-7 */
#define CVT(r) "vcvtps2pd (%0), %%ymm" #r ";"
#define ADD(r) "vaddpd %%ymm15, %%ymm14, %%ymm" #r ";"
#define MUL(r) "vmulpd %%ymm15, %%ymm14, %%ymm" #r ";"
#define H2S(r) "vcvtph2ps (%0), %%ymm" #r ";"
#define ADDS(r) "vaddps %%ymm15, %%ymm14, %%ymm" #r ";"
#define MULS(r) "vmulps %%ymm15, %%ymm14, %%ymm" #r ";"
#define RUN(name, body)                                                                     \
    {                                                                                       \
        double t0 = now(), t;                                                               \
        for (long i = 0; i < ITERS; i++)                                                    \
            __asm__ volatile(body ::"r"(p) : CLOBBER);                                      \
        t = now() - t0;                                                                     \
        printf("%-44s %5.2f cycles per iteration\n", name, t * ghz * 1e9 / ITERS);          \
    }

int main(int argc, char** argv) {
    double ghz = argc > 1 ? atof(argv[1]) : 3.5;
    float* p = aligned_alloc(64, 64);
    for (int i = 0; i < 16; i++) p[i] = 1.0f;
    __asm__ volatile("vxorps %%ymm14, %%ymm14, %%ymm14; vxorps %%ymm15, %%ymm15, %%ymm15"
                     ::: "xmm14", "xmm15");
    RUN("8 vaddpd", ADD(0) ADD(1) ADD(2) ADD(3) ADD(4) ADD(5) ADD(6) ADD(7))
    RUN("8 vmulpd", MUL(0) MUL(1) MUL(2) MUL(3) MUL(4) MUL(5) MUL(6) MUL(7))
    RUN("4 vaddpd + 4 vmulpd", ADD(0) MUL(1) ADD(2) MUL(3) ADD(4) MUL(5) ADD(6) MUL(7))
    RUN("8 vcvtps2pd", CVT(0) CVT(1) CVT(2) CVT(3) CVT(4) CVT(5) CVT(6) CVT(7))
    RUN("4 vcvtps2pd + 4 vaddpd", CVT(0) ADD(1) CVT(2) ADD(3) CVT(4) ADD(5) CVT(6) ADD(7))
    RUN("4 vcvtps2pd + 4 vmulpd", CVT(0) MUL(1) CVT(2) MUL(3) CVT(4) MUL(5) CVT(6) MUL(7))
    RUN("statistics, 16 values: 4 cvt 4 add 8 mul",
        CVT(0) ADD(1) MUL(2) MUL(3) CVT(4) ADD(5) MUL(6) MUL(7)
        CVT(0) ADD(1) MUL(2) MUL(3) CVT(4) ADD(5) MUL(6) MUL(7))
    RUN("backward sums, 16 pairs: 8 cvt 12 mul",
        CVT(0) CVT(1) MUL(2) MUL(3) MUL(4) CVT(5) CVT(6) MUL(7) MUL(0) MUL(1)
        CVT(2) CVT(3) MUL(4) MUL(5) MUL(6) CVT(7) CVT(0) MUL(1) MUL(2) MUL(3))
    RUN("8 vcvtph2ps", H2S(0) H2S(1) H2S(2) H2S(3) H2S(4) H2S(5) H2S(6) H2S(7))
    RUN("4 vcvtph2ps + 4 vaddps", H2S(0) ADDS(1) H2S(2) ADDS(3) H2S(4) ADDS(5) H2S(6) ADDS(7))
    RUN("4 vcvtph2ps + 4 vmulps", H2S(0) MULS(1) H2S(2) MULS(3) H2S(4) MULS(5) H2S(6) MULS(7))
    free(p);
    return 0;
}
