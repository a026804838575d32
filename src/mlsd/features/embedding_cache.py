"""Text embeddings cached on disk by content, so a rebuild does not encode the same texts again.

:class:`EmbeddingCache` is one SQLite file in the workspace (``<workspace>/cache/embeddings.sqlite``)
with one row per ``(model id, sha256 of the text)`` and the vector as a float32 blob. The key is
the *content*: the same tweet in another design, split or build hits; a text changed by one
character misses. The model id carries the model package's version, so a new model never reads
the old model's vectors.

:func:`embed` is what an encoder calls: look the texts up, encode only the misses in batches of
``batch_size`` (reporting ``progress(done, total)`` after each batch, the callback a stage gets
from :func:`progress_callback`), store them, and return one row per text in the given order.

Concurrency: several builds may share a workspace. SQLite serialises the writers (WAL journal,
a busy timeout), and rows are inserted with ``INSERT OR IGNORE``: two processes that encode the
same text write the same vector, so whichever lands first wins and nothing is lost.

A cache is only a cache: a file that is not a SQLite database, or whose table is damaged, is
moved aside (``embeddings.sqlite.corrupt``) with a :class:`CacheWarning` and rebuilt empty; the
texts are then encoded again. Nothing in the served model needs the file (see
:class:`mlsd.features.text.MiniLMEncoder`, which forgets its cache path when pickled).

>>> import tempfile, numpy as np
>>> cache = EmbeddingCache(tempfile.mkdtemp() + "/embeddings.sqlite")
>>> calls = []
>>> def encode(texts):
...     calls.append(len(texts))
...     return np.array([[len(t), 1.0] for t in texts])
>>> embed(["ab", "abc", "ab"], encode, model_id="toy", cache=cache).tolist()
[[2.0, 1.0], [3.0, 1.0], [2.0, 1.0]]
>>> embed(["abc", "abcd"], encode, model_id="toy", cache=cache).tolist(), calls
([[3.0, 1.0], [4.0, 1.0]], [2, 1])
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import sqlite3
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlsd._progress import Progress

__all__ = [
    "CacheWarning",
    "EmbeddingCache",
    "active",
    "caching",
    "embed",
    "progress_callback",
    "text_keys",
]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS embeddings ("
    "model TEXT NOT NULL, sha256 TEXT NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
    "PRIMARY KEY (model, sha256)) WITHOUT ROWID"
)
_LOOKUP_CHUNK = 900  # SQLite's default limit on bound parameters is 999


class CacheWarning(UserWarning):
    """The embedding cache was unusable and has been rebuilt (the texts are encoded again)."""


def text_keys(texts: Sequence[str]) -> list[str]:
    """The sha256 (hex) of each text's UTF-8 bytes: its key in the cache.

    >>> text_keys(["a"])[0][:12]
    'ca978112ca1b'
    """
    return [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]


class EmbeddingCache:
    """Vectors by ``(model id, text sha256)`` in one SQLite file (created on first use)."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=self.timeout)
        try:
            con.execute("PRAGMA journal_mode=WAL")  # readers do not block the one writer
            con.execute(_SCHEMA)
            yield con
            con.commit()
        finally:
            con.close()

    def _rebuild(self, error: Exception) -> None:
        warnings.warn(
            f"embedding cache {self.path} is unusable ({error}); moved aside and rebuilt empty",
            CacheWarning,
            stacklevel=3,
        )
        aside = self.path.with_name(self.path.name + ".corrupt")
        with contextlib.suppress(OSError):
            self.path.replace(aside)
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                self.path.with_name(self.path.name + suffix).unlink()

    def _guarded(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        try:
            with self._connect() as con:
                return work(con)
        except sqlite3.DatabaseError as exc:
            busy = isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)
            if busy or isinstance(exc, sqlite3.IntegrityError):
                raise  # contention beyond the timeout, or a bug: not a broken file
            self._rebuild(exc)
            with self._connect() as con:
                return work(con)

    def get(self, model_id: str, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The stored vectors (float32) of those ``keys`` the cache holds for ``model_id``."""
        unique = list(dict.fromkeys(keys))

        def work(con: sqlite3.Connection) -> dict[str, np.ndarray]:
            found: dict[str, np.ndarray] = {}
            for start in range(0, len(unique), _LOOKUP_CHUNK):
                chunk = unique[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = con.execute(
                    f"SELECT sha256, dim, vector FROM embeddings WHERE model = ? AND sha256 IN ({marks})",
                    [model_id, *chunk],
                )
                for key, dim, blob in rows:
                    vector = np.frombuffer(blob, dtype="<f4")
                    if len(vector) == dim:  # a truncated blob is a miss, encoded again
                        found[key] = vector
            return found

        return self._guarded(work)

    def put(self, model_id: str, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store one float32 vector per key (a key already present keeps its vector)."""
        matrix = np.ascontiguousarray(vectors, dtype="<f4")
        rows = [(model_id, k, matrix.shape[1], matrix[i].tobytes()) for i, k in enumerate(keys)]

        def work(con: sqlite3.Connection) -> None:
            con.executemany("INSERT OR IGNORE INTO embeddings VALUES (?, ?, ?, ?)", rows)

        self._guarded(work)

    def __len__(self) -> int:
        return int(self._guarded(lambda con: con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]))


