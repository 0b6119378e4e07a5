# OpenMP shim: the same Cython compiles with or without OpenMP.
# Without it, prange runs serially (Cython guards its pragmas with #ifdef _OPENMP)
# and these functions report a single thread.

cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define CBN_HAVE_OPENMP 1
    #define CBN_OPENMP_DATE _OPENMP
    #else
    #define CBN_HAVE_OPENMP 0
    #define CBN_OPENMP_DATE 0
    static inline int omp_get_max_threads(void) { return 1; }
    static inline int omp_get_thread_num(void) { return 0; }
    #endif
    """
    const int CBN_HAVE_OPENMP
    const int CBN_OPENMP_DATE
    int omp_get_max_threads() noexcept nogil
    int omp_get_thread_num() noexcept nogil
