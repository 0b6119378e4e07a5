# The AVX2 + FMA + F16C build of cbn's kernels (x86-64 only): the same source as
# _kernels.pyx, compiled with those instruction sets.  cbn._dispatch imports it
# when the CPU has them.
include "_kernels.pyx"
