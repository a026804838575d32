"""The FastAPI app: predict, explain, feedback, health, readiness, metrics and OpenAPI docs for one model.

``create_app(settings)`` wires the pieces: bodies are read with a size limit and validated by
:mod:`mlsd.serving.validation` (inside the micro-batch, vectorised over the batch), rows are
scored by :class:`~mlsd.serving.batching.MicroBatcher`, and a 200 is sent only after the
prediction records are committed to the :class:`~mlsd.store.prediction_log.PredictionLog`.
Every error, everywhere, uses the schema of :mod:`mlsd.serving.responses`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlsd.errors import MlsdError
from mlsd.serving._service import FEEDBACK_ROUTE, PREDICT_ROUTE, Service
from mlsd.serving.admin import ADMIN_ROUTES, install_admin_routes
from mlsd.serving.explain import EXPLAIN_ROUTE, ExplainResponse, ModelExplainer, explain
from mlsd.serving.metrics import CONTENT_TYPE
from mlsd.serving.models import (
    FeedbackResponse,
    FeedbackResults,
    PredictResponse,
    example_row,
    feedback_schemas,
    request_schemas,
)
from mlsd.serving.responses import RequestError, error_body, error_response, mlsd_error_response
from mlsd.serving.security import RequestGuard, bearer_matches, unauthorized
from mlsd.serving.settings import ServeSettings

__all__ = ["create_app"]

_log = logging.getLogger(__name__)
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "field": {"type": "string", "example": "inputs[3].distance"},
                            "kind": {"type": "string"},
                            "message": {"type": "string"},
                            "received": {},
                            "expected": {"type": "string"},
                        },
                    },
                },
                "n_errors": {"type": "integer"},
            },
        }
    },
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for code, text in [
        (400, "Malformed JSON, or a Host this server does not answer for"),
        (401, "Missing or wrong token or signature"),
        (403, "Cross-origin request from an origin not in deployment.cors_origins"),
        (404, "Unknown request id"),
        (
            409,
            "Conflicting feedback (send correct: true to replace an outcome), or a request id already logged",
        ),
        (413, "Body too large"),
        (415, "The body is not declared application/json"),
        (422, "Invalid fields (one entry per field per row)"),
        (500, "Model or server failure"),
        (503, "The prediction log cannot commit (Retry-After says when to retry); nothing was recorded"),
    ]
}


def create_app(settings: ServeSettings) -> FastAPI:
    """The HTTP app serving ``settings.model``; the lifespan starts and drains the batcher and the log."""
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    model = settings.model
    app = _ServedApp(
        title=f"mlsd: {settings.model_name}",
        version=str(settings.model_version),
        description=f"{model.task} model {settings.model_name} v{settings.model_version}, served by mlsd.",
        lifespan=lifespan,
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; /docs is served from local files.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    explainer = ModelExplainer(model)  # POST /v1/explain: built on its first request, then kept
    schema = service.schema
    example = example_row(schema, model.input_columns)
    if settings.privacy is not None:  # a client sends raw values: the example shows one
        example = settings.privacy.example_row(example)

    @app.post(
        PREDICT_ROUTE,
        response_model=PredictResponse,
        responses=_ERROR_RESPONSES,
        summary="Score one row or a batch of rows",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/PredictRequest"},
                        "examples": {
                            "one row": {"value": {"inputs": example}},
                            "batch": {"value": {"inputs": [example, example]}},
                        },
                    }
                },
            }
        },
    )
    async def predict(request: Request) -> Response:
        return await service.predict(request)

    @app.post(
        EXPLAIN_ROUTE,
        response_model=ExplainResponse,
        responses={
            **_ERROR_RESPONSES,
            501: {
                **_ERROR_RESPONSES[500],
                "description": "The served model cannot be explained (why is in the body)",
            },
        },
        summary="SHAP contributions of each input to the champion's raw score of each row (not logged)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/PredictRequest"},
                        "examples": {"one row": {"value": {"inputs": example}}},
                    }
                },
            }
        },
    )
    async def explain_rows(request: Request) -> Response:
        return await explain(service, explainer, request)

    @app.post(
        FEEDBACK_ROUTE,
        response_model=FeedbackResponse | FeedbackResults,  # one item or a list of them
        responses=_ERROR_RESPONSES,
        summary="Record the observed outcome of a prediction (idempotent; correct: true replaces one)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "anyOf": [
                                {"$ref": "#/components/schemas/FeedbackItem"},
                                {"type": "array", "items": {"$ref": "#/components/schemas/FeedbackItem"}},
                            ]
                        }
                    }
                },
            }
        },
    )
    async def feedback(request: Request) -> Response:
        return await service.feedback(request)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="The model is loaded and the prediction log commits", responses={503: {}})
    async def readyz() -> Response:
        problem = await service.readiness()
        if problem is None:
            return JSONResponse({"status": "ready", "model": service.model_ref})
        return error_response(503, f"not ready: {problem}", "not_ready")

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.get(
        "/v1/model",
        summary="The served model: name, version, task, classes, input fields; "
        "the threshold and the build schema (ranges, categories) only with the admin token",
        responses={401: _ERROR_RESPONSES[401]},
    )
    async def model_info(request: Request) -> Response:
        public: dict[str, Any] = {
            "model": service.model_ref,
            "task": model.task,
            "classes": list(model.classes),
            "input_columns": list(model.input_columns),
        }
        if "authorization" not in request.headers:
            return JSONResponse(public)
        # a token that is sent must be right: a wrong one is told so rather than silently redacted
        if not bearer_matches(request, settings.admin_token):
            return unauthorized(
                "the admin token is missing or wrong", expected="Bearer <the admin token>"
            ).response()
        return JSONResponse({**public, "threshold": model.threshold, "schema": schema.to_dict()})

    app.state.admin_token_env = settings.admin_token_env
    install_admin_routes(app, service)
    _install_error_handlers(app)
    _install_openapi(app)
    _install_docs(app)
    # innermost of the middlewares: it skips only FastAPI's routing layers, never a check
    app.add_middleware(
        _PredictFastPath,
        service=service,
        route=next(r for r in app.routes if getattr(r, "path", None) == PREDICT_ROUTE),
    )
    if settings.cors_origins:  # no CORS headers at all unless origins are named
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(
        RequestGuard,
        allowed_hosts=settings.allowed_hosts,
        cors_origins=settings.cors_origins,
        max_header_count=settings.max_header_count,
        max_request_line_bytes=settings.max_request_line_bytes,
        json_routes=(PREDICT_ROUTE, FEEDBACK_ROUTE, EXPLAIN_ROUTE, *ADMIN_ROUTES[1:3]),
    )
    app.add_middleware(_Observed, service=service)  # outermost: refused requests are counted too
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MlsdError)
    async def on_mlsd_error(request: Request, exc: MlsdError) -> Response:
        return mlsd_error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        response = error_response(exc.status_code, str(exc.detail))
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ())),
                "received": None,
                "expected": e.get("msg", ""),
            }
            for e in exc.errors()[:100]
        ]
        return RequestError(422, "validation_error", "the request is invalid", errors).response()

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        _log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(500, f"internal error ({type(exc).__name__})")


def _install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            # the request schemas come from the validator's rules, so schema and server agree
            service: Service = app.state.service
            settings = service.settings
            schemas.update(
                request_schemas(
                    service.validator,
                    max_rows=settings.max_rows_per_request,
                    max_body_bytes=settings.max_body_bytes,
                )
            )
            if settings.privacy is not None:  # personal fields are sent raw; the server treats them
                settings.privacy.publish(schemas["InputRow"]["properties"])
            schemas.update(
                feedback_schemas(
                    service.model.task,
                    list(service.model.classes),
                    max_items=settings.max_rows_per_request,
                    signed=settings.feedback_auth == "signed_id",
                )
            )
            body = spec["paths"][FEEDBACK_ROUTE]["post"]["requestBody"]["content"]["application/json"]
            body["schema"] = {"$ref": "#/components/schemas/FeedbackRequest"}
            schemas["Error"] = _ERROR_SCHEMA
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


DOCS_ROUTE = "/docs"
_DOCS_ASSETS = "/docs-assets"


def _install_docs(app: FastAPI) -> None:
    """``/docs`` with Swagger UI from the files of the ``fastapi-offline`` package: no CDN, so the
    page works on a machine without internet access (FastAPI's default loads jsDelivr).

    That package ships Swagger UI 5, which reads the OpenAPI 3.1 that FastAPI writes (Swagger UI 4,
    as in ``swagger-ui-bundle``, refuses it: "Unable to render this definition").
    """
    from importlib import resources

    static = resources.files("fastapi_offline") / "static"
    app.mount(_DOCS_ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get(DOCS_ROUTE, include_in_schema=False)
    async def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            swagger_js_url=f"{_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{_DOCS_ASSETS}/favicon.png",
        )


class _ServedApp(FastAPI):
    """FastAPI, with ``POST /v1/predict`` handed to the app's own middlewares directly.

    FastAPI wraps every request in its outer layers before the user's middlewares: its native
    telemetry check (three OpenTelemetry provider look-ups per request), Starlette's
    ServerErrorMiddleware, an exception-telemetry and a body-limit layer. For the predict route
    they do nothing :class:`_Observed` does not do already (it answers any unhandled error with
    a 500 in the error schema; the handler bounds the body itself), so that route enters the
    same chain of user middlewares (``_Observed``, the guard, CORS, ``_PredictFastPath``) built
    once, around the router; every other request, the lifespan and OpenAPI go through FastAPI."""

    _hot: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == PREDICT_ROUTE and scope["method"] == "POST":
            if self._hot is None:  # built on the first request: every middleware is added by then
                hot: ASGIApp = self.router
                for cls, args, kwargs in reversed(self.user_middleware):
                    hot = cls(hot, *args, **kwargs)
                self._hot = hot
            if self.root_path:
                scope["root_path"] = self.root_path
            scope["app"] = self
            await self._hot(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


class _PredictFastPath:
    """ASGI middleware: ``POST /v1/predict`` goes straight to :meth:`Service.predict`.

    The route stays declared (OpenAPI, ``405`` for other methods), but its requests skip the
    layers of FastAPI's routing (exception middleware, exit stack, router match, request-response
    wrapper), a sixth of the server's CPU per request under load. It sits inside every other
    middleware, so the guard, CORS and the metrics see it as before; the handler answers its own
    errors, and an :class:`MlsdError` it lets out gets the answer the app's handler would give."""

    def __init__(self, app: ASGIApp, service: Service, route: Any) -> None:
        self.app = app
        self.service = service
        self.route = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PREDICT_ROUTE or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route  # what the metrics label the request with
        try:
            response = await self.service.predict(Request(scope, receive))
        except MlsdError as exc:
            response = mlsd_error_response(exc)
        await response(scope, receive, send)


class _Observed:
    """ASGI middleware: start time for latency, metrics per route and status, and a last-resort 500
    in the error schema (nothing unexpected reaches the client as a traceback or a dropped connection)."""

    def __init__(self, app: ASGIApp, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})["mlsd_start"] = start
        scope["state"]["mlsd_received"] = datetime.now(UTC)
        status = 500
        started = False

        async def observed_send(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        except asyncio.CancelledError:
            raise
        except Exception:
            _log.exception("unhandled error on %s", scope.get("path"))
            if not started:
                status = 500
                response = JSONResponse(error_body("internal_error", "internal error"), status_code=500)
                await response(scope, receive, send)
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        self.service.metrics.observe_request(path, status, time.perf_counter() - start)
