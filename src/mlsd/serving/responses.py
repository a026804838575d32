"""The one error schema every failed response uses, and the exception that carries it.

Every error body is ``{"error": {"type", "message", "errors": [...], "n_errors"}}``; each entry
of ``errors`` names a ``field`` (``inputs[3].distance``), what was ``received`` and what is
``expected``. :class:`RequestError` carries a status code and such a body through the app.

>>> err = RequestError(422, "validation_error", "1 invalid field",
...                    [{"field": "inputs.distance", "received": "abc", "expected": "a number"}])
>>> err.body()["error"]["errors"][0]["field"], err.status_code
('inputs.distance', 422)
>>> error_body("not_found", "no such route")
{'error': {'type': 'not_found', 'message': 'no such route', 'errors': [], 'n_errors': 0}}
>>> from mlsd.errors import ModelError, NotFoundError
>>> status_for(NotFoundError("unknown request id")), status_for(ModelError("boom"))
(404, 500)
>>> from mlsd.errors import LogError
>>> status_for(LogError("database or disk is full"))
503
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.responses import JSONResponse

from mlsd.errors import (
    ConflictError,
    DataError,
    DesignError,
    LogError,
    MlsdError,
    NotFoundError,
    SchemaError,
    ServingError,
)

__all__ = [
    "RequestError",
    "error_body",
    "error_response",
    "log_unavailable_response",
    "mlsd_error_response",
    "status_for",
]

_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "service_unavailable",
}


class _ErrorJSON(JSONResponse):
    """JSON that a received value cannot break: a lone surrogate echoed back is written as ``?``."""

    def render(self, content: Any) -> bytes:
        text = json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return text.encode("utf-8", "replace")


class RequestError(ServingError):
    """A request the server refuses, with its HTTP status and the error-schema entries."""

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        errors: Sequence[dict[str, Any]] = (),
        *,
        n_errors: int | None = None,
    ) -> None:
        first = errors[0] if errors else {}
        super().__init__(
            message, field=first.get("field"), received=first.get("received"), expected=first.get("expected")
        )
        self.status_code = status_code
        self.error_type = error_type
        self.errors = list(errors)
        self.n_errors = len(self.errors) if n_errors is None else n_errors

    def body(self) -> dict[str, Any]:
        return error_body(self.error_type, self.message, self.errors, self.n_errors)

    def response(self) -> JSONResponse:
        # RFC 9110: a 401 names the scheme it wants
        headers = {"WWW-Authenticate": "Bearer"} if self.status_code == 401 else None
        return _ErrorJSON(self.body(), status_code=self.status_code, headers=headers)


def error_body(
    error_type: str, message: str, errors: Sequence[dict[str, Any]] = (), n_errors: int | None = None
) -> dict[str, Any]:
    """The JSON body of every error response."""
    return {
        "error": {
            "type": error_type,
            "message": message,
            "errors": list(errors),
            "n_errors": len(errors) if n_errors is None else n_errors,
        }
    }


def error_response(status_code: int, message: str, error_type: str | None = None) -> JSONResponse:
    kind = error_type or _STATUS_TYPES.get(
        status_code, "http_error" if status_code < 500 else "internal_error"
    )
    return _ErrorJSON(error_body(kind, message), status_code=status_code)


def status_for(exc: MlsdError) -> int:
    """HTTP status of an mlsd error: 404 / 409 / 422 for the caller's mistakes, 503 when the log
    cannot commit (retry later), 500 for ours."""
    if isinstance(exc, RequestError):
        return exc.status_code
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, LogError):
        return 503
    if isinstance(exc, SchemaError):
        return 422
    if isinstance(exc, (DesignError, DataError)):
        return 400
    return 500


def mlsd_error_response(exc: MlsdError) -> JSONResponse:
    """An :class:`~mlsd.errors.MlsdError` in the error schema (its field, received and expected)."""
    if isinstance(exc, RequestError):
        return exc.response()
    status = status_for(exc)
    entry = {"field": exc.field, "received": _jsonable(exc.received), "expected": exc.expected}
    errors = [entry] if exc.field else []
    kind = _STATUS_TYPES.get(status, "internal_error")
    return _ErrorJSON(error_body(kind, exc.message, errors), status_code=status)


def log_unavailable_response(
    reason: str | None = None, retry_after_s: int = 1, *, partial: bool = False
) -> JSONResponse:
    """503 with ``Retry-After``: the log could not commit, so nothing (or, for a list of feedback
    items committed in several transactions, not everything: ``partial``) was recorded.

    ``reason`` is a fixed phrase (``the disk is full``), never the driver's text, a path or a URL.
    One second, because the writer tries again with every batch: space that comes back is used
    by the next request.

    >>> r = log_unavailable_response("the disk is full")
    >>> r.status_code, r.headers["retry-after"]
    (503, '1')
    """
    message = (
        "the prediction log cannot commit right now, so some items may not be recorded; retrying "
        "the same items is safe (recorded ones answer unchanged)"
        if partial
        else "the prediction log cannot commit right now, so nothing was recorded; retry later"
    )
    body = error_body("log_unavailable", message + (f" ({reason})" if reason else ""))
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry_after_s)})


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value[:20]]
    return repr(value)[:200]
