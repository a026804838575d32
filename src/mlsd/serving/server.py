"""uvicorn with bounded connections, on a socket bound before anything says it is serving.

The server parses HTTP with httptools (llhttp, in C: a third of the CPU h11's pure-Python parser
took per request under load), but neither uvicorn parser limits the size of the request headers,
and none closes a connection that sends its headers or its body too slowly
(``timeout_keep_alive`` only runs *between* requests). So the protocol subclass adds:

- a header bound: the bytes received before the request line and headers are complete are
  counted, and past ``max_header_bytes`` the request is answered 431 and the connection closed
  (the parser never holds more than that plus one read); a head that completes in one read is
  measured exactly, so its size alone decides;
- a read deadline: from the connection's start (or the end of the last response) the request
  line and headers must arrive within ``read_timeout_s``, and then the body within another
  ``read_timeout_s``; a client that trickles bytes (slowloris) or stalls is answered 408 when it
  sent part of a request, and closed;
- a connection cap: past ``max_concurrent_connections`` open connections a new one is answered
  503 and closed at once (uvicorn's ``limit_concurrency`` only answers once a request is parsed).

>>> sock = bind_socket("127.0.0.1", 0)
>>> bind_socket("127.0.0.1", sock.getsockname()[1])  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
mlsd.errors.ServingError: port: port ... on 127.0.0.1 is already in use (received ...; expected a free port: \
stop the other server or pass --port)
>>> sock.close()
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from mlsd.errors import ServingError
from mlsd.serving.responses import error_body
from mlsd.serving.settings import ServeSettings

__all__ = ["bind_socket", "bounded_protocol", "serve", "serving_info", "uvicorn_config"]

_HEAD, _BODY = "head", "body"  # the phases in which the server waits for the client's bytes


def _raw_response(status: int, reason: str, kind: str, message: str) -> bytes:
    body = json.dumps(error_body(kind, message)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class _HeadTooLarge(Exception):
    """Raised in the parser's callback for a head past the bound: the parser stops there."""


class _BoundedHttpToolsProtocol(HttpToolsProtocol):
    """httptools plus a header bound, a read deadline per request phase and a cap on open
    connections (see the module)."""

    read_timeout_s: float = 10.0
    max_connections: int = 1000
    max_header_bytes: int = 16_384

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: str | None = None
        self._head_bytes = 0  # received while the current head is incomplete
        self._head_done = False
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.transport.write(
                _raw_response(503, "Service Unavailable", "service_unavailable", "too many open connections")
            )
            self.transport.close()
            return
        self._enter(_HEAD)

    def data_received(self, data: bytes) -> None:
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if not self._head_done:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()  # no websocket route: the request is not served
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):
                self._refuse_head()
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("invalid HTTP request")
            return
        if not self._head_done and self._head_bytes > self.max_header_bytes:
            self._refuse_head()

    def on_headers_complete(self) -> None:
        head = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) + 32
        if head > self.max_header_bytes:  # the whole head came in one read: its own size decides
            raise _HeadTooLarge
        self._head_done = True
        super().on_headers_complete()
        self._enter(_BODY)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._enter(None)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._head_bytes, self._head_done = 0, False
        self._enter(_HEAD)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to what the parser refuses, in the error schema."""
        self.transport.write(_raw_response(400, "Bad Request", "bad_request", "invalid HTTP request"))
        self.transport.close()
        self._cancel()

    def _refuse_head(self) -> None:
        self.transport.write(
            _raw_response(
                431,
                "Request Header Fields Too Large",
                "request_header_fields_too_large",
                f"the request line and headers are larger than {self.max_header_bytes} bytes",
            )
        )
        self.transport.close()
        self._cancel()

    def _cancel(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _enter(self, phase: str | None) -> None:
        """Arm one deadline per phase (headers, then body); a phase's deadline is not moved by the
        bytes that arrive in it, so trickling bytes does not keep a connection open."""
        if self.transport.is_closing():
            self._cancel()
            return
        if phase == self._phase:
            return
        self._cancel()
        self._phase = phase
        if phase is not None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._timed_out)

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self._phase == _HEAD and self._head_bytes:  # no response started: the client may learn why
            message = f"the request headers did not arrive within {self.read_timeout_s:g} s"
            self.transport.write(_raw_response(408, "Request Timeout", "request_timeout", message))
        self.logger.info("closing a connection that did not send its request in time")
        self.transport.close()


def bounded_protocol(settings: ServeSettings) -> type[HttpToolsProtocol]:
    """The protocol class for ``settings`` (uvicorn instantiates it per connection)."""
    return type(
        "BoundedHttpToolsProtocol",
        (_BoundedHttpToolsProtocol,),
        {
            "read_timeout_s": float(settings.read_timeout_s),
            "max_connections": int(settings.max_concurrent_connections),
            "max_header_bytes": int(settings.max_header_bytes),
        },
    )


def uvicorn_config(app: Any, settings: ServeSettings, *, log_level: str = "warning") -> uvicorn.Config:
    """uvicorn's config with every connection limit of ``settings``."""
    return uvicorn.Config(
        app,
        host=settings.host,
        http=bounded_protocol(settings),
        # no uvicorn cap: the protocol already refuses connections past the limit with the error
        # schema, and uvicorn's (>= where ours is >) would answer a plain-text 503 one earlier
        limit_concurrency=None,
        timeout_keep_alive=settings.keep_alive_timeout_s,
        log_level=log_level,
        access_log=False,
        server_header=False,  # no version banner for scanners
        lifespan="on",
    )


