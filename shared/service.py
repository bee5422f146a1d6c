"""What every Firstline service process is made of: a pool, migrations, the outbox relay,
consumers, and a FastAPI app with health, readiness and metrics, stopped gracefully.

A service's ``app.py`` builds a :class:`Service`, registers its consumers and routers, and
hands it to :func:`create_app`. Uvicorn turns SIGTERM into the app's shutdown, which stops the
consumers after their current batch (effects and offsets committed) and leaves the group.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import asyncpg
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.bus import INFRASTRUCTURE_ERRORS, Consumer, Handler, ensure_topics
from shared.db import create_pool, migrate
from shared.envelope import new_id
from shared.eventstore import ConcurrencyError, EventStore
from shared.logs import configure_logging, correlation_id
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

# What PostgreSQL answers for a NUL character in a text or jsonb value; a 422, not a 500.
UNSTORABLE_TEXT_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)

Hook = Callable[["Service"], Awaitable[None]]
ReadinessCheck = Callable[[], Awaitable[tuple[str, str]]]  # (name, "ok" or what is wrong)


class Service:
    def __init__(self, settings: ServiceSettings, *, migrations: Path | None = None, relay: bool = True) -> None:
        self.settings = settings
        self.migrations = [migrations] if migrations else []
        self.with_relay = relay
        self.pool: asyncpg.Pool | None = None
        self.store: EventStore | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[Consumer] = []
        self._consumer_specs: list[tuple[str, list[str], Handler, Collection[str] | None]] = []
        self.on_start: list[Hook] = []
        self.on_stop: list[Hook] = []
        self.readiness_checks: list[ReadinessCheck] = []
        self.stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.time()

    def consume(self, name: str, topics: list[str], handler: Handler, types: Collection[str] | None = None) -> None:
        """Register a consumer (catalogue topic names; the settings' prefix is applied). ``types``:
        the event types ``handler`` acts on; others are passed over (None: all)."""
        self._consumer_specs.append((name, [self.settings.topic(t) for t in topics], handler, types))

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "service not started"
        return self.pool

    async def start(self) -> None:
        self.stopping.clear()
        self.pool = await create_pool(
            self.settings.database_url, min_size=self.settings.db_pool_min, max_size=self.settings.db_pool_max
        )
        await migrate(self.pool, self.migrations)
        self.store = EventStore(self.pool)
        if self.with_relay:
            self.relay = OutboxRelay(self.pool, self.settings)
            relay = self.relay
            self.spawn(lambda: relay.run(self.stopping), "relay")
        for name, topics, handler, types in self._consumer_specs:
            consumer = Consumer(
                name=name, topics=topics, pool=self.pool, settings=self.settings, handler=handler, types=types
            )
            self.consumers.append(consumer)
            self.spawn(partial(consumer.run, self.stopping), f"consumer {name}")
        for hook in self.on_start:
            await hook(self)

    def spawn(self, loop: Callable[[], Awaitable[None]], name: str) -> None:
        """Run a background loop for the service's lifetime; it should return when ``stopping`` is set.

        The loop is supervised: if it raises, the error is logged and the loop started again
        after a pause (a database or broker outage must not leave a service half alive).
        """

        async def supervised() -> None:
            pause = 0.5
            while True:
                try:
                    await loop()
                    return
                except asyncio.CancelledError:
                    raise
                except Exception:
                    logger.exception("%s crashed; restarting in %.1f s", name, pause)
                if self.stopping.is_set():
                    return
                await asyncio.sleep(pause)
                pause = min(pause * 2, 10.0)

        self._tasks.append(asyncio.create_task(supervised(), name=name))

    async def stop(self, timeout: float = 20.0) -> None:
        self.stopping.set()
        for hook in self.on_stop:
            await hook(self)
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for task in pending:
                task.cancel()
        self._tasks.clear()
        self.consumers.clear()
        if self.pool is not None:
            await self.pool.close()
            self.pool = None

    async def readiness(self) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        try:
            await asyncio.wait_for(self.db.fetchval("select 1"), timeout=2)
            checks["database"] = "ok"
        except Exception as exc:  # any failure means not ready; say which
            checks["database"] = f"error: {exc!r}"
        for consumer in self.consumers:
            checks[f"consumer:{consumer.name}"] = "ok" if consumer.status.running else "not running"
        if self.relay is not None:
            checks["relay"] = "ok" if self.relay.healthy else "broker unavailable"
        for check in self.readiness_checks:
            name, outcome = await check()
            checks[name] = outcome
        return checks


async def ensure_service_topics(settings: ServiceSettings, topics: list[str]) -> None:
    await ensure_topics(settings, [settings.topic(t) for t in topics])


def create_app(service: Service, *, title: str, routers: list[APIRouter] = ()) -> FastAPI:  # type: ignore[assignment]
    configure_logging(service.settings.service_name, service.settings.log_level)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        logger.info("%s started on port %s", service.settings.service_name, service.settings.http_port)
        try:
            yield
        finally:
            logger.info("%s stopping", service.settings.service_name)
            await service.stop()

    app = FastAPI(title=title, lifespan=lifespan)
    app.state.service = service
    app.include_router(health_router(service))
    for router in routers:
        app.include_router(router)
    install_common_middleware(app)
    document_errors(app)
    return app


# The body of every 4xx/5xx answer of every service (see docs/services.md).
ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error", "detail"],
    "properties": {
        "error": {"type": "string", "description": "a stable code: invalid_request, ticket_not_found, conflict, ..."},
        "detail": {"type": "string", "description": "what is wrong, for a person"},
        "field": {"type": "string", "description": "the offending field, when there is one"},
    },
    "additionalProperties": True,
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}


def document_errors(app: FastAPI) -> None:
    """Make the OpenAPI document the error bodies the service really answers.

    FastAPI documents its own 422 shape (``{"detail": [...]}``), which no Firstline service
    answers (``install_common_middleware``), and error statuses declared without a body. Both
    become :data:`ERROR_SCHEMA`; a response that documents its own body keeps it. An operation
    with a body may also answer 400 (not JSON at all).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Error"] = ERROR_SCHEMA
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                if "requestBody" in operation:  # a body that is not JSON at all: FastAPI's 400
                    operation["responses"].setdefault("400", {"description": "the body is not valid JSON"})
                for status, response in operation.get("responses", {}).items():
                    if not status.startswith(("4", "5")):
                        continue
                    content = response.get("content")
                    if not content or "HTTPValidationError" in str(content):
                        response["content"] = {"application/json": {"schema": ERROR_REF}}
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


READINESS_SCHEMA = {
    "type": "object",
    "required": ["ready", "checks"],
    "properties": {
        "ready": {"type": "boolean"},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
READY = {"content": {"application/json": {"schema": READINESS_SCHEMA}}}


def health_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "service": service.settings.service_name, "uptime_s": time.time() - service.started_at}

    @router.get("/readyz", responses={503: {"description": "not ready: `checks` names what is wrong", **READY}})
    async def readyz() -> JSONResponse:
        checks = await service.readiness()
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)

    @router.get("/metrics", response_class=PlainTextResponse, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


class CorrelationIds:
    """The request's ``X-Correlation-ID`` (or a new one) is the correlation id while it is
    handled, and is sent back on the answer.

    Pure ASGI: Starlette's ``BaseHTTPMiddleware`` runs every request through a task group and
    memory streams, which cost a third of a busy service's time per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = Headers(scope=scope).get("x-correlation-id") or new_id()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Correlation-ID"] = cid
            await send(message)

        token = correlation_id.set(cid)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)


def install_common_middleware(app: FastAPI) -> None:
    """Correlation ids in and out; JSON 422s naming the field; a JSON 409 for concurrency conflicts."""

    app.add_middleware(CorrelationIds)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        """A 422 in the project's error shape, naming the first offending field."""
        problems = exc.errors()
        first = problems[0] if problems else {}
        field = ".".join(str(part) for part in first.get("loc", ())[1:])
        return JSONResponse(
            {
                "error": "invalid_request",
                "detail": first.get("msg", "invalid request"),
                "field": field,
                "errors": jsonable_encoder(problems),
            },
            status_code=422,
        )

    async def unavailable(_: Request, exc: Exception) -> JSONResponse:
        logger.warning("request failed, infrastructure unavailable: %r", exc)
        return JSONResponse(
            {"error": "service_unavailable", "detail": "the database or the broker is unavailable; try again"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    for error in INFRASTRUCTURE_ERRORS:
        app.add_exception_handler(error, unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Starlette's own answers (unknown path 404, 405, a body that is not JSON 400) in the error shape."""
        phrase = HTTPStatus(exc.status_code).phrase
        return JSONResponse(
            {"error": phrase.lower().replace(" ", "_").replace("-", "_"), "detail": str(exc.detail or phrase)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    async def unstorable_text(_: Request, exc: Exception) -> JSONResponse:
        # PostgreSQL stores no NUL character in text or jsonb: the input is bad, not the server.
        return JSONResponse(
            {"error": "invalid_text", "detail": "text with a NUL character (\\u0000) is not accepted"},
            status_code=422,
        )

    for error in UNSTORABLE_TEXT_ERRORS:
        app.add_exception_handler(error, unstorable_text)

    @app.exception_handler(ConcurrencyError)
    async def conflict(_: Request, exc: ConcurrencyError) -> JSONResponse:
        return JSONResponse(
            {"error": "conflict", "detail": str(exc), "stream_id": exc.stream_id, "actual_version": exc.actual},
            status_code=409,
        )


def run(app: FastAPI, settings: ServiceSettings) -> None:
    """Serve until SIGTERM/SIGINT; uvicorn then runs the app's graceful shutdown."""
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=25,
    )
