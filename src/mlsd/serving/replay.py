"""Send held-out rows through a running server, in time order, as live traffic would arrive.

:func:`replay` posts each row to ``/v1/predict`` (``concurrency`` requests in flight at most, at
``rate`` rows per second at most), optionally posts the rows' true labels to ``/v1/feedback``
once their predictions came back (in lists of ``feedback_batch``, as labels arriving in bulk
would), and measures what a client sees: throughput and latency percentiles of the predictions.
Rows are sent in the order given (the caller sorts them by time); with more than one request in
flight, responses may complete out of order, as they would in production.

Event time: the rows should carry the design's ``data.time`` column even when no feature reads
it (``System.replay_rows`` adds it): the server ignores fields the model does not read, except
that one, which it logs as the prediction's event time. Without it ``mlsd monitor`` can only
window the rows by the minutes the replay took, and says so.

A request that never gets an answer (connection refused, reset, timeout) is counted as failed
with status 0, and the replay goes on: a replay against a server that dies midway finishes and
says how many rows were acknowledged -- :attr:`ReplayResult.acknowledged` keeps their request
ids, so a caller can check that each one reached the log.

>>> import pandas as pd
>>> when = pd.to_datetime(["2013-11-01", "2013-11-02"], utc=True)
>>> for record in json_records(pd.DataFrame({"distance": [100.0, None], "time_hour": when})):
...     print(record)
{'distance': 100.0, 'time_hour': '2013-11-01T00:00:00.000Z'}
{'distance': None, 'time_hour': '2013-11-02T00:00:00.000Z'}
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlsd.errors import DataError

__all__ = ["ReplayResult", "json_records", "post_outcomes", "replay", "replay_async"]


def json_records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: NaN/NaT become null, datetimes ISO strings (one vectorised encode)."""
    return json.loads(rows.to_json(orient="records", date_format="iso", date_unit="ms"))


@dataclass
class ReplayResult:
    """What the client saw: counts by status, wall time and latency percentiles (milliseconds)."""

    sent: int
    ok: int
    statuses: dict[str, int]
    feedback_sent: int
    feedback_ok: int
    seconds: float
    latencies_ms: np.ndarray = field(repr=False)
    acknowledged: list[str] = field(default_factory=list, repr=False)
    errors: list[str] = field(default_factory=list, repr=False)
    # row i's request id (None where it got no answer), for outcomes posted later (mlsd simulate)
    request_ids: list[str | None] = field(default_factory=list, repr=False)

    @property
    def throughput_rps(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.sent - self.ok,
            "statuses": dict(self.statuses),
            "feedback_sent": self.feedback_sent,
            "feedback_ok": self.feedback_ok,
            "seconds": round(self.seconds, 3),
            "throughput_rps": round(self.throughput_rps, 1),
            "latency_ms": {
                f"p{q}": None if (v := self.percentile(q)) is None else round(v, 3) for q in (50, 90, 99)
            },
            "errors": self.errors[:10],
        }


