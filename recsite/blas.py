"""Pin BLAS/OpenMP thread pools to one thread in web processes.

Must run before numpy is first imported: with several web workers on a small
machine, every worker spawning a BLAS thread per core oversubscribes the CPU
(measured here: serving throughput fell by 4x).
"""

import os

THREAD_ENV_VARS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def limit_blas_threads(threads: int = 1) -> None:
    for name in THREAD_ENV_VARS:
        os.environ.setdefault(name, str(threads))
