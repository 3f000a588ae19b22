"""esmpi: OpenAI-style Evolution Strategies over MPI (Salimans et al. 2017, Algorithm 2).

Every rank holds the same theta and noise table, evaluates its share of antithetic pairs,
allgathers scalar returns, and applies the same update; see README.md for the conventions.
"""

import os as _os

# One BLAS/OpenMP thread per rank: ranks are the parallelism, and threaded BLAS could change
# summation order between runs. Must happen before numpy is imported, hence here.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    _os.environ.setdefault(_v, "1")

__version__ = "0.1.0"

__all__ = ["optimize", "load_policy", "__version__"]


def __getattr__(name):
    # Lazy (PEP 562): `python -m esmpi.run` must reach its signal handlers before numpy/numba load,
    # or a batch system's early SIGUSR1 kills the rank during start-up.
    if name == "optimize":
        from .api import optimize
        return optimize
    if name == "load_policy":
        from .policy_io import load_policy
        return load_policy
    raise AttributeError(f"module 'esmpi' has no attribute {name!r}")
