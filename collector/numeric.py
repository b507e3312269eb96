"""numpy for the collector's statistics (/v1/impact, /v1/at-risk), loaded once, here.

One BLAS thread unless the operator says otherwise (``OPENBLAS_NUM_THREADS``), set before
numpy loads OpenBLAS: the products here are N x K with K a few dozen, which threads do
not speed up, and on a busy machine OpenBLAS's spinning threads made the estimator 10
times slower (measured: 4.6 s against 0.6 s for 35,000 rows at a load average of 10 on
2 CPUs) while taking CPU from the event loop. Every collector module that needs numpy
imports it from here, so whichever loads first sets it (it has no effect where numpy was
loaded before the collector, e.g. by a test).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import numpy.typing as npt

__all__ = ["np", "npt"]
