"""Tables, engine and value encoding of the prediction log (private to :mod:`mlsd.store`).

Datetimes are stored as integer microseconds since the Unix epoch, UTC (``BIGINT``): they
sort, compare and index identically on SQLite and PostgreSQL, with no dialect-specific
timestamp parsing. JSON payloads (inputs, decision, outcome) are plain ``TEXT`` so any
SQLAlchemy backend can hold them.

>>> to_micros(datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC), field="logged_at")
1000000
>>> to_json({"a": 1, "b": [True, None]}, field="inputs")
'{"a":1,"b":[true,null]}'
"""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from mlsd.errors import LogError

__all__ = [
    "METADATA",
    "PREDICTION_ROLLOUT_COLUMNS",
    "URL_EXPECTED",
    "LogEngine",
    "add_missing_columns",
    "create_log_engine",
    "encode_prediction",
    "encode_request",
    "encode_shadow",
    "feedback",
    "feedback_corrections",
    "predictions",
    "requests",
    "rollout_events",
    "rollout_state",
    "shadow_predictions",
    "to_json",
    "to_json_fast",
    "to_micros",
]

URL_EXPECTED = "a SQLAlchemy URL such as sqlite:///path/predictions.db or postgresql+psycopg://..."
ID_MAX = 255

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# SQLite needs exactly INTEGER PRIMARY KEY for an autoincrementing rowid; elsewhere BIGINT.
_ROWID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

METADATA = sa.MetaData()