def embed(
    texts: Sequence[str],
    encode: Callable[[list[str]], Any],
    *,
    model_id: str,
    cache: EmbeddingCache | None = None,
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """One float32 row per text: cached rows read back, the misses ``encode``-d in batches.

    Duplicates are encoded once. ``progress(done, total)`` counts the distinct texts encoded in
    this call (nothing is reported when everything was cached).
    """
    keys = text_keys(texts)
    known = cache.get(model_id, keys) if cache is not None else {}
    by_key = dict(zip(keys, texts, strict=True))
    todo = [k for k in dict.fromkeys(keys) if k not in known]
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = np.asarray(encode([by_key[k] for k in batch]), dtype="float32")
        if cache is not None:
            cache.put(model_id, batch, vectors)
        known.update(zip(batch, vectors, strict=True))
        if progress is not None:
            progress(min(start + batch_size, len(todo)), len(todo))
    if not keys:
        return np.empty((0, 0), dtype="float32")
    return np.stack([np.asarray(known[k], dtype="float32") for k in keys])


def progress_callback(progress: Progress, name: str) -> Callable[[int, int], None]:
    """A ``callback(done, total)`` that draws ``name`` as a stage of ``progress`` (one bar per call run).

    The stage opens on the first report and closes when ``done`` reaches ``total``; it is a plain
    function, so sklearn's ``clone`` keeps it as it is.

    >>> from mlsd._progress import QUIET
    >>> report = progress_callback(QUIET, "embedding")
    >>> report(1, 2); report(2, 2)
    """
    state: dict[str, Any] = {}

    def report(done: int, total: int) -> None:
        if "stack" not in state:
            stack = contextlib.ExitStack()
            state["advance"] = stack.enter_context(progress.stage(name, total=total))
            state["stack"], state["done"] = stack, 0
        for _ in range(done - state["done"]):
            state["advance"]()
        state["done"] = done
        if done >= total:
            state.pop("stack").close()

    return report


_ACTIVE: contextvars.ContextVar[tuple[EmbeddingCache, Progress | None] | None] = contextvars.ContextVar(
    "mlsd_embedding_cache", default=None
)


@contextlib.contextmanager
def caching(path: str | Path, progress: Progress | None = None) -> Iterator[EmbeddingCache]:
    """Within the block, text encoders read and fill the cache at ``path`` and draw on ``progress``.

    The build opens it around its stages; outside it (the server, a notebook) an encoder has
    only its in-memory cache, so a registered model never depends on a workspace file.

    >>> import tempfile
    >>> with caching(tempfile.mkdtemp() + "/e.sqlite") as cache:
    ...     active() is not None
    True
    >>> active() is None
    True
    """
    cache = EmbeddingCache(path)
    token = _ACTIVE.set((cache, progress))
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def active() -> tuple[EmbeddingCache, Progress | None] | None:
    """The cache and progress of the enclosing :func:`caching` block, if any (this thread's)."""
    return _ACTIVE.get()