def bind_socket(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A listening TCP socket on ``host:port``, or a :class:`ServingError` that says why not.

    ``reuse_port`` (SO_REUSEPORT) lets the workers of one ``mlsd serve --workers N`` each bind
    the port (:mod:`mlsd.serving.workers`); ``listen=False`` only holds the port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServingError(
            f"cannot resolve the host to bind ({exc.strerror})",
            field="host",
            received=host,
            expected="an address of this machine, e.g. 127.0.0.1",
        ) from exc
    # IPv4 first, as uvicorn binds a name: `localhost` then answers on 127.0.0.1, which the
    # CLI prints and clients use, even where the resolver lists ::1 first
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: restarts reuse TIME_WAIT ports
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(address)
        if listen:
            sock.listen(2048)  # listening holds the port: a second server cannot bind it meanwhile
    except OSError as exc:
        sock.close()
        raise _bind_error(host, port, exc) from exc
    return sock  # not inheritable: the server runs in this process, children must not hold the port


def _bind_error(host: str, port: int, exc: OSError) -> ServingError:
    if exc.errno == errno.EADDRINUSE:
        return ServingError(
            f"port {port} on {host} is already in use",
            field="port",
            received=port,
            expected="a free port: stop the other server or pass --port",
        )
    if exc.errno == errno.EACCES:
        return ServingError(
            f"no permission to bind port {port} on {host}",
            field="port",
            received=port,
            expected="a port >= 1024, or the privileges to bind below it",
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ServingError(
            f"{host} is not an address of this machine",
            field="host",
            received=host,
            expected="an address of this machine, e.g. 127.0.0.1 or 0.0.0.0",
        )
    return ServingError(
        f"cannot bind {host}:{port} ({exc.strerror or exc})",
        field="port",
        received=port,
        expected="a free port",
    )


def serve(app: Any, settings: ServeSettings, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Run ``app`` on the already bound ``sock`` until interrupted (the lifespan drains the log)."""
    uvicorn.Server(uvicorn_config(app, settings, log_level=log_level)).run(sockets=[sock])


def serving_info(settings: ServeSettings) -> dict[str, Any]:
    """What ``mlsd serve`` says it serves (a worker sends it to the parent)."""
    return {
        "model_name": settings.model_name,
        "model_version": settings.model_version,
        "log_url": settings.log.url,
        "feedback_auth": settings.feedback_auth,
    }
