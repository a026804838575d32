"""A moved or copied workspace: MLflow's stored artefact locations rewritten to where it is now.

This is direct SQL on four columns of MLflow's SQLite schema (the one place mlsd reads MLflow's
tables itself): MLflow stores absolute ``file://`` URIs and offers no API to move them.
``tests/test_workspace_moves.py`` covers it for the MLflow version pinned here.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["relocate_artifact_locations"]

# (table, column) of every artefact location MLflow stores
_LOCATION_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
)


def relocate_artifact_locations(db: Path, artifact_root: Path) -> list[str]:
    """Point MLflow's stored artefact locations at this workspace if it was moved or copied.

    MLflow stores absolute ``file://`` URIs; a workspace is meant to be one folder that can
    be moved, so locations under another folder's ``mlartifacts`` are rewritten to this one.
    Loading does not depend on it (it resolves folders relative to the workspace); new runs
    and MLflow's own loaders do. A read-only copy is left as it is.
    """
    if not db.is_file():
        return []
    root = artifact_root.as_uri()
    old_roots: set[str] = set()
    try:
        conn = sqlite3.connect(db, timeout=30)
    except sqlite3.Error:
        return []
    try:
        with conn:  # one transaction: every location moves, or none
            locations = [row[0] or "" for row in conn.execute("SELECT artifact_location FROM experiments")]
            old_roots = {
                loc[: loc.rindex("/mlartifacts/") + len("/mlartifacts")]
                for loc in locations
                if loc.startswith("file:") and "/mlartifacts/" in loc and not loc.startswith(root + "/")
            }
            for old in sorted(old_roots):
                for table, column in _LOCATION_COLUMNS:
                    conn.execute(
                        f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                        f"WHERE substr({column}, 1, ?) = ?",
                        (root, len(old) + 1, len(old), old),
                    )
    except sqlite3.Error:
        return []  # read-only, locked for long, or not an MLflow store yet: nothing rewritten
    finally:
        conn.close()
    if not old_roots:  # the usual case: no MLflow import (~1 s) for nothing
        return []
    from mlflow.utils.file_utils import local_file_uri_to_path

    return sorted(str(Path(local_file_uri_to_path(old)).parent) for old in old_roots)
