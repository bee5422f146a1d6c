"""Notify's HTTP API: the outbound log, suppressed auto responses, and queue mail settings."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from services.notify import store
from services.notify.queue_settings import QueueMailSettings
from shared.service import Service

OutboundState = Literal["pending", "sending", "sent", "failed"]
Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def listing(total: int, items: list[dict[str, Any]], page: int, page_size: int) -> dict[str, Any]:
    return {"total": total, "items": items, "page": page, "page_size": page_size}


def notify_router(service: Service) -> APIRouter:
    router = APIRouter(tags=["notify"])

    @router.get("/outbound")
    async def outbound(
        ticket_id: str | None = None, state: OutboundState | None = None, page: Page = 1, page_size: PageSize = 50
    ) -> dict[str, Any]:
        """The outbound log, one row per mail (without its bytes: see ``/outbound/{id}/raw``)."""
        total, items = await store.list_outbound(
            service.db, ticket_id=ticket_id, state=state, limit=page_size, offset=(page - 1) * page_size
        )
        return listing(total, items, page, page_size)

    @router.get("/outbound/{row_id}/raw", response_model=None)
    async def outbound_raw(row_id: int) -> Response:
        """The exact bytes sent (or to be sent) to the relay."""
        message = await store.outbound_message(service.db, row_id)
        if message is None:
            return error(404, "outbound_not_found", f"no outbound mail {row_id}")
        return Response(message, media_type="message/rfc822")

    @router.get("/auto-reply-suppressions")
    async def suppressions(ticket_id: str | None = None, page: Page = 1, page_size: PageSize = 50) -> dict[str, Any]:
        """Auto responses notify decided not to send, with the reason."""
        total, items = await store.list_suppressions(
            service.db, ticket_id=ticket_id, limit=page_size, offset=(page - 1) * page_size
        )
        return listing(total, items, page, page_size)

    @router.get("/queues/{name}/settings", response_model=None)
    async def queue_settings(name: str) -> dict[str, Any] | JSONResponse:
        """The queue's mail settings as notify holds them (from ``QueueConfigured``)."""
        row = await store.queue_settings(service.db, name)
        if row is None:
            detail = f"notify has no QueueConfigured for {name!r}; its mail would use the default settings"
            return error(404, "queue_not_found", detail, queue=name)
        settings = QueueMailSettings.model_validate(row["settings"]).model_dump(mode="json")
        return {
            **settings,
            "valid": row["valid"],
            "source_event_id": str(row["source_event_id"]),
            "configured_at": row["configured_at"].isoformat(),
        }

    return router
