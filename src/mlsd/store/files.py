"""Files of the workspace: private to their owner, and written so that a crash never leaves half of one.

A workspace holds raw inputs (the prediction log), models (pickles that the server runs) and
reports, so it is created owner-only: folders 0700, files 0600. :func:`private_files` sets a
process umask of 0o077 for a workspace operation (what libraries create inherits it) and then
tightens what already existed; :func:`create_private_file` makes a file 0600 before a library
opens it (SQLite gives its ``-wal`` and ``-shm`` files the database's mode).

>>> import tempfile, pathlib, numpy as np
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = write_json_atomic(pathlib.Path(tmp) / "a" / "x.json", {"n": np.int64(3)})
...     oct(path.stat().st_mode & 0o777), path.read_text().replace(" ", "").replace("\\n", "")
('0o600', '{"n":3}')
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "create_private_file",
    "make_private",
    "private_files",
    "write_json_atomic",
]

PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600
_UMASK = 0o077


@contextmanager
def private_files(workspace: Path, *, create: bool = False) -> Iterator[Path]:
    """Run a workspace operation under umask 0o077; then make the workspace owner-only.

    ``create`` makes the workspace folder (0700) if it is missing. The umask is process-wide:
    mlsd's commands are one operation per process, and the previous umask is restored.
    """
    previous = os.umask(_UMASK)
    try:
        if create:
            workspace.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        yield workspace
    finally:
        os.umask(previous)
        # files a library created with an explicit mode, and files of a workspace made before
        # mlsd kept them private
        make_private(workspace)


def make_private(root: Path) -> None:
    """Make every folder under ``root`` 0700 and every file 0600 (links are left alone)."""
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        base = Path(folder)
        _chmod(base, PRIVATE_DIR)
        for name in files:
            _chmod(base / name, PRIVATE_FILE)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]


def _chmod(path: Path, mode: int) -> None:
    try:
        st = path.lstat()
        if not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) != mode:
            path.chmod(mode)
    except OSError:
        pass  # another user's file, or gone since the walk listed it: not ours to change


def create_private_file(path: Path) -> Path:
    """Create ``path`` (and its folder, 0700) as an empty 0600 file if missing; make it 0600."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, PRIVATE_FILE))
    _chmod(path, PRIVATE_FILE)
    return path


def write_json_atomic(path: Path, payload: Any) -> Path:
    """Write ``payload`` as JSON beside ``path`` (0600) and rename it into place (the parent is made)."""
    path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    text = json.dumps(payload, indent=2, default=_json_default)
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    tmp.chmod(PRIVATE_FILE)  # an existing .tmp keeps its mode through os.open
    tmp.replace(path)  # atomic on one file system: readers see the old file or the new one
    return path


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pd.Timestamp):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
