"""The request handling behind the routes of :mod:`mlsd.serving.app` (no FastAPI routing here)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from mlsd._deployment import DeploymentSpec
from mlsd.data import Schema
from mlsd.errors import ConflictError, LogError, MlsdError, NotFoundError
from mlsd.serving.batching import MicroBatcher
from mlsd.serving.bodies import json_response, parse_json, parse_predict_body
from mlsd.serving.ids import new_request_ids
from mlsd.serving.metrics import ServingMetrics
from mlsd.serving.models import example_row
from mlsd.serving.responses import (
    RequestError,
    error_response,
    log_unavailable_response,
    mlsd_error_response,
)
from mlsd.serving.routing import BASELINE, Routing, Variant, _Counters
from mlsd.serving.security import bearer_matches, sign_request_id, unauthorized, verify_request_id
from mlsd.serving.settings import ServeSettings
from mlsd.serving.validation import MAX_ABS_NUMBER, CheckedRows, RowValidator
from mlsd.store.prediction_log import PredictionBatch, RequestRecord

PREDICT_ROUTE = "/v1/predict"
FEEDBACK_ROUTE = "/v1/feedback"
READY_ROUTE = "/readyz"
#: the unit of assignment when the design names no sticky_by field (or a row lacks it)
UNIT_HEADER = "x-mlsd-unit"

_log = logging.getLogger("mlsd.serving")


@dataclass(frozen=True, slots=True)
class FeedbackNote:
    """One feedback item as parsed: ``correct`` replaces a stored outcome; ``signature`` is the
    HMAC of the request id the prediction answer carried (feedback_auth: signed_id)."""

    request_id: str
    outcome: Any
    correct: bool = False
    signature: Any = None


@dataclass(frozen=True, slots=True)
class Routed:
    """A row on its way into a micro-batch, with the variant its rollout assigned it and its
    request's number (the champion's fallback answers one request at a time)."""

    row: Any
    variant: str
    request: int = 0


@dataclass
class Scored:
    """One micro-batch after validation and scoring (invalid rows have no score)."""

    checked: CheckedRows
    score: np.ndarray
    decision: list[Any]
    event_time: np.ndarray | None  # datetime64[us], UTC (None: the design names no time column)
    answered_by: np.ndarray  # object: the alias whose model answered each row
    version: np.ndarray  # int: its registered version
    fallback: list[str | None]
    scoring_ms: np.ndarray  # float: the model call that answered each row (NaN: not scored)
    rows: list[Any] | None = None  # the rows as validated and logged (data.privacy treated them)
    # models.abstain: why the answering model declined each row (None: answered) and its confidence
    abstain_reason: list[str | None] | None = None
    confidence: np.ndarray | None = None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _too_large(limit: int) -> RequestError:
    # made only when refused: an error object per request was a few µs of every answer's CPU
    return RequestError(
        413,
        "payload_too_large",
        f"the body is larger than {limit} bytes",
        [{"field": "body", "received": None, "expected": f"at most {limit} bytes"}],
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 past ``limit`` bytes whether or not Content-Length is sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise RequestError(400, "bad_request", "the client disconnected before sending the body") from exc
    return b"".join(chunks)


class Service:
    """State and handlers of one served model."""

    def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self.model = settings.model
        self.log = settings.log
        self.schema = Schema.from_dict(self.model.schema) if self.model.schema else Schema(columns={})
        self.validator = RowValidator(
            self.schema,
            self.model.input_columns,
            reject_unseen_categories=settings.reject_unseen_categories,
            range_tolerance=settings.range_tolerance,
            max_string_length=settings.max_string_length,
            time_column=settings.time_column,
        )
        self.metrics = ServingMetrics(
            queue_depth=lambda: float(self.log.queue_depth),
            log_write_failures=lambda: float(self.log.n_write_failures),
            log_healthy=lambda: float(self.log.is_healthy()),
        )
        self.batcher: MicroBatcher[Scored] = MicroBatcher(
            self._score,
            max_batch_size=settings.max_batch_size,
            max_delay_ms=settings.max_batch_delay_ms,
            on_batch=self.metrics.batch_size.observe,
            adaptive=True,
        )
        self.model_ref = {"name": settings.model_name, "version": settings.model_version}
        self.routing = settings.routing or Routing(
            DeploymentSpec(),
            {"champion": Variant("champion", self.model, settings.model_version)},
            log=self.log,
            model_name=settings.model_name,
            task=self.model.task,
        )
        self.routing.counters = _Counters(
            fallbacks=lambda variant, reason, n: self.metrics.fallbacks.labels(
                variant=variant, reason=reason
            ).inc(n),
            shadow_dropped=self.metrics.shadow_dropped.inc,
        )
        self.strategy = self.routing.spec.strategy
        self._refresher: asyncio.Task[None] | None = None
        self._log_started = False
        self._inputs_kept = list(
            dict.fromkeys([*self.model.input_columns, *filter(None, [settings.time_column])])
        )
        self._classes = list(self.model.classes)
        self._request_numbers = itertools.count()  # on the event loop only

    async def start(self) -> None:
        await asyncio.to_thread(self.log.start)
        self._log_started = True
        # every loaded model answers once before the first request: a cold first call (lazy
        # imports, allocations) is not a request's latency, nor the canary's p99
        example = [example_row(self.schema, self.model.input_columns)]
        await asyncio.to_thread(self.routing.warm, example, self.validator)
        if any(v.model.metadata.get("abstain") for v in self.routing.variants.values()):
            import mlsd.modeling.abstention  # noqa: F401  # imported now, not in the first request
        # The loaded models, the frames and the modules are here for the process's life: out of
        # the collector's sight, a full collection no longer walks them, which otherwise stalls
        # every request behind it for hundreds of ms (seen with the shadow's extra allocations).
        # the shared state is known before the first request; a single server reloads aliases
        await asyncio.to_thread(self.routing.refresh)
        # Frozen after the first refresh, which makes the registry's MLflow client (~150k objects):
        # frozen before it, they stayed in the collector's sight and each full collection took
        # ~80 ms, about once a second under load (tests/serving/test_gc_freeze.py)
        gc.collect()
        gc.freeze()
        self._refresher = asyncio.create_task(self._refresh_forever())
        await self.batcher.start()

    async def stop(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
        await self.batcher.stop()
        await asyncio.to_thread(self.routing.close)  # queued shadows reach the log writer
        self._log_started = False
        await asyncio.to_thread(self.log.close)  # drains: every submitted record is committed

    async def _refresh_forever(self) -> None:
        interval = self.routing.spec.state_refresh_s
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.routing.refresh)

    async def readiness(self) -> str | None:
        """Why the server is not ready, or None. A failing log is probed with a real commit.

        A load balancer stops sending traffic to a server whose ``/readyz`` says 503, so no
        prediction would ever find out that space came back; the probe's own request record
        is that commit.
        """
        if not (self._log_started and self.batcher.running):
            return "the prediction log or the batcher is not running"
        if self.log.is_healthy():
            return None
        if self.log.failing:
            now = datetime.now(UTC)
            with contextlib.suppress(Exception):  # still failing: the reason is what the log kept
                await self.log.write([], RequestRecord(now, READY_ROUTE, 200, 0, 0.0))
            if self.log.is_healthy():
                return None
            return f"the prediction log cannot commit ({self.log.last_write_problem})"
        return "the prediction log writer is not running"

    # -- scoring (in a worker thread, once per micro-batch) -----------------------------------
    def _score(self, items: list[Routed]) -> Scored:
        n = len(items)
        rows = [item.row for item in items]
        if self.settings.privacy is not None:  # personal fields treated once per batch, as the build did
            rows = self.settings.privacy.treat_rows(rows)
        checked = self.validator.check(rows)
        ok = ~checked.invalid
        score = np.full(n, np.nan)
        decision: list[Any] = [None] * n
        assigned = np.array([item.variant for item in items], dtype=object)
        answered, version = assigned.copy(), np.zeros(n, dtype=np.int64)
        fallback: list[str | None] = [None] * n
        scoring_ms = np.full(n, np.nan)
        if ok.any():
            frame = checked.frame if ok.all() else checked.frame.loc[ok]
            positions = np.flatnonzero(ok)
            one_request = len({items[i].request for i in positions.tolist()}) == 1
            got = self.routing.score(frame, assigned[ok], one_request=one_request)
            score[positions] = got.score
            answered[positions], version[positions] = got.answered_by, got.version
            if got.scoring_ms is not None:
                scoring_ms[positions] = got.scoring_ms
            for i, d, why in zip(positions.tolist(), got.decision, got.fallback, strict=True):
                decision[i], fallback[i] = d, why
        # counted once the batch scored: a failed batch is scored again request by request
        for column, count in checked.unseen_categories.items():
            self.metrics.unseen_categories.labels(column=column).inc(count)
        reasons, confidence = self._abstentions(score, answered, np.flatnonzero(ok))
        return Scored(
            checked,
            score,
            decision,
            _event_times(checked),
            answered,
            version,
            fallback,
            scoring_ms,
            rows,
            reasons,
            confidence,
        )

    def _abstentions(
        self, score: np.ndarray, answered: np.ndarray, positions: np.ndarray
    ) -> tuple[list[str | None] | None, np.ndarray | None]:
        """models.abstain: each scored row judged by the policy its answering model carries
        (docs/abstention.md); None when no loaded model abstains."""
        variants = self.routing.variants  # one snapshot: a reload swaps the dict
        if not any(v.model.metadata.get("abstain") for v in variants.values()):
            return None, None
        from mlsd.modeling.abstention import AbstentionPolicy  # only a model that abstains needs it

        reasons: list[str | None] = [None] * len(score)
        confidence = np.full(len(score), np.nan)
        for alias in dict.fromkeys(answered[positions].tolist()):
            variant = variants.get(alias)  # the rule baseline has no policy: it always answers
            policy = (
                None if variant is None else AbstentionPolicy.from_dict(variant.model.metadata.get("abstain"))
            )
            if policy is None:
                continue
            rows = positions[answered[positions] == alias]
            confidence[rows] = policy.confidence(score[rows])
            for i in rows[policy.abstains(score[rows])].tolist():
                reasons[i] = policy.reason(float(score[i]))
        return reasons, confidence

    def _units(self, request: Request, rows: list[Any]) -> list[str | None]:
        """Each row's unit of assignment: its ``sticky_by`` field, else the X-Mlsd-Unit header."""
        header = request.headers.get(UNIT_HEADER) or None
        if header is not None:
            header = header[:255]
        key = self.routing.spec.sticky_by
        if key is None:
            return [header] * len(rows)
        privacy = self.settings.privacy
        if privacy is not None and privacy.pseudonymised(key):  # the logged unit is the pseudonym
            rows = [
                {key: v}
                for v in privacy.treat_values(
                    key, [r.get(key) if isinstance(r, dict) else None for r in rows]
                )
            ]
        units: list[str | None] = []
        for row in rows:
            value = row.get(key) if isinstance(row, dict) else None
            if value is None or isinstance(value, (dict, list, bool)) or value != value:
                units.append(header)
            else:
                units.append(str(value)[:255])
        return units

    # -- routes ---------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        start, received = _started(request)
        n_rows = 0
        self.batcher.expect()
        expected = True
        try:
            payload = parse_json(await read_body(request, self.settings.max_body_bytes))
            rows, single = parse_predict_body(payload, max_rows=self.settings.max_rows_per_request)
            n_rows = len(rows)
            expected = False
            self.batcher.unexpect()
            assignment = self.routing.assign(self._units(request, rows))
            number = next(self._request_numbers)
            part = await self.batcher.submit(
                [Routed(row, v, number) for row, v in zip(rows, assignment.variant.tolist(), strict=True)]
            )
            scored = part.result
            bad = scored.checked.invalid[part.start : part.stop]
            if bad.any():
                errors, total = self.validator.field_errors(
                    [item.row for item in part.rows],
                    scored.checked,
                    part.start,
                    part.stop,
                    single=single,
                    limit=self.settings.max_errors,
                )
                raise RequestError(
                    422,
                    "validation_error",
                    f"{total} invalid field{'s' * (total != 1)} in {int(bad.sum())} of {n_rows} rows",
                    errors,
                    n_errors=total,
                )
        except RequestError as exc:
            for entry in exc.errors:
                self.metrics.validation_errors.labels(kind=entry.get("kind", exc.error_type)).inc()
            self._record_failure(received, start, exc.status_code, n_rows, exc.message)
            return exc.response()
        except Exception as exc:  # the model failed on this batch: 500, and the next batch is scored
            _log.error("scoring failed: %s: %s", type(exc).__name__, exc)
            message = exc.message if isinstance(exc, MlsdError) else type(exc).__name__
            self._record_failure(received, start, 500, n_rows, f"model error: {message}")
            return error_response(500, f"the model failed to score this request ({message})", "model_error")
        finally:
            if expected:  # rejected before its rows reached the batcher
                self.batcher.unexpect()
        ids = new_request_ids(n_rows)
        if scored.rows is not None:  # what was validated is what is logged (data.privacy)
            rows = scored.rows[part.start : part.stop]
        latency_ms = (time.perf_counter() - start) * 1000
        batch = self._log_batch(scored, part.start, part.stop, ids, rows, assignment, received, latency_ms)
        try:
            await self.log.write_batch(batch, RequestRecord(received, PREDICT_ROUTE, 200, n_rows, latency_ms))
        except Exception as exc:  # not committed, so not answered with a prediction
            _log.error("prediction log write failed: %s: %s", type(exc).__name__, exc)
            if isinstance(exc, ConflictError):  # a request id already logged: this request only
                return mlsd_error_response(exc)
            if isinstance(exc, LogError):
                return log_unavailable_response(self.log.last_write_problem)
            return error_response(500, "the prediction could not be logged", "log_error")
        self.metrics.count_predictions(batch.model_version, batch.variant)
        answers = self._answers(batch)
        shadowed = np.flatnonzero(assignment.shadow)
        if len(shadowed) and scored.rows is not None:  # answered and committed: the shadow runs behind
            self.routing.shadow(
                [scored.rows[part.start + k] for k in shadowed.tolist()],
                [ids[k] for k in shadowed.tolist()],
                received,
            )
        body = {"model": self.model_ref, "predictions": answers}
        return json_response(body, finite=batch.score)

    def _log_batch(
        self,
        scored: Scored,
        start: int,
        stop: int,
        ids: list[str],
        rows: list[Any],
        assignment: Any,
        received: datetime,
        latency_ms: float,
    ) -> PredictionBatch:
        """The request's rows of the scored batch as the log's columns (one object per request)."""
        kept = self._inputs_kept
        # a row with exactly the kept fields in their order is logged as it is; others keep those
        inputs = [row if list(row) == kept else {k: row[k] for k in kept if k in row} for row in rows]
        s = self.settings
        return PredictionBatch(
            request_id=ids,
            logged_at=received,
            model_name=s.model_name,
            latency_ms=latency_ms,
            model_version=scored.version[start:stop],
            variant=scored.answered_by[start:stop],
            inputs=inputs,
            score=scored.score[start:stop],
            decision=scored.decision[start:stop],
            event_time=None if scored.event_time is None else scored.event_time[start:stop],
            assigned_variant=assignment.variant.tolist(),
            propensity=assignment.propensity,
            unit=assignment.unit,
            assignment=assignment.assignment.tolist(),
            fallback=scored.fallback[start:stop],
            scoring_ms=scored.scoring_ms[start:stop],
            abstain_reason=None if scored.abstain_reason is None else scored.abstain_reason[start:stop],
            confidence=None if scored.confidence is None else scored.confidence[start:stop],
        )

    def _answers(self, batch: PredictionBatch) -> list[dict[str, Any]]:
        """One answer per row: its id, score and decision, and what the deployment adds."""
        scores = np.asarray(batch.score).tolist()
        answers: list[dict[str, Any]] = [
            {"request_id": rid, "score": score, "decision": decision}
            for rid, score, decision in zip(batch.request_id, scores, batch.decision, strict=True)
        ]
        if batch.abstain_reason is not None:  # models.abstain: a declined row carries no decision to act on
            for answer, reason in zip(answers, batch.abstain_reason, strict=True):
                answer["abstain"] = reason is not None
                if reason is not None:
                    answer["decision"], answer["reason"] = None, reason
        variants = batch.variant.tolist() if isinstance(batch.variant, np.ndarray) else list(batch.variant)
        rollout = self.strategy in ("canary", "ab", "bandit")
        if (
            rollout or BASELINE in variants
        ):  # the rule baseline answering for a failed champion is said always
            versions = np.asarray(batch.model_version).tolist()
            for answer, variant, version in zip(answers, variants, versions, strict=True):
                if rollout or variant == BASELINE:
                    answer["variant"], answer["model_version"] = variant, version
        if self.settings.feedback_auth == "signed_id" and self.settings.feedback_secret:
            for answer in answers:  # the feedback for this id must echo it
                answer["signature"] = sign_request_id(self.settings.feedback_secret, answer["request_id"])
        return answers

    def _record_failure(self, received: datetime, start: float, status: int, n_rows: int, error: str) -> None:
        latency_ms = (time.perf_counter() - start) * 1000
        try:  # not awaited: a rejected request does not wait for the commit
            self.log.submit(
                [], RequestRecord(received, PREDICT_ROUTE, status, n_rows, latency_ms, error[:500])
            )
        except Exception as exc:
            _log.warning("could not log a rejected request: %s", exc)

    async def feedback(self, request: Request) -> Response:
        try:
            self._authenticate_feedback(request)
            payload = parse_json(await read_body(request, self.settings.max_body_bytes))
            items, single = self._feedback_items(payload)
            self._check_signatures(items, single)
        except RequestError as exc:
            return exc.response()
        # all submitted before any is awaited, so a list of outcomes shares one group commit
        statuses = await asyncio.gather(
            *(self.log.record_feedback(i.request_id, i.outcome, correct=i.correct) for i in items),
            return_exceptions=True,
        )
        results, failures = [], []
        for i, (item, status) in enumerate(zip(items, statuses, strict=True)):
            if isinstance(status, NotFoundError | ConflictError):
                if single:
                    return mlsd_error_response(status)
                failures.append((i, status))
            elif isinstance(status, LogError):  # not committed: nothing was recorded
                return log_unavailable_response(self.log.last_write_problem, partial=not single)
            elif isinstance(status, BaseException):
                raise status
            else:
                results.append({"request_id": item.request_id, "status": status})
        if failures:
            code = 404 if all(isinstance(e, NotFoundError) for _, e in failures) else 409
            errors = [
                {
                    "field": f"[{i}].{e.field}",
                    "received": e.received,
                    "expected": e.expected,
                    "message": e.message,
                }
                for i, e in failures[: self.settings.max_errors]
            ]
            message = f"{len(failures)} of {len(items)} feedback items failed; the others were recorded"
            return RequestError(code, "not_found" if code == 404 else "conflict", message, errors).response()
        return JSONResponse(results[0] if single else {"results": results})

    def _authenticate_feedback(self, request: Request) -> None:
        """401 unless the request carries the feedback token (feedback_auth: token)."""
        if self.settings.feedback_auth == "token" and not bearer_matches(
            request, self.settings.feedback_token
        ):
            raise unauthorized(
                "feedback needs the feedback token", expected="Authorization: Bearer <the feedback token>"
            )

    def _check_signatures(self, items: list[FeedbackNote], single: bool) -> None:
        """401 unless every item echoes its prediction's signature (feedback_auth: signed_id)."""
        secret = self.settings.feedback_secret
        if self.settings.feedback_auth != "signed_id" or secret is None:
            return
        bad = [
            {
                "field": "signature" if single else f"[{i}].signature",
                "received": None,
                "expected": "the signature the prediction answer carried for this request_id",
            }
            for i, item in enumerate(items)
            if not verify_request_id(secret, item.request_id, item.signature)
        ]
        if bad:
            message = f"{len(bad)} of {len(items)} feedback items lack a valid signature; none was recorded"
            raise RequestError(
                401, "unauthorized", message, bad[: self.settings.max_errors], n_errors=len(bad)
            )

    def _feedback_items(self, payload: Any) -> tuple[list[FeedbackNote], bool]:
        single = isinstance(payload, dict)
        items = [payload] if single else payload
        expected = 'an object {"request_id": "...", "outcome": ...} or a list of them'
        if not isinstance(items, list) or not items:
            raise RequestError(
                422, "validation_error", "invalid feedback body", [{"field": "body", "expected": expected}]
            )
        limit = self.settings.max_rows_per_request
        if len(items) > limit:
            raise RequestError(
                422,
                "validation_error",
                f"too many feedback items ({len(items)})",
                [{"field": "body", "received": len(items), "expected": f"at most {limit} items"}],
            )
        out: list[FeedbackNote] = []
        errors: list[dict[str, Any]] = []
        for i, item in enumerate(items):
            where = "" if single else f"[{i}]."
            if not isinstance(item, dict):
                errors.append({"field": where.rstrip(".") or "body", "received": None, "expected": expected})
                continue
            rid = item.get("request_id")
            if not isinstance(rid, str) or not rid:
                errors.append(
                    {"field": f"{where}request_id", "received": rid, "expected": "a request id string"}
                )
                rid = ""  # never returned: the errors raise below
            correct = item.get("correct", False)
            if not isinstance(correct, bool):
                errors.append(
                    {
                        "field": f"{where}correct",
                        "received": correct,
                        "expected": "true to replace a stored outcome (kept in the audit table), or false",
                    }
                )
            if "outcome" not in item:
                errors.append(
                    {"field": f"{where}outcome", "received": None, "expected": self._outcome_expected()}
                )
                continue
            outcome, problem = self._outcome(item["outcome"])
            if problem:
                errors.append({"field": f"{where}outcome", "received": item["outcome"], "expected": problem})
            out.append(FeedbackNote(rid, outcome, correct is True, item.get("signature")))
        if errors:
            message = f"{len(errors)} invalid field{'s' * (len(errors) != 1)} in the feedback"
            raise RequestError(
                422, "validation_error", message, errors[: self.settings.max_errors], n_errors=len(errors)
            )
        return out, single

    def _outcome_expected(self) -> str:
        if self.model.task == "regression":
            return "a number"
        return "one of the model's classes: " + ", ".join(map(repr, self._classes))

    def _outcome(self, value: Any) -> tuple[Any, str | None]:
        """The outcome as the model's class value (so ``1`` and ``true`` store alike) or a problem."""
        if self.model.task == "regression":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, "a number"
            # np.isfinite raises on ints beyond 2**64: the same bound as request numbers
            ok = abs(value) <= MAX_ABS_NUMBER and (isinstance(value, int) or math.isfinite(value))
            return (
                (value, None) if ok else (None, f"a number in [-{MAX_ABS_NUMBER:.0e}, {MAX_ABS_NUMBER:.0e}]")
            )
        if isinstance(value, (list, dict)) or value is None:
            return None, self._outcome_expected()
        for c in self._classes:
            if value == c and (isinstance(value, str) == isinstance(c, str)):
                return c, None
        return None, self._outcome_expected()


def _event_times(checked: CheckedRows) -> np.ndarray | None:
    """The rows' event times as the validator parsed them (a value that does not parse is a 422),
    as UTC ``datetime64[us]`` (NaT: none); None when the design names no time column."""
    stamps = checked.event_time
    if stamps is None or not len(stamps):
        return None
    index = pd.DatetimeIndex(stamps)
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    return index.to_numpy("datetime64[us]")


def _started(request: Request) -> tuple[float, datetime]:
    """When the request reached the server (set by the app's middleware; now when it is not there)."""
    state = request.scope.get("state", {})
    return state.get("mlsd_start", time.perf_counter()), state.get("mlsd_received", datetime.now(UTC))
