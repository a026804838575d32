"""The rollout's part of the prediction log: shared state, events, outcomes, shadows, counts.

Kept apart from :mod:`mlsd.store.prediction_log` (the records, the writer's lifecycle and the
predictions, feedback and requests reads) because it serves the rollout alone: the state every
server process shares (``rollout_state``, compare-and-set), the audit trail (``rollout_events``),
the shadow answers (``shadow_predictions``) and the cheap reads a rollout decides on (never the
inputs column). :class:`RolloutLog` is a mixin of :class:`~mlsd.store.prediction_log.PredictionLog`,
which supplies the connection, the writer and the windowed reads.

>>> from mlsd.store import PredictionLog
>>> with PredictionLog("sqlite://") as log:
...     log.add_event("step", reason="canary step 1", actor="test", variant="challenger")
...     log.read_events()[["kind", "variant", "reason", "actor", "outcome"]]
   kind     variant         reason actor outcome
0  step  challenger  canary step 1  test      ok
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from mlsd.errors import LogError
from mlsd.store._log_frames import typed_frame
from mlsd.store._log_tables import (
    encode_shadow,
    feedback,
    predictions,
    rollout_events,
    rollout_state,
    shadow_predictions,
    to_json,
    to_micros,
)
from mlsd.store._log_writer import GroupCommitWriter, Submission

__all__ = ["RolloutLog", "ShadowRecord"]

_EVENT_COLUMNS: list[tuple[str, Any]] = [
    ("logged_at", "time"), ("kind", "str"), ("variant", "object"), ("reason", "str"),
    ("details", "json"), ("actor", "str"), ("outcome", "str"),
]  # fmt: skip
_OUTCOME_COLUMNS: list[tuple[str, Any]] = [
    ("request_id", "str"), ("logged_at", "time"), ("variant", "str"), ("assigned_variant", "object"),
    ("model_version", "int"), ("propensity", "float"), ("unit", "object"), ("assignment", "object"),
    ("fallback", "object"), ("score", "float"), ("decision", "json"), ("latency_ms", "float"),
    ("scoring_ms", "float"), ("outcome", "json"),
]  # fmt: skip
_REWARD_COLUMNS: list[tuple[str, Any]] = [
    ("variant", "str"),
    ("decision", "json"),
    ("outcome", "json"),
    ("n", "int"),
]
_SHADOW_COLUMNS: list[tuple[str, Any]] = [
    ("request_id", "str"), ("logged_at", "time"), ("variant", "str"), ("model_version", "int"),
    ("score", "float"), ("decision", "json"), ("latency_ms", "float"), ("error", "object"),
    ("primary_variant", "str"), ("primary_score", "float"), ("primary_decision", "json"),
    ("primary_latency_ms", "float"),
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class ShadowRecord:
    """What a shadow model answered for a logged request it did not serve (off the request path)."""

    request_id: str  # the primary prediction's id (that row must be logged)
    logged_at: datetime
    variant: str  # the shadow's alias
    model_name: str
    model_version: int
    score: float | None
    decision: Any
    latency_ms: float | None  # the shadow model's own scoring time
    error: str | None = None  # why the shadow failed (then score and decision are None)


class RolloutLog:
    """Rollout state, events, outcomes and shadows of the log (a mixin of ``PredictionLog``)."""

    url: str
    _started: bool
    _writer: GroupCommitWriter

    if TYPE_CHECKING:  # supplied by PredictionLog

        def _ensure_tables(self) -> None: ...

        def _connect(self) -> contextlib.AbstractContextManager[Connection]: ...

        def _rows(self, stmt: sa.Select) -> Sequence[Any]: ...

        @staticmethod
        def _window(stmt: sa.Select, column: Any, since: Any, until: Any) -> sa.Select: ...

    def submit_shadow(self, records: Sequence[ShadowRecord]) -> Future[None]:
        """Queue shadow answers for the next group commit; never raises to the caller.

        A shadow runs off the request path, so what goes wrong (an invalid record, a closed log,
        a primary request id that is not logged) is the returned future's exception, not the
        caller's. Submit after the primary's :meth:`submit` (the writer keeps the order).
        """
        future: Future[None] = Future()
        try:
            rows = [encode_shadow(record) for record in records]
            if not self._started or self._writer.closed:
                raise LogError(
                    "the prediction log is not running",
                    field="submit_shadow",
                    received=self.url,
                    expected="PredictionLog.start() first, and submit before close()",
                )
            if not rows:
                future.set_result(None)
                return future
            return self._writer.submit(Submission([], [], shadows=rows))
        except Exception as exc:  # the shadow must never fail the request that spawned it
            future.set_exception(exc)
            return future

    # -- rollout state and events -------------------------------------------------------------
    @staticmethod
    def _check_key(key: Any) -> str:
        if not isinstance(key, str) or not key or len(key) > 255:
            raise LogError("invalid state key", field="key", received=key, expected="a string of 1-255 chars")
        return key

    def _write_error(self, what: str, exc: SQLAlchemyError) -> LogError:
        reason = f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}".splitlines()[0]
        return LogError(
            f"cannot write {what} to the prediction log ({reason})",
            field="url",
            received=self.url,
            expected="a reachable, writable prediction log",
        )

    def read_state(self, key: str) -> tuple[int, dict[str, Any]] | None:
        """The shared state under ``key`` as ``(revision, state)``, or None if never written."""
        c = rollout_state.c
        rows = self._rows(sa.select(c.revision, c.state).where(c.key == self._check_key(key)))
        if not rows:
            return None
        return int(rows[0].revision), json.loads(rows[0].state)

    def write_state(self, key: str, state: dict[str, Any], *, expected_revision: int | None) -> int | None:
        """Compare-and-set the state under ``key``: the new revision, or None if another writer won.

        ``expected_revision=None`` creates the state (revision 1) only if there is none yet;
        otherwise the row is replaced only if it still has ``expected_revision``. The database
        decides (one UPDATE ... WHERE revision = ?, or the primary key of an INSERT), so this is
        safe between threads, processes and machines sharing the log, on SQLite and PostgreSQL.

        >>> from mlsd.store import PredictionLog
        >>> with PredictionLog("sqlite://") as log:
        ...     created = log.write_state("m", {"step": 0}, expected_revision=None)
        ...     won = log.write_state("m", {"step": 1}, expected_revision=created)
        ...     lost = log.write_state("m", {"step": 9}, expected_revision=created)  # stale
        ...     created, won, lost, log.read_state("m")
        (1, 2, None, (2, {'step': 1}))
        """
        self._check_key(key)
        if not isinstance(state, dict):
            raise LogError(
                "the state must be a JSON object",
                field="state",
                received=type(state).__name__,
                expected="a dict",
            )
        if expected_revision is not None and (
            isinstance(expected_revision, bool) or not isinstance(expected_revision, int)
        ):
            raise LogError(
                "invalid revision",
                field="expected_revision",
                received=expected_revision,
                expected="an int from read_state, or None to create the state",
            )
        text = to_json(state, field="state")
        now = to_micros(datetime.now(UTC), field="updated_at")
        c = rollout_state.c
        self._ensure_tables()
        try:
            with self._connect() as conn:
                if expected_revision is None:
                    try:
                        with conn.begin():
                            row = {"key": key, "revision": 1, "state": text, "updated_at": now}
                            conn.execute(sa.insert(rollout_state).values(**row))
                    except IntegrityError:  # another writer created it first
                        return None
                    return 1
                with conn.begin():
                    result = conn.execute(
                        sa.update(rollout_state)
                        .where(c.key == key, c.revision == expected_revision)
                        .values(revision=expected_revision + 1, state=text, updated_at=now)
                    )
                return expected_revision + 1 if result.rowcount == 1 else None
        except SQLAlchemyError as exc:
            raise self._write_error("the rollout state", exc) from exc

    def add_event(
        self,
        kind: str,
        *,
        reason: str,
        actor: str,
        variant: str | None = None,
        details: dict[str, Any] | None = None,
        outcome: str = "ok",
        at: datetime | None = None,
    ) -> None:
        """Record a rollout event (a step, a rollback, an admin action); committed on return."""
        for name, value, limit in (("kind", kind, 64), ("actor", actor, 255), ("outcome", outcome, 64)):
            if not isinstance(value, str) or not value or len(value) > limit:
                raise LogError(
                    "invalid event field", field=name, received=value, expected=f"a string of 1-{limit} chars"
                )
        if not isinstance(reason, str):
            raise LogError("invalid event reason", field="reason", received=reason, expected="a string")
        if variant is not None and (not isinstance(variant, str) or len(variant) > 255):
            raise LogError(
                "invalid event variant", field="variant", received=variant, expected="an alias or None"
            )
        if details is not None and not isinstance(details, dict):
            raise LogError(
                "event details must be a JSON object",
                field="details",
                received=type(details).__name__,
                expected="a dict or None",
            )
        row = {
            "logged_at": to_micros(at or datetime.now(UTC), field="at"),
            "kind": kind,
            "variant": variant,
            "reason": reason,
            "details": to_json(details or {}, field="details"),
            "actor": actor,
            "outcome": outcome,
        }
        self._ensure_tables()
        try:
            with self._connect() as conn, conn.begin():
                conn.execute(sa.insert(rollout_events).values(**row))
        except SQLAlchemyError as exc:
            raise self._write_error("a rollout event", exc) from exc

    def read_events(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Rollout events in ``[since, until)``, oldest first: logged_at (UTC), kind, variant,
        reason, details (dict), actor, outcome."""
        e = rollout_events.c
        stmt = sa.select(e.logged_at, e.kind, e.variant, e.reason, e.details, e.actor, e.outcome)
        stmt = self._window(stmt, e.logged_at, since, until).order_by(e.logged_at, e.id)
        return typed_frame(self._rows(stmt), _EVENT_COLUMNS)

    # -- rollout reads (cheap: never the inputs column) ---------------------------------------
    def read_outcomes(
        self, since: datetime | None = None, variants: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Predictions logged at or after ``since`` with their outcome (None where no feedback),
        oldest first, without the inputs: request_id, logged_at, variant, assigned_variant,
        model_version, propensity, unit, assignment, fallback, score, decision, latency_ms,
        scoring_ms, outcome. ``variants`` keeps rows that one of them answered or was assigned."""
        p, f = predictions.c, feedback.c
        stmt = sa.select(
            p.request_id, p.logged_at, p.variant, p.assigned_variant, p.model_version, p.propensity,
            p.unit, p.assignment, p.fallback, p.score, p.decision, p.latency_ms, p.scoring_ms, f.outcome,
        ).select_from(predictions.outerjoin(feedback, f.request_id == p.request_id))  # fmt: skip
        if variants is not None:
            names = [str(v) for v in variants]
            stmt = stmt.where(sa.or_(p.variant.in_(names), p.assigned_variant.in_(names)))
        stmt = self._window(stmt, p.logged_at, since, None).order_by(p.logged_at, p.request_id)
        return typed_frame(self._rows(stmt), _OUTCOME_COLUMNS)

    def reward_counts(self, since: datetime | None = None) -> pd.DataFrame:
        """Labelled predictions answered by the model they were assigned to (``fallback`` NULL),
        logged at or after ``since``, counted per (variant, decision, outcome) in SQL: variant,
        decision, outcome, n. Values are grouped by their stored JSON text, then decoded."""
        p, f = predictions.c, feedback.c
        n = sa.func.count().label("n")
        stmt = (
            sa.select(p.variant, p.decision, f.outcome, n)
            .select_from(predictions.join(feedback, f.request_id == p.request_id))
            .where(p.fallback.is_(None))
        )
        stmt = self._window(stmt, p.logged_at, since, None)
        stmt = stmt.group_by(p.variant, p.decision, f.outcome).order_by(p.variant, p.decision, f.outcome)
        return typed_frame(self._rows(stmt), _REWARD_COLUMNS)

    def read_shadow(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Shadow answers logged in ``[since, until)`` beside the primary answer of the same
        request, oldest first: request_id, logged_at, variant, model_version, score, decision,
        latency_ms, error, primary_variant, primary_score, primary_decision, primary_latency_ms."""
        s, p = shadow_predictions.c, predictions.c
        stmt = sa.select(
            s.request_id, s.logged_at, s.variant, s.model_version, s.score, s.decision, s.latency_ms,
            s.error, p.variant.label("primary_variant"), p.score.label("primary_score"),
            p.decision.label("primary_decision"), p.latency_ms.label("primary_latency_ms"),
        ).select_from(shadow_predictions.join(predictions, p.request_id == s.request_id))  # fmt: skip
        stmt = self._window(stmt, s.logged_at, since, until).order_by(s.logged_at, s.request_id, s.variant)
        return typed_frame(self._rows(stmt), _SHADOW_COLUMNS)

    def variant_counts(self, since: datetime | None = None) -> pd.DataFrame:
        """Predictions logged at or after ``since`` counted per variant in SQL: variant, requests
        (routing assigned it: ``assigned_variant``, else ``variant``) and answered (its model
        answered), one row per variant seen either way, by name. What ``GET /v1/admin/state``
        reports and the SRM test counts, without reading the rows.

        >>> from mlsd.store import PredictionLog, PredictionRecord
        >>> def row(i, variant, assigned=None):
        ...     return PredictionRecord(f"r-{i}", datetime(2024, 5, 1, tzinfo=UTC), None, "m", 1,
        ...         variant, {}, 0.5, True, 1.0, assigned_variant=assigned)
        >>> with PredictionLog("sqlite://") as log:
        ...     log.write_sync([row(1, "champion"), row(2, "challenger"), row(3, "champion", "b")])
        ...     log.variant_counts()
              variant  requests  answered
        0           b         1         0
        1  challenger         1         1
        2    champion         1         2
        """
        p = predictions.c
        # one GROUP BY over (assigned, answered) pairs: a handful of rows, summed both ways below
        assigned = sa.func.coalesce(p.assigned_variant, p.variant)
        stmt = sa.select(assigned.label("assigned"), p.variant, sa.func.count().label("n"))
        stmt = self._window(stmt.select_from(predictions), p.logged_at, since, None)
        pairs = pd.DataFrame(
            [tuple(r) for r in self._rows(stmt.group_by(assigned, p.variant))],
            columns=["assigned", "variant", "n"],
        )
        counts = pd.concat(
            {
                "requests": pairs.groupby("assigned")["n"].sum(),
                "answered": pairs.groupby("variant")["n"].sum(),
            },
            axis=1,
        )
        counts = counts.reindex(columns=["requests", "answered"]).fillna(0).astype("int64").sort_index()
        return counts.rename_axis("variant").reset_index().astype({"variant": object})
