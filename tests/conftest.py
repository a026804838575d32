"""Shared test settings.

Tests run in two xdist workers on a 2-core machine, and the end-to-end tests start builds in
subprocesses: each process trains on one thread, so OpenMP threads never outnumber the cores
(LightGBM and scikit-learn's histogram GBDT slow down by orders of magnitude when they do).
"""

from __future__ import annotations

import os

os.environ["MLSD_N_JOBS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
