/* for the probes that include src/cbn/_kernels_c.h outside a build */
#define CBN_BUILD_COMPILER_TYPE "probe"
#define CBN_BUILD_FLAGS "probe"
#define CBN_BUILD_OPENMP_MODE "probe"
