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

from .api import optimize  # noqa: E402
from .policy_io import load_policy  # noqa: E402,F401  (light: numpy only; h5py is imported when a file is read)

__all__ = ["optimize", "load_policy", "__version__"]
