"""What a request must show before the app reads it: its Host, its Origin, its content type, its token.

A web page open in a browser on the serving machine can send requests to ``127.0.0.1``; the
browser adds an ``Origin`` header and, for a form or ``text/plain`` post, no preflight. So the
server refuses (in the one error schema) a Host it does not serve (DNS rebinding), an Origin that
is neither the server itself nor one of ``deployment.cors_origins`` on a POST, and a JSON route's
body of any other content type (415). Tokens and signatures are compared in constant time.

>>> sig = sign_request_id("k" * 16, "r-1")
>>> len(sig), verify_request_id("k" * 16, "r-1", sig), verify_request_id("k" * 16, "r-2", sig)
(64, True, False)
>>> host_name("[::1]:8000"), host_name("Example.COM:80"), host_name("localhost")
('::1', 'example.com', 'localhost')
>>> host_allowed("api.example.com", ("*.example.com",)), host_allowed("example.org", ("localhost",))
(True, False)
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from mlsd.serving.responses import RequestError, error_body

__all__ = [
    "RequestGuard",
    "bearer_matches",
    "host_allowed",
    "host_name",
    "sign_request_id",
    "unauthorized",
    "verify_request_id",
]

_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_JSON = "application/json"


def sign_request_id(secret: str, request_id: str) -> str:
    """HMAC-SHA256 of a request id, hex: what a prediction answer carries under ``signature``."""
    return hmac.new(secret.encode(), request_id.encode(), hashlib.sha256).hexdigest()


def verify_request_id(secret: str, request_id: str, signature: Any) -> bool:
    if not isinstance(signature, str):
        return False
    return hmac.compare_digest(
        sign_request_id(secret, request_id).encode(), signature.encode("utf-8", "replace")
    )


def bearer_matches(request: Request, token: str | None) -> bool:
    """True when ``Authorization: Bearer <token>`` carries ``token`` (never true without a token)."""
    if not token:
        return False
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode())


def unauthorized(
    message: str, field: str = "Authorization", expected: str = "Bearer <token>"
) -> RequestError:
    return RequestError(
        401, "unauthorized", message, [{"field": field, "received": None, "expected": expected}]
    )


def host_name(value: str) -> str:
    """The name of a Host header, without its port, lower case (IPv6 without brackets)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    if value.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        return value.partition(":")[0]
    return value


def host_allowed(name: str, allowed: Iterable[str]) -> bool:
    for pattern in allowed:
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


class RequestGuard:
    """ASGI middleware: too many headers (431), too long a request line (414), a POST to a JSON
    route not declared ``application/json`` (415), a Host not allowed (400), a foreign Origin on
    a POST (403), in that order. The header bytes themselves are bounded earlier, by
    the HTTP parser (:mod:`mlsd.serving.server`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        allowed_hosts: tuple[str, ...] | None,
        cors_origins: tuple[str, ...],
        max_header_count: int,
        max_request_line_bytes: int,
        json_routes: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.json_routes = frozenset(json_routes)
        self.allowed_hosts = None if allowed_hosts is None else tuple(h.lower() for h in allowed_hosts)
        self.cors_origins = frozenset(o.lower() for o in cors_origins)
        self.max_header_count = max_header_count
        self.max_request_line_bytes = max_request_line_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, kind, message, entry = refusal
        await JSONResponse(error_body(kind, message, [entry]), status_code=status)(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str, dict[str, Any]] | None:
        raw = scope.get("headers", [])
        if len(raw) > self.max_header_count:
            return (
                431,
                "request_header_fields_too_large",
                f"{len(raw)} request headers; at most {self.max_header_count} are accepted",
                {
                    "field": "headers",
                    "received": len(raw),
                    "expected": f"at most {self.max_header_count} headers",
                },
            )
        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        line = len(scope.get("method", "")) + target + len("  HTTP/1.1")
        if line > self.max_request_line_bytes:
            return (
                414,
                "uri_too_long",
                f"the request line is {line} bytes; at most {self.max_request_line_bytes} are accepted",
                {
                    "field": "path",
                    "received": line,
                    "expected": f"at most {self.max_request_line_bytes} bytes",
                },
            )
        headers = Headers(scope=scope)
        if scope.get("method") == "POST" and scope.get("path") in self.json_routes:
            # before the Origin: a browser's cross-origin form or text/plain post is a 415
            declared = headers.get("content-type")
            if (declared or "").split(";", 1)[0].strip().lower() != _JSON:
                return (
                    415,
                    "unsupported_media_type",
                    "the body must be JSON, sent with Content-Type: application/json",
                    {"field": "Content-Type", "received": declared, "expected": _JSON},
                )
        host = headers.get("host")
        if self.allowed_hosts is not None and (
            host is None or not host_allowed(host_name(host), self.allowed_hosts)
        ):
            return (
                400,
                "bad_request",
                "this server does not answer for this Host",
                # not the list itself: it would tell a DNS-rebinding page the internal names
                {
                    "field": "Host",
                    "received": host,
                    "expected": "a Host this server answers for (deployment.allowed_hosts)",
                },
            )
        origin = headers.get("origin")
        if origin is not None and scope.get("method") in _UNSAFE and not self._origin_allowed(origin, host):
            return (
                403,
                "forbidden",
                "cross-origin requests are refused (deployment.cors_origins names the allowed origins)",
                {
                    "field": "Origin",
                    "received": origin,
                    "expected": "this server's own origin or a cors_origins entry",
                },
            )
        return None

    def _origin_allowed(self, origin: str, host: str | None) -> bool:
        origin = origin.strip().lower()
        if origin in self.cors_origins:
            return True
        scheme, sep, netloc = origin.partition("://")
        # same origin: the page was served by this server (e.g. /docs' "Try it out")
        return (
            bool(sep) and scheme in ("http", "https") and host is not None and netloc == host.strip().lower()
        )
