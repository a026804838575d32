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


_UNGROUPED = pytest.StashKey[str]()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Note when ``--dist loadgroup`` has not grouped the ``xdist_group`` tests (checked below).

    pytest-xdist groups by appending ``@group`` to each marked test's node id on the worker; a
    pytest whose node ids ignore that (9.2, pytest-dev/pytest-xdist#1386) sends a group's tests
    to every worker, so each worker builds the group's module fixtures (a minute per end-to-end
    build) and tests that share one server run in two. Silent, so checked here.
    """
    if not (os.environ.get("PYTEST_XDIST_WORKER") and config.getvalue("loadgroup")):
        return
    lost = [i.nodeid for i in items if i.get_closest_marker("xdist_group") and "@" not in i.nodeid]
    if lost:
        config.stash[_UNGROUPED] = (
            f"--dist loadgroup did not group {len(lost)} xdist_group test(s), e.g. {lost[0]}: "
            "this pytest's node ids drop pytest-xdist's group suffix (pytest-dev/pytest-xdist#1386); "
            "use a pytest the dev extra allows (pyproject.toml)"
        )


@pytest.fixture(scope="session", autouse=True)
def _groups_kept(request: pytest.FixtureRequest) -> None:
    # a worker cannot stop the run with a readable message from collection; every test errors instead
    message = request.config.stash.get(_UNGROUPED, None)
    if message:
        pytest.fail(message, pytrace=False)
