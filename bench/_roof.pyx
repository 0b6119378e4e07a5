# cython: language_level=3, boundscheck=False, wraparound=False
"""The memory roof: a parallel copy, built by bench/run.py with the project's toolchain."""

from cython.parallel cimport prange
from libc.string cimport memcpy

cimport numpy as cnp

cnp.import_array()

cdef enum:
    CHUNK = 1 << 16     # bytes per task


def copy(cnp.ndarray src, cnp.ndarray dst, int n_threads):
    """dst[...] = src (both C-contiguous, same size), in CHUNK-byte pieces split
    statically over n_threads threads, like the kernels split their work."""
    cdef char* s = <char*>cnp.PyArray_DATA(src)
    cdef char* d = <char*>cnp.PyArray_DATA(dst)
    cdef Py_ssize_t n = cnp.PyArray_NBYTES(src), k, nk = (n + CHUNK - 1) // CHUNK
    with nogil:
        if n_threads > 1:
            for k in prange(nk, num_threads=n_threads, schedule='static'):
                memcpy(d + k * CHUNK, s + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK)
        else:   # the same pieces: memcpy of a whole large array would use streaming stores
            for k in range(nk):
                memcpy(d + k * CHUNK, s + k * CHUNK, CHUNK if n - k * CHUNK > CHUNK else n - k * CHUNK)
