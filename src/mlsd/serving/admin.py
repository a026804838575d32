"""The admin API of a rollout: its state, the traffic split, promotion and rollback.

Every route needs ``Authorization: Bearer <token>`` where the token is the environment
variable ``deployment.admin_token_env`` (``MLSD_ADMIN_TOKEN``), compared in constant time
(one FastAPI dependency, :func:`admin_token_check`, that every admin route runs first).
Without a configured token the routes answer 403 "admin API disabled"; a missing or wrong one
gets 401. Every action that changes something is an event in the prediction log
(``rollout_events``) with its time, actor ``admin`` and outcome, refused ones included.

- ``GET /v1/admin/state``: strategy, variants (alias, version, weight, requests served), the
  canary step, the bandit's arm statistics and probabilities, and the sample-ratio-mismatch
  p-value of the served split against the intended weights;
- ``POST /v1/admin/traffic`` ``{"weights": {"champion": 90, "challenger": 10}}`` (ab);
- ``POST /v1/admin/promote`` ``{"variant": "challenger"}``: the registry's champion alias
  moves to that variant's version (every replica reloads it at its next refresh);
- ``POST /v1/admin/rollback``: a running canary is stopped (all traffic to the champion);
  otherwise the registry's champion goes back to the previous one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import Depends
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from mlsd.errors import MlsdError
from mlsd.rollout.canary import CanaryDecision, next_state
from mlsd.rollout.srm import sample_ratio_mismatch
from mlsd.serving.bodies import parse_json
from mlsd.serving.responses import RequestError, error_response
from mlsd.serving.security import bearer_matches, unauthorized

if TYPE_CHECKING:
    from fastapi import FastAPI

    from mlsd.serving._service import Service
    from mlsd.serving.settings import ServeSettings

__all__ = ["ADMIN_ROUTES", "admin_token_check", "install_admin_routes", "state_view"]

ADMIN_ROUTES = ("/v1/admin/state", "/v1/admin/traffic", "/v1/admin/promote", "/v1/admin/rollback")
_MAX_ADMIN_BODY = 16_384


def admin_token_check(settings: ServeSettings) -> Callable[[Request], Awaitable[None]]:
    """The FastAPI dependency every admin route runs first: :class:`RequestError` 403 "admin API
    disabled" without a configured token (``settings.admin_token``, read at each request), 401
    for a missing or wrong one (compared in constant time by :func:`bearer_matches`). The app's
    error handler answers it in the error schema, before the route reads anything."""

    async def require_admin_token(request: Request) -> None:
        token = settings.admin_token
        if not token:
            message = f"admin API disabled: set {_token_env(request)} to enable it"
            raise RequestError(403, "forbidden", message)
        if not bearer_matches(request, token):
            raise unauthorized("the admin token is missing or wrong", expected="Bearer <the admin token>")

    return require_admin_token


def _token_env(request: Request) -> str:
    return getattr(request.app.state, "admin_token_env", "MLSD_ADMIN_TOKEN")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def state_view(service: Service) -> dict[str, Any]:
    """What ``GET /v1/admin/state`` answers (also used by the tests)."""
    routing = service.routing
    state = routing.state
    since = datetime.fromisoformat(state.step_started_at) if state.step_started_at else None
    # counted in SQL: the step may hold millions of rows, the answer a handful of variants
    counted = routing.log.variant_counts(since=since)
    counts = {str(k): int(n) for k, n in zip(counted["variant"], counted["requests"], strict=True) if n}
    answered = {str(k): int(n) for k, n in zip(counted["variant"], counted["answered"], strict=True)}
    weights = routing.weights()
    variants = [
        {
            "alias": alias,
            "version": routing.variants[alias].version,
            "weight": weights.get(alias, 0.0),
            "requests": counts.get(alias, 0),
            "answered": answered.get(alias, 0),
            "circuit": routing.breakers[alias].state if alias in routing.breakers else None,
        }
        for alias in routing.router.variants
    ]
    body: dict[str, Any] = {
        "strategy": routing.spec.strategy,
        "revision": routing.revision,
        "state": state.to_dict(),
        "canary_step": state.canary_step if routing.spec.strategy == "canary" else None,
        "rolled_back": state.rolled_back,
        "complete": state.complete,
        "variants": variants,
        "counted_since": state.step_started_at,
        "srm_p_value": None
        if routing.spec.strategy == "bandit"  # a bandit's split moves with its rewards: no fixed target
        else _finite(sample_ratio_mismatch(counts, weights)),
        "refresh_problem": routing.last_refresh_problem,
    }
    if routing.spec.strategy == "bandit":
        body["arms"] = {
            a: {k: _finite(v) for k, v in dataclasses.asdict(s).items()} | {"mean": _finite(s.mean)}
            for a, s in routing.arms.items()
        }
    return body


def install_admin_routes(app: FastAPI, service: Service) -> None:
    """Add the admin routes to ``app`` (served by ``service``)."""
    # every admin route checks the token first, in one dependency
    meta: dict[str, Any] = {"tags": ["admin"], "dependencies": [Depends(admin_token_check(service.settings))]}

    async def _body(request: Request) -> Any:
        from mlsd.serving._service import read_body

        return parse_json(await read_body(request, _MAX_ADMIN_BODY))

    async def _event(kind: str, reason: str, outcome: str, details: dict[str, Any] | None = None) -> None:
        await asyncio.to_thread(
            service.routing.log.add_event,
            kind,
            reason=reason,
            actor="admin",
            outcome=outcome,
            details=details,
        )

    async def _changed_meanwhile(kind: str) -> Response:
        """409 for a compare-and-set another replica won (the event says so)."""
        await _event(kind, "another writer changed the state first", "conflict")
        return error_response(409, "the rollout state changed meanwhile; read it and try again", "conflict")

    @app.get("/v1/admin/state", summary="The rollout's state (admin token)", **meta)
    async def admin_state(request: Request) -> Response:
        return JSONResponse(await asyncio.to_thread(state_view, service))

    @app.post("/v1/admin/traffic", summary="Set the ab split (admin token)", **meta)
    async def admin_traffic(request: Request) -> Response:
        routing = service.routing
        try:
            payload = await _body(request)
            weights = _weights(payload, routing.router.variants)
            if routing.spec.strategy != "ab":
                raise RequestError(
                    409,
                    "conflict",
                    f"traffic weights are set only under an ab rollout, not {routing.spec.strategy}",
                    [{"field": "deployment.strategy", "received": routing.spec.strategy, "expected": "ab"}],
                )
        except RequestError as exc:
            await _event("traffic", exc.message, "refused")
            return exc.response()
        new = dataclasses.replace(routing.state, weights=weights)
        ok = await asyncio.to_thread(
            routing.write_state, new, kind="traffic", reason=f"weights set to {weights}", actor="admin"
        )
        if not ok:
            return await _changed_meanwhile("traffic")
        return JSONResponse(await asyncio.to_thread(state_view, service))

    @app.post("/v1/admin/promote", summary="Make a variant's version the champion (admin token)", **meta)
    async def admin_promote(request: Request) -> Response:
        routing = service.routing
        try:
            payload = await _body(request)
            alias = payload.get("variant") if isinstance(payload, dict) else None
            if not isinstance(alias, str) or alias not in routing.variants or alias == "champion":
                choices = [a for a in routing.variants if a != "champion"]
                raise RequestError(
                    422,
                    "validation_error",
                    "unknown variant to promote",
                    [{"field": "variant", "received": alias, "expected": f"one of {choices}"}],
                )
            if routing.promote is None:
                raise RequestError(409, "conflict", "this server has no registry to promote in")
            old, new = await asyncio.to_thread(routing.promote, alias)
        except RequestError as exc:
            await _event("promote", exc.message, "refused")
            return exc.response()
        except MlsdError as exc:
            await _event("promote", exc.message, "failed")
            return error_response(409, exc.message, "conflict")
        await _event(
            "promote",
            f"{alias} (version {new}) is the champion; was version {old}",
            "ok",
            {"variant": alias, "from": old, "to": new},
        )
        await asyncio.to_thread(routing.refresh)  # this replica answers with the new champion at once
        return JSONResponse({"promoted": alias, "from": old, "to": new})

    @app.post("/v1/admin/rollback", summary="Stop the canary, or restore the previous champion", **meta)
    async def admin_rollback(request: Request) -> Response:
        routing = service.routing
        state = routing.state
        if routing.spec.strategy == "canary" and not state.rolled_back:
            decision = CanaryDecision("rollback", "rolled back by the admin API", {})
            new = next_state(routing.spec, state, decision, datetime.now(UTC))
            ok = await asyncio.to_thread(
                routing.write_state, new, kind="rollback", reason=decision.reason, actor="admin"
            )
            if not ok:
                return await _changed_meanwhile("rollback")
            return JSONResponse({"rolled_back": "canary", "weights": new.weights})
        if routing.rollback is None:
            return error_response(409, "this server has no registry to roll back", "conflict")
        try:
            old, new_version = await asyncio.to_thread(routing.rollback)
        except MlsdError as exc:
            await _event("rollback", exc.message, "failed")
            return error_response(409, exc.message, "conflict")
        await _event(
            "rollback",
            f"champion back from version {old} to {new_version}",
            "ok",
            {"from": old, "to": new_version},
        )
        await asyncio.to_thread(routing.refresh)
        return JSONResponse({"rolled_back": "champion", "from": old, "to": new_version})


def _weights(payload: Any, aliases: list[str]) -> dict[str, float]:
    expected = f'{{"weights": {{alias: number >= 0}}}} over {aliases}, with a positive total'
    weights = payload.get("weights") if isinstance(payload, dict) else None
    if not isinstance(weights, dict) or not weights:
        raise RequestError(
            422,
            "validation_error",
            "invalid traffic body",
            [{"field": "weights", "received": weights, "expected": expected}],
        )
    errors = []
    for alias, value in weights.items():
        if alias not in aliases:
            errors.append({"field": f"weights.{alias}", "received": alias, "expected": f"one of {aliases}"})
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 <= value <= 1e6):
            errors.append(
                {"field": f"weights.{alias}", "received": value, "expected": "a number in [0, 1e6]"}
            )
    if not errors and sum(weights.values()) <= 0:
        errors.append({"field": "weights", "received": weights, "expected": "a positive total weight"})
    if errors:
        raise RequestError(422, "validation_error", f"{len(errors)} invalid traffic weights", errors)
    return {a: float(weights.get(a, 0.0)) for a in aliases}
