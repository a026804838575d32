"""Shared fixtures of the store tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

#: every log test runs on SQLite (the default) and on the real PostgreSQL server the tests start
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.xdist_group("postgres"))]


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty log database: a SQLite file, or the PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'predictions.db'}"
    postgres_url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return postgres_url