async def replay_async(
    base_url: str,
    rows: pd.DataFrame,
    *,
    labels: Sequence[Any] | None = None,
    concurrency: int = 8,
    rate: float | None = None,
    timeout: float = 30.0,
    feedback_batch: int = 100,
    feedback_token: str | None = None,
    on_done: Callable[[int], None] | None = None,
) -> ReplayResult:
    """Replay ``rows`` (one request per row) against the server at ``base_url``.

    Feedback is authenticated as the server asks: ``feedback_token`` is sent as a bearer token
    (``feedback_auth: token``), and a ``signature`` in a prediction answer is echoed with its
    outcome (``feedback_auth: signed_id``).
    """
    import httpx

    if concurrency < 1:
        raise DataError(
            "concurrency must be at least 1",
            field="concurrency",
            received=concurrency,
            expected="an integer >= 1",
        )
    if rate is not None and rate <= 0:
        raise DataError("rate must be positive", field="rate", received=rate, expected="rows per second > 0")
    if labels is not None and len(labels) != len(rows):
        raise DataError(
            "one label per row is needed for feedback",
            field="labels",
            received=len(labels),
            expected=f"{len(rows)} labels",
        )
    records = json_records(rows)
    outcomes = json.loads(json.dumps(list(labels), default=_plain)) if labels is not None else None
    n = len(records)
    latencies = np.full(n, np.nan)
    statuses: Counter[str] = Counter()
    acknowledged: list[str] = []
    by_row: list[str | None] = [None] * n
    errors: list[str] = []
    feedback = Counter[str]()
    labelled: list[dict[str, Any]] = []  # answered rows whose outcome is not posted yet
    next_index = 0
    start = time.perf_counter()

    auth = {"Authorization": f"Bearer {feedback_token}"} if feedback_token else {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as client:

        async def worker() -> None:
            nonlocal next_index
            while next_index < n:
                i = next_index
                next_index += 1
                if rate is not None:
                    # a schedule, not a sleep per request: a slow response does not lower the rate
                    delay = start + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                sent_at = time.perf_counter()
                try:
                    response = await client.post("/v1/predict", json={"inputs": records[i]})
                except httpx.HTTPError as exc:
                    statuses["0"] += 1
                    _keep(errors, f"row {i}: {type(exc).__name__}: {exc}")
                else:
                    latencies[i] = (time.perf_counter() - sent_at) * 1000
                    statuses[str(response.status_code)] += 1
                    if response.status_code == 200:
                        answer = response.json()["predictions"][0]
                        request_id = answer["request_id"]
                        acknowledged.append(request_id)
                        by_row[i] = request_id
                        if outcomes is not None:
                            item = {"request_id": request_id, "outcome": outcomes[i]}
                            if "signature" in answer:
                                item["signature"] = answer["signature"]
                            labelled.append(item)
                            if len(labelled) >= feedback_batch:
                                batch, labelled[:] = labelled[:], []
                                await _feedback(client, batch, feedback, errors, auth)
                    else:
                        _keep(errors, f"row {i}: {response.status_code} {response.text[:300]}")
                if on_done is not None:
                    on_done(1)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, max(n, 1)))))
        if labelled:
            await _feedback(client, labelled, feedback, errors, auth)
    return ReplayResult(
        sent=n,
        ok=statuses.get("200", 0),
        statuses=dict(sorted(statuses.items())),
        feedback_sent=feedback["sent"],
        feedback_ok=feedback["ok"],
        seconds=time.perf_counter() - start,
        latencies_ms=latencies[~np.isnan(latencies)],
        acknowledged=acknowledged,
        errors=errors,
        request_ids=by_row,
    )


def replay(base_url: str, rows: pd.DataFrame, **kwargs: Any) -> ReplayResult:
    """Synchronous :func:`replay_async` (runs its own event loop)."""
    return asyncio.run(replay_async(base_url, rows, **kwargs))


def post_outcomes(
    base_url: str,
    request_ids: Sequence[str],
    outcomes: Sequence[Any],
    *,
    batch: int = 500,
    feedback_token: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, list[str]]:
    """Post outcomes that arrive after their predictions (``/v1/feedback`` in lists of ``batch``):
    the number the server recorded, and the first errors."""

    async def run() -> tuple[int, list[str]]:
        import httpx

        counts: Counter[str] = Counter()
        errors: list[str] = []
        plain = json.loads(json.dumps(list(outcomes), default=_plain))
        items = [{"request_id": r, "outcome": o} for r, o in zip(request_ids, plain, strict=True)]
        auth = {"Authorization": f"Bearer {feedback_token}"} if feedback_token else {}
        async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
            for start in range(0, len(items), batch):
                await _feedback(client, items[start : start + batch], counts, errors, auth)
        return counts["ok"], errors

    return asyncio.run(run())


async def _feedback(
    client: Any,
    batch: list[dict[str, Any]],
    counts: Counter[str],
    errors: list[str],
    headers: dict[str, str],
) -> None:
    """Post a list of outcomes; the server records the valid ones even when others fail."""
    import httpx

    counts["sent"] += len(batch)
    try:
        response = await client.post("/v1/feedback", json=batch, headers=headers)
    except httpx.HTTPError as exc:
        _keep(errors, f"feedback for {len(batch)} rows: {type(exc).__name__}: {exc}")
        return
    if response.status_code == 200:
        counts["ok"] += len(batch)
        return
    failed = (
        response.json().get("error", {}).get("errors", []) if response.status_code in (404, 409) else batch
    )
    counts["ok"] += len(batch) - len(failed)
    _keep(errors, f"feedback for {len(batch)} rows: {response.status_code} {response.text[:300]}")


def _keep(errors: list[str], message: str, limit: int = 50) -> None:
    if len(errors) < limit:
        errors.append(message)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    raise TypeError(f"cannot send {type(value).__name__} as a label")
