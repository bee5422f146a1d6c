"""Calls to the internal services (tickets, router, ingest, notify) over one shared HTTP client.

Every call carries ``X-Actor`` (the agent's username) and ``X-Correlation-ID``. A service that
does not answer becomes a 503 naming it; a timeout a 504; a 5xx a 502; its 4xx answers are
handed on (``PassThrough``) so the client sees the service's own ``{error, detail, ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import quote

import httpx

from services.gateway.errors import ApiError, PassThrough
from services.gateway.settings import GatewaySettings
from shared.envelope import new_id
from shared.logs import correlation_id

logger = logging.getLogger(__name__)

ServiceName = Literal["tickets", "router", "ingest", "notify"]


class Upstream:
    def __init__(self, settings: GatewaySettings) -> None:
        self.urls: dict[str, str] = {
            "tickets": settings.tickets_url.rstrip("/"),
            "router": settings.router_url.rstrip("/"),
            "ingest": settings.ingest_url.rstrip("/"),
            "notify": settings.notify_url.rstrip("/"),
        }
        self.timeout = httpx.Timeout(
            settings.upstream_timeout_seconds, connect=settings.upstream_connect_timeout_seconds
        )
        self.limits = httpx.Limits(
            max_connections=settings.upstream_max_connections,
            max_keepalive_connections=settings.upstream_max_connections,
        )
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout, limits=self.limits)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> httpx.AsyncClient:
        assert self._client is not None, "upstream client not started"
        return self._client

    def _request(
        self,
        service: ServiceName,
        method: str,
        path: str,
        actor: str,
        params: Mapping[str, Any] | None,
        json: Any,
        extra_headers: Mapping[str, str] | None = None,
    ) -> httpx.Request:
        headers = {"X-Actor": actor, "X-Correlation-ID": correlation_id.get() or new_id(), **(extra_headers or {})}
        clean = {k: v for k, v in (params or {}).items() if v is not None and v != ""}
        # Percent-encode the path: values are raw (a ticket number, a queue name), and a control
        # character would make httpx raise InvalidURL (a 500) instead of the service's 404 or 422.
        url = f"{self.urls[service]}{quote(path, safe='/')}"
        return self.client.build_request(method, url, params=clean, json=json, headers=headers)

    async def send(
        self,
        service: ServiceName,
        method: str,
        path: str,
        *,
        actor: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        stream: bool = False,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The service's response (any status below 500); transport failures and 5xx raise."""
        request = self._request(service, method, path, actor, params, json, headers)
        try:
            response = await self.client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise ApiError(504, "upstream_timeout", f"{service} did not answer in time", service=service) from exc
        except httpx.TransportError as exc:
            logger.warning("%s unreachable: %r", service, exc)
            raise ApiError(503, "service_unavailable", f"{service} is unavailable", service=service) from exc
        if response.status_code >= 500:
            if stream:
                await response.aclose()
            status = 503 if response.status_code == 503 else 502
            code = "service_unavailable" if status == 503 else "bad_gateway"
            raise ApiError(status, code, f"{service} failed ({response.status_code})", service=service)
        return response

    async def call(
        self,
        service: ServiceName,
        method: str,
        path: str,
        *,
        actor: str,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """The JSON body of a 2xx answer; a 4xx is raised as :class:`PassThrough`."""
        response = await self.send(service, method, path, actor=actor, params=params, json=json, headers=headers)
        if response.status_code >= 400:
            raise pass_through(service, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                502, "bad_gateway", f"{service} answered something that is not JSON", service=service
            ) from exc

    async def find(
        self, service: ServiceName, path: str, *, actor: str, params: Mapping[str, Any] | None = None
    ) -> Any | None:
        """GET that answers None on 404 (anything else as :meth:`call`)."""
        response = await self.send(service, "GET", path, actor=actor, params=params)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise pass_through(service, response)
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                502, "bad_gateway", f"{service} answered something that is not JSON", service=service
            ) from exc


def pass_through(service: str, response: httpx.Response) -> ApiError:
    """A service's 4xx as the gateway's answer: its own JSON body, or one naming the service."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        body.setdefault("detail", "")
        return PassThrough(response.status_code, body)
    if isinstance(body, dict) and isinstance(body.get("detail"), list):  # a FastAPI validation error
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "message": e.get("msg", "")}
            for e in body["detail"]
            if isinstance(e, dict)
        ]
        first = errors[0] if errors else {"field": "request", "message": "invalid request"}
        return PassThrough(
            response.status_code,
            {
                "error": "invalid_request",
                "detail": f"{first['field']}: {first['message']}",
                "field": first["field"],
                "errors": errors,
            },
        )
    text = response.text[:300] if not body else str(body)[:300]
    return ApiError(response.status_code, "upstream_error", f"{service}: {text}", service=service)