predictions = sa.Table(
    "predictions",
    METADATA,
    sa.Column("request_id", sa.String(ID_MAX), primary_key=True),
    sa.Column("logged_at", sa.BigInteger, nullable=False),
    sa.Column("event_time", sa.BigInteger, nullable=True),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("variant", sa.String(255), nullable=False),
    sa.Column("inputs", sa.Text, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("decision", sa.Text, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=True),
    # Rollout (all nullable, so a log written before them reads as "routing not recorded"):
    # the alias routing chose, its probability under the policy then, the unit it was chosen
    # for, how ("sticky" | "random" | "fixed") and why another model answered, if one did.
    sa.Column("assigned_variant", sa.String(255), nullable=True),
    sa.Column("propensity", sa.Float, nullable=True),
    sa.Column("unit", sa.String(ID_MAX), nullable=True),
    sa.Column("assignment", sa.String(16), nullable=True),
    sa.Column("fallback", sa.Text, nullable=True),
    # the model call that answered the row (its batch's), ms; latency_ms is the whole request
    sa.Column("scoring_ms", sa.Float, nullable=True),
)
# Columns added after the first release: an existing database gets them on open (ALTER TABLE).
PREDICTION_ROLLOUT_COLUMNS: tuple[str, ...] = (
    "assigned_variant",
    "propensity",
    "unit",
    "assignment",
    "fallback",
    "scoring_ms",
)
sa.Index("ix_predictions_event_time", predictions.c.event_time)
sa.Index("ix_predictions_logged_at", predictions.c.logged_at)
# Windows are read on "event time, else logged time"; an expression index (SQLite >= 3.9 and
# PostgreSQL) lets that filter and ORDER BY use an index instead of a scan + sort.
sa.Index("ix_predictions_effective_time", sa.func.coalesce(predictions.c.event_time, predictions.c.logged_at))

feedback = sa.Table(
    "feedback",
    METADATA,
    sa.Column(
        "request_id",
        sa.String(ID_MAX),
        sa.ForeignKey("predictions.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("received_at", sa.BigInteger, nullable=False),
)

# The audit trail of corrections: feedback is first-write-wins, and a replacement must be asked
# for (``correct: true``); each one keeps what it replaced and when both were received.
feedback_corrections = sa.Table(
    "feedback_corrections",
    METADATA,
    sa.Column("id", _ROWID, primary_key=True, autoincrement=True),
    sa.Column(
        "request_id",
        sa.String(ID_MAX),
        sa.ForeignKey("predictions.request_id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("old_outcome", sa.Text, nullable=False),
    sa.Column("new_outcome", sa.Text, nullable=False),
    sa.Column("old_received_at", sa.BigInteger, nullable=False),
    sa.Column("new_received_at", sa.BigInteger, nullable=False),
)
sa.Index("ix_feedback_corrections_request_id", feedback_corrections.c.request_id)

requests = sa.Table(
    "requests",
    METADATA,
    sa.Column("id", _ROWID, primary_key=True, autoincrement=True),
    sa.Column("logged_at", sa.BigInteger, nullable=False),
    sa.Column("route", sa.String(255), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    sa.Column("n_rows", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
sa.Index("ix_requests_logged_at", requests.c.logged_at)

# What a shadow model answered for a request it did not serve: compared with the primary's row.
shadow_predictions = sa.Table(
    "shadow_predictions",
    METADATA,
    sa.Column(
        "request_id",
        sa.String(ID_MAX),
        sa.ForeignKey("predictions.request_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("variant", sa.String(255), primary_key=True),
    sa.Column("logged_at", sa.BigInteger, nullable=False),
    sa.Column("model_name", sa.String(255), nullable=False),
    sa.Column("model_version", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("decision", sa.Text, nullable=False),  # JSON; null when the shadow failed
    sa.Column("latency_ms", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)
sa.Index("ix_shadow_predictions_logged_at", shadow_predictions.c.logged_at)

# The shared rollout state of every server process: one row per key, changed only by a
# compare-and-set on ``revision`` so two processes never both apply a step.
rollout_state = sa.Table(
    "rollout_state",
    METADATA,
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("revision", sa.Integer, nullable=False),
    sa.Column("state", sa.Text, nullable=False),  # JSON object
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# The audit trail of the rollout: every step, rollback, promotion and admin action.
rollout_events = sa.Table(
    "rollout_events",
    METADATA,
    sa.Column("id", _ROWID, primary_key=True, autoincrement=True),
    sa.Column("logged_at", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("variant", sa.String(255), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("details", sa.Text, nullable=False),  # JSON object
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("outcome", sa.String(64), nullable=False),
)
sa.Index("ix_rollout_events_logged_at", rollout_events.c.logged_at)


def _missing_columns(conn: Connection) -> list[str]:
    present = {c["name"] for c in sa.inspect(conn).get_columns(predictions.name)}
    return [name for name in PREDICTION_ROLLOUT_COLUMNS if name not in present]


def add_missing_columns(conn: Connection) -> list[str]:
    """Add the columns of ``predictions`` a log written by an older mlsd lacks; the names added.

    ``ALTER TABLE ... ADD COLUMN`` of a nullable column keeps every row (the new fields read
    NULL: "not recorded"). Processes may open the same old database at once, so each column is
    its own statement and transaction: the one that loses the race for a column sees "duplicate
    column" and then finds the column there. ``conn`` must not be in a transaction.
    """
    missing = _missing_columns(conn)
    conn.rollback()  # end the inspection's implicit transaction
    added: list[str] = []
    quote = conn.dialect.identifier_preparer.quote
    for name in missing:
        kind = predictions.c[name].type.compile(dialect=conn.dialect)
        ddl = f"ALTER TABLE {quote(predictions.name)} ADD COLUMN {quote(name)} {kind}"
        try:
            with conn.begin():
                conn.execute(sa.text(ddl))
        except SQLAlchemyError:
            there = name not in _missing_columns(conn)
            conn.rollback()
            if not there:
                raise
        else:
            added.append(name)
    return added


class LogEngine:
    """An engine plus what the log must know about it (in-memory SQLite is serialised)."""

    def __init__(self, engine: Engine, *, in_memory: bool) -> None:
        self.engine = engine
        self.in_memory = in_memory
        # One in-memory SQLite database lives in one DBAPI connection (StaticPool): threads must
        # take turns, or a reader's reset-on-return would roll back the writer's transaction.
        self.lock: threading.Lock | None = threading.Lock() if in_memory else None


def _url_error(url: Any, why: str) -> LogError:
    return LogError(
        f"cannot open the prediction log: {why}", field="url", received=url, expected=URL_EXPECTED
    )


def _apply_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL: readers never block the writer; FULL: a commit is fsynced before it returns,
        # so a record whose future resolved survives a crash of the process or the machine.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def create_log_engine(url: str | URL) -> LogEngine:
    """Parse ``url`` and build an engine; SQLite gets WAL, synchronous=FULL and a busy timeout."""
    shown = url.render_as_string(hide_password=True) if isinstance(url, URL) else url
    if not isinstance(url, str | URL) or not str(url).strip():
        raise _url_error(shown, "the URL is empty or not a string")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise _url_error(shown, "it is not a SQLAlchemy URL") from exc
    is_sqlite = parsed.get_backend_name() == "sqlite"
    in_memory = is_sqlite and parsed.database in (None, "", ":memory:")
    kwargs: dict[str, Any] = {}
    if in_memory:
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif is_sqlite:
        kwargs = {"connect_args": {"check_same_thread": False}}
        database = str(parsed.database)
        if not database.startswith("file:"):
            try:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _url_error(shown, f"cannot create the folder of {database}: {exc}") from exc
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise _url_error(shown, f"unknown database dialect or driver ({exc})") from exc
    except (ArgumentError, ImportError, TypeError, ValueError) as exc:
        raise _url_error(shown, f"{type(exc).__name__}: {exc}") from exc
    if is_sqlite:
        sa.event.listen(engine, "connect", _apply_sqlite_pragmas)
    return LogEngine(engine, in_memory=in_memory)


def to_micros(value: Any, *, field: str) -> int | None:
    """UTC microseconds since the epoch; naive datetimes and ISO strings are read as UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError as exc:
            raise LogError(
                "not an ISO 8601 time", field=field, received=value, expected="a tz-aware UTC datetime"
            ) from exc
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return int(value.astype("datetime64[us]").astype(np.int64))
    if not isinstance(value, datetime):
        raise LogError(
            "not a datetime", field=field, received=type(value).__name__, expected="a tz-aware UTC datetime"
        )
    if value != value:  # pandas.NaT is a datetime that is not equal to itself
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICRO


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(type(value).__name__)


def to_json(value: Any, *, field: str) -> str:
    """Compact JSON text; numpy scalars/arrays, datetimes and decimals are converted."""
    try:
        return json.dumps(value, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise LogError(
            f"cannot be stored as JSON ({exc})",
            field=field,
            received=type(value).__name__,
            expected="JSON-serialisable values (str, number, bool, None, list, dict)",
        ) from exc


def to_json_fast(value: Any, *, field: str) -> str:
    """:func:`to_json`'s value written by orjson (a tenth of the CPU): the same JSON value, with
    non-ASCII as UTF-8 rather than ``\\u`` escapes and NaN or infinity as ``null`` (which
    ``json.loads`` and Arrow's JSON reader both read back; ``NaN`` is not JSON). What orjson
    refuses (integers past 64 bits, keys that are not strings) is written by :func:`to_json`.

    >>> to_json_fast({"city": "Zürich", "n": [1, 2.5, None]}, field="inputs")
    '{"city":"Zürich","n":[1,2.5,null]}'
    """
    try:
        return orjson.dumps(value, default=_json_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return to_json(value, field=field)


def _number(value: Any, kind: type, field: str, *, nullable: bool = False) -> Any:
    if value is None and nullable:
        return None
    try:
        out = kind(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise LogError("not a number", field=field, received=value, expected=f"a {kind.__name__}") from exc
    return None if nullable and isinstance(out, float) and math.isnan(out) else out


def _duration(value: Any, field: str) -> float | None:
    """A non-negative, finite duration in ms, or None (not measured)."""
    out = _number(value, float, field, nullable=True)
    if out is not None and not (math.isfinite(out) and out >= 0):
        raise LogError(
            "not a duration", field=field, received=value, expected="a finite number of ms >= 0, or None"
        )
    return out


_ASSIGNMENTS = ("sticky", "random", "fixed")


def _request_id(rid: Any) -> str:
    if not isinstance(rid, str) or not rid or len(rid) > ID_MAX:
        raise LogError(
            "invalid request id", field="request_id", received=rid, expected=f"a string of 1-{ID_MAX} chars"
        )
    return rid


def _optional_text(value: Any, field: str, limit: int | None = 255) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or (limit is not None and len(value) > limit):
        shown = value if not isinstance(value, str) else f"{value[:40]}... ({len(value)} chars)"
        expected = "a string or None" if limit is None else f"a string of at most {limit} chars or None"
        raise LogError("not a short string", field=field, received=shown, expected=expected)
    return value


def _rollout_fields(record: Any) -> dict[str, Any]:
    """The routing fields of a prediction record, checked (None where not recorded)."""
    assignment = record.assignment
    if assignment is not None and assignment not in _ASSIGNMENTS:
        raise LogError(
            "unknown assignment", field="assignment", received=assignment, expected=" | ".join(_ASSIGNMENTS)
        )
    propensity = _number(record.propensity, float, "propensity", nullable=True)
    if propensity is not None and not 0.0 <= propensity <= 1.0:
        raise LogError(
            "not a probability", field="propensity", received=propensity, expected="a float in [0, 1] or None"
        )
    return {
        "assigned_variant": _optional_text(record.assigned_variant, "assigned_variant"),
        "propensity": propensity,
        "unit": _optional_text(record.unit, "unit", ID_MAX),
        "assignment": assignment,
        "fallback": _optional_text(record.fallback, "fallback", None),
        "scoring_ms": _duration(getattr(record, "scoring_ms", None), "scoring_ms"),
    }


def encode_prediction(record: Any) -> dict[str, Any]:
    """A :class:`~mlsd.store.PredictionRecord` as a row of ``predictions`` (LogError if invalid)."""
    rid = _request_id(record.request_id)
    if not isinstance(record.inputs, dict):
        raise LogError(
            "inputs must be one JSON object per row",
            field="inputs",
            received=type(record.inputs).__name__,
            expected="a dict of column -> value",
        )
    return {
        "request_id": rid,
        "logged_at": to_micros(record.logged_at, field="logged_at"),
        "event_time": to_micros(record.event_time, field="event_time"),
        "model_name": str(record.model_name),
        "model_version": _number(record.model_version, int, "model_version"),
        "variant": str(record.variant),
        "inputs": to_json_fast(record.inputs, field="inputs"),
        "score": _number(record.score, float, "score", nullable=True),
        "decision": to_json_fast(record.decision, field="decision"),
        "latency_ms": _number(record.latency_ms, float, "latency_ms", nullable=True),
        **_rollout_fields(record),
    }


def encode_shadow(record: Any) -> dict[str, Any]:
    """A :class:`~mlsd.store.ShadowRecord` as a row of ``shadow_predictions``."""
    return {
        "request_id": _request_id(record.request_id),
        "variant": str(record.variant),
        "logged_at": to_micros(record.logged_at, field="logged_at"),
        "model_name": str(record.model_name),
        "model_version": _number(record.model_version, int, "model_version"),
        "score": _number(record.score, float, "score", nullable=True),
        "decision": to_json(record.decision, field="decision"),  # a failed shadow's None -> null
        "latency_ms": _number(record.latency_ms, float, "latency_ms", nullable=True),
        "error": None if record.error is None else str(record.error),
    }


def encode_request(record: Any) -> dict[str, Any]:
    """A :class:`~mlsd.store.RequestRecord` as a row of ``requests``."""
    return {
        "logged_at": to_micros(record.logged_at, field="logged_at"),
        "route": str(record.route),
        "status": _number(record.status, int, "status"),
        "n_rows": _number(record.n_rows, int, "n_rows"),
        "latency_ms": _number(record.latency_ms, float, "latency_ms", nullable=True),
        "error": None if record.error is None else str(record.error),
    }
