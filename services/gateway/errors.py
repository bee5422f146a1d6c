"""Every error the gateway answers is JSON ``{"error": <code>, "detail": <text>, ...}``.

No stack trace reaches a client: unexpected exceptions become a 500 naming the correlation id,
which is in the log line with the trace.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.logs import correlation_id
from shared.service import ERROR_REF, UNSTORABLE_TEXT_ERRORS

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """An answer other than success: status, a stable code, a human sentence and extra fields."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    @property
    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status, headers=self.headers)


class PassThrough(ApiError):
    """An internal service's 4xx, handed to the client as the service wrote it."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(status, str(body.get("error", "error")), str(body.get("detail", "")))
        self.raw = body

    @property
    def body(self) -> dict[str, Any]:
        return self.raw


def unauthenticated(detail: str = "sign in first: no valid session or bearer token") -> ApiError:
    return ApiError(401, "unauthenticated", detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(detail: str, **extra: Any) -> ApiError:
    return ApiError(403, "forbidden", detail, **extra)


def ticket_not_found(number: str, field: str | None = None) -> ApiError:
    """The same answer for a ticket that does not exist and one the agent may not see."""
    if field:
        return ApiError(404, "ticket_not_found", f"no ticket {number}", field=field)
    return ApiError(404, "ticket_not_found", f"no ticket {number}")


def queue_not_found(name: str, field: str = "queue") -> ApiError:
    """The same answer for a queue that does not exist and one the agent may not see."""
    return ApiError(404, "queue_not_found", f"no queue {name!r}", field=field)


def mail_not_found(mail_id: str) -> ApiError:
    return ApiError(404, "mail_not_found", f"no mail {mail_id}")


def _status_code(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _location(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def internal_error(exc: BaseException) -> JSONResponse:
    cid = correlation_id.get()
    logger.error("unhandled error: %r", exc, exc_info=exc)
    return JSONResponse(
        {"error": "internal_error", "detail": f"unexpected error (correlation id {cid})"},
        status_code=500,
    )


# Exceptions with a handler of their own (a 4xx); anything else is a 500 naming the correlation id.
_HANDLED: tuple[type[Exception], ...] = (
    ApiError,
    StarletteHTTPException,
    RequestValidationError,
    *UNSTORABLE_TEXT_ERRORS,
)


class GatewayRoute(APIRoute):
    """Routes whose unexpected exceptions become a JSON 500 while the correlation id is known.

    (An app-level ``Exception`` handler runs outside every middleware, after the correlation
    middleware has forgotten the id.)
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except _HANDLED:
                raise
            except Exception as exc:
                return internal_error(exc)

        return guarded


_UNSAFE = ("post", "put", "patch", "delete")


def document_api_errors(app: FastAPI) -> None:
    """Add to the OpenAPI the errors any ``/api/`` route may answer besides its own declared ones.

    Every route but login: 401 (no valid session) and 403 (a missing CSRF header on an unsafe
    method, or not allowed); a route naming something (a path parameter, a ``queue``): 404; an
    admin change: 409 (it exists, or would leave no administrator). The bodies are the error
    shape (``shared.service.ERROR_SCHEMA``).
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        schema = build()
        for path, operations in schema.get("paths", {}).items():
            if not path.startswith("/api/") or path == "/api/login":
                continue
            for method, operation in operations.items():
                statuses = ["401", "403"]
                queue = any(p.get("name") == "queue" for p in operation.get("parameters", []))
                if "{" in path or queue:
                    statuses.append("404")
                if path.startswith("/api/admin/") and method in _UNSAFE:
                    statuses.append("409")
                responses = operation.setdefault("responses", {})
                for status in statuses:
                    responses.setdefault(
                        status,
                        {
                            "description": HTTPStatus(int(status)).phrase,
                            "content": {"application/json": {"schema": ERROR_REF}},
                        },
                    )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _location(e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        first = errors[0] if errors else {"field": "request", "message": "invalid request"}
        body = {
            "error": "invalid_request",
            "detail": f"{first['field']}: {first['message']}",
            "field": first["field"],
            "errors": errors,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return JSONResponse(
            {"error": _status_code(exc.status_code), "detail": detail},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return internal_error(exc)
