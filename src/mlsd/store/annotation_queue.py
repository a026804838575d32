"""The annotation queue: the items active learning chose for a person to label, and the answers.

Table ``annotation_queue`` of the workspace database (the prediction log's, ``predictions.db``
or ``deployment.log_url``; same engine handling as the log: :func:`create_log_engine`), one row
per item: its key (a value of ``data.labels.active.key``, or a request id for items from the
log), its inputs as JSON, the strategy and score that chose it, when it was queued, and once
answered the answer, when, and by whom. Queueing an item already queued keeps the first row
(its answer too): asking again never erases a label. The table has its own metadata, so a
prediction log never depends on it; it is created on first use (``checkfirst``).

:meth:`AnnotationQueue.import_answers` reads a CSV/Parquet file with columns ``item_key`` and
``answer`` (``annotator`` optional; rows with an empty answer are skipped as "not done yet"),
checks every row (a key the queue does not hold, an answer that is not an allowed label) and
stores all of them in ONE transaction: on any error nothing is stored.

>>> import pandas as pd
>>> queue = AnnotationQueue("sqlite://")
>>> items = pd.DataFrame({"id": ["a", "b"], "x": [1.5, 2.0]})
>>> queue.enqueue(items, key="id", strategy="margin", scores=[0.9, 0.4])
2
>>> answers = pd.DataFrame({"item_key": ["a", "b"], "answer": ["yes", ""]})
>>> queue.import_answers(answers, labels={"yes": True, "no": False})
1
>>> queue.answers()
{'a': True}
>>> queue.read()[["item_key", "strategy", "score", "answer", "x"]].to_dict("records")[0]
{'item_key': 'a', 'strategy': 'margin', 'score': 0.9, 'answer': True, 'x': 1.5}
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL

from mlsd.errors import MlsdError
from mlsd.store._log_frames import decode_json_column, micros_to_utc
from mlsd.store._log_tables import ID_MAX, create_log_engine, to_json, to_micros
from mlsd.store.files import create_private_file

__all__ = ["QUEUE_COLUMNS", "AnnotationQueue", "annotation_queue"]

QUEUE_METADATA = sa.MetaData()

annotation_queue = sa.Table(
    "annotation_queue",
    QUEUE_METADATA,
    sa.Column("item_key", sa.String(ID_MAX), primary_key=True),
    sa.Column("inputs", sa.Text, nullable=False),  # JSON object
    sa.Column("strategy", sa.String(64), nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("queued_at", sa.BigInteger, nullable=False),
    sa.Column("answer", sa.Text, nullable=True),  # JSON; NULL until answered
    sa.Column("answered_at", sa.BigInteger, nullable=True),
    sa.Column("annotator", sa.String(255), nullable=True),
)
sa.Index("ix_annotation_queue_queued_at", annotation_queue.c.queued_at)

#: the columns of :meth:`AnnotationQueue.read`, before one column per input field
QUEUE_COLUMNS = ("item_key", "strategy", "score", "queued_at", "answer", "answered_at", "annotator")


class AnnotationQueue:
    """The queue behind any SQLAlchemy URL; :meth:`for_workspace` opens the workspace's."""

    def __init__(self, url: str | URL) -> None:
        self._db = create_log_engine(url)
        self.url = self._db.engine.url.render_as_string(hide_password=True)
        QUEUE_METADATA.create_all(self._db.engine, checkfirst=True)

    @classmethod
    def for_workspace(cls, workspace: Path | str, url: str | None = None) -> AnnotationQueue:
        """``url`` if given, else ``sqlite:///<workspace>/predictions.db`` (created 0600: raw inputs)."""
        if url is not None:
            return cls(url)
        path = Path(workspace).expanduser().resolve() / "predictions.db"
        create_private_file(path)
        return cls(URL.create("sqlite", database=os.fspath(path)))

    def close(self) -> None:
        self._db.engine.dispose()

    def __enter__(self) -> AnnotationQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def enqueue(
        self, items: pd.DataFrame, *, key: str, strategy: str, scores: Sequence[float] | np.ndarray
    ) -> int:
        """Queue ``items`` (their ``key`` column names them); the number newly queued."""
        if key not in items.columns:
            raise MlsdError(
                "the items lack their key column",
                field="key",
                received=key,
                expected="one of: " + ", ".join(map(str, items.columns[:20])),
            )
        keys = items[key].astype(str).tolist()
        if len(set(keys)) != len(keys):
            raise MlsdError(
                "item keys must be unique",
                field=key,
                received=f"{len(keys) - len(set(keys))} repeats",
                expected="one row per item",
            )
        now = to_micros(datetime.now(UTC), field="queued_at")
        inputs = items.drop(columns=[key]).to_dict("records")
        rows = [
            {
                "item_key": k,
                "inputs": to_json(_plain(row), field="inputs"),
                "strategy": strategy,
                "score": None if s is None or not np.isfinite(s) else float(s),
                "queued_at": now,
            }
            for k, row, s in zip(keys, inputs, np.asarray(scores, dtype=float), strict=True)
        ]
        with self._db.engine.begin() as conn:
            there = {
                r[0]
                for r in conn.execute(
                    sa.select(annotation_queue.c.item_key).where(annotation_queue.c.item_key.in_(keys))
                )
            }
            new = [r for r in rows if r["item_key"] not in there]
            if new:
                conn.execute(annotation_queue.insert(), new)
        return len(new)

    def read(self, *, pending: bool = False) -> pd.DataFrame:
        """The queue, oldest first: :data:`QUEUE_COLUMNS` then one column per input field."""
        q = annotation_queue.c
        stmt = sa.select(
            q.item_key, q.strategy, q.score, q.queued_at, q.answer, q.answered_at, q.annotator, q.inputs
        ).order_by(q.queued_at, q.item_key)
        if pending:
            stmt = stmt.where(q.answer.is_(None))
        with self._db.engine.connect() as conn:
            rows = conn.execute(stmt).all()
        cols: list[Any] = list(zip(*rows, strict=True)) if rows else [()] * 8
        key, strategy, score, queued, answer, answered, annotator, inputs = cols
        meta = pd.DataFrame(
            {
                "item_key": pd.Series(key, dtype="str"),
                "strategy": pd.Series(strategy, dtype="str"),
                "score": pd.Series(score, dtype="float64"),
                "queued_at": micros_to_utc(queued),
                "answer": pd.Series(decode_json_column(answer), dtype=object),
                "answered_at": micros_to_utc(answered),
                "annotator": pd.Series(annotator, dtype=object),
            }
        )
        fields = decode_json_column(inputs, frame=True)
        fields.columns = [f"input_{c}" if c in meta.columns else str(c) for c in fields.columns]
        return pd.concat([meta, fields], axis=1)

    def answers(self) -> dict[str, Any]:
        """``item_key -> answer`` of every answered item."""
        q = annotation_queue.c
        with self._db.engine.connect() as conn:
            rows = conn.execute(sa.select(q.item_key, q.answer).where(q.answer.is_not(None))).all()
        return {k: json.loads(a) for k, a in rows}

    def export(self, path: str | os.PathLike[str], *, pending: bool = True) -> int:
        """Write the (pending) queue to ``path``: ``.csv``, else Parquet; the number of rows.

        The file has an empty ``answer`` (and ``annotator``) column to fill in and import back.
        """
        frame = self.read(pending=pending)
        frame["answer"] = frame["answer"].map(lambda a: "" if a is None else a)
        frame["annotator"] = frame["annotator"].fillna("")
        path = Path(path)
        create_private_file(path)  # the items' raw inputs, like the log they came from
        if path.suffix.lower() == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.assign(answer=frame["answer"].astype(str)).to_parquet(path, index=False)
        return len(frame)

    def import_answers(
        self, answers: pd.DataFrame | str | os.PathLike[str], *, labels: Mapping[str, Any]
    ) -> int:
        """Store the answers of ``answers`` (a frame, or a CSV/Parquet path); the number stored.

        ``labels`` maps each accepted answer text (case-insensitive) to the label stored. Every
        row is checked before any is written, and all are written in one transaction.
        """
        frame, source = _read_answers(answers)
        for column in ("item_key", "answer"):
            if column not in frame.columns:
                raise MlsdError(
                    "the answers lack a column",
                    field=column,
                    received=list(frame.columns)[:20],
                    expected=f"columns item_key and answer in {source}",
                )
        text = frame["answer"].map(
            lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        )
        given = text.str.strip() != ""
        frame, text = frame.loc[given], text[given].str.strip()
        allowed = {str(k).lower(): v for k, v in labels.items()}
        bad = ~text.str.lower().isin(list(allowed))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MlsdError(
                f"not an allowed label (row {_row(frame, row)} of {source})",
                field="answer",
                received=text.iloc[row],
                expected=" | ".join(map(str, labels)),
            )
        keys = frame["item_key"].astype(str).str.strip()
        if keys.duplicated().any():
            row = int(np.flatnonzero(keys.duplicated().to_numpy())[0])
            raise MlsdError(
                f"an item answered twice (row {_row(frame, row)} of {source})",
                field="item_key",
                received=keys.iloc[row],
                expected="one answer per item",
            )
        annotators = (
            frame["annotator"] if "annotator" in frame.columns else pd.Series(None, index=frame.index)
        )
        now = to_micros(datetime.now(UTC), field="answered_at")
        q = annotation_queue.c
        with self._db.engine.begin() as conn:  # one transaction: an error stores nothing
            known = {r[0] for r in conn.execute(sa.select(q.item_key).where(q.item_key.in_(keys.tolist())))}
            unknown = ~keys.isin(list(known))
            if unknown.any():
                row = int(np.flatnonzero(unknown.to_numpy())[0])
                raise MlsdError(
                    f"not an item of the queue (row {_row(frame, row)} of {source})",
                    field="item_key",
                    received=keys.iloc[row],
                    expected="a key exported by `mlsd label --export`",
                )
            who = (
                annotators.astype(object)
                .where(annotators.notna(), None)
                .map(lambda v: None if v is None or str(v) == "" else str(v)[:255])
            )
            rows = [
                {"key": k, "answer": to_json(allowed[t], field="answer"), "answered_at": now, "annotator": w}
                for k, t, w in zip(keys, text.str.lower(), who, strict=True)
            ]
            if rows:  # one executemany: a statement per batch, not a round trip per answer
                stmt = (
                    annotation_queue.update()
                    .where(q.item_key == sa.bindparam("key"))
                    .values(
                        answer=sa.bindparam("answer"),
                        answered_at=sa.bindparam("answered_at"),
                        annotator=sa.bindparam("annotator"),
                    )
                )
                conn.execute(stmt, rows)
        return len(keys)


def _row(frame: pd.DataFrame, position: int) -> int:
    """The 1-based data row (a CSV's line is this + 1, for the header)."""
    return int(frame.index[position]) + 1


def _read_answers(answers: Any) -> tuple[pd.DataFrame, str]:
    if isinstance(answers, pd.DataFrame):
        return answers.reset_index(drop=True), "the answers"
    path = Path(answers)
    if not path.is_file():
        raise MlsdError(
            "no such answers file",
            field="--import",
            received=str(path),
            expected="a CSV or Parquet file written from `mlsd label --export`",
        )
    try:
        if path.suffix.lower() == ".csv":
            # as text: "1" stays "1", an item key "007" stays "007"
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as exc:
        raise MlsdError(
            f"cannot read the answers ({type(exc).__name__}: {exc})",
            field="--import",
            received=str(path),
            expected="a CSV or Parquet file",
        ) from exc
    return frame.reset_index(drop=True), path.name


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    """A record with pandas' missing values as None (JSON null) and timestamps as ISO text."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if v is None or (not isinstance(v, str | bytes | list | dict) and pd.isna(v)):
            out[str(k)] = None
        elif isinstance(v, pd.Timestamp):
            out[str(k)] = v.isoformat()
        else:
            out[str(k)] = v
    return out
