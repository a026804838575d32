"""Shared test settings.

Tests run in two xdist workers on a 2-core machine, and the end-to-end tests start builds in
subprocesses: each process trains on one thread, so OpenMP threads never outnumber the cores
(LightGBM and scikit-learn's histogram GBDT slow down by orders of magnitude when they do).

``postgres_url`` is one throw-away PostgreSQL cluster per test process (session scope): mark
the tests that use it ``@pytest.mark.xdist_group("postgres")`` so ``--dist loadgroup`` runs them
in one worker and they share that one cluster.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

import support

os.environ["MLSD_N_JOBS"] = "1"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The SQLAlchemy URL of database ``mlsd`` on a throw-away local PostgreSQL cluster.

    Skipped where Debian's PostgreSQL binaries are missing, except in CI (env ``CI`` set),
    where .ci/run installs them and a missing server must fail rather than hide the tests.
    """
    if support.postgres_bindir() is None:
        message = "PostgreSQL server binaries missing (/usr/lib/postgresql/*/bin/initdb)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; .ci/run should have installed postgresql")
        pytest.skip(message)
    try:
        import psycopg  # noqa: F401
    except ImportError:
        message = "psycopg is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with support.postgres_cluster() as url:
        yield url
