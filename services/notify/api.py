"""Notify's HTTP API: the outbound log, suppressed auto responses, queue mail settings, and the
preview of an answer as it would be sent (salutation, the agent's text, signature)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from services.notify import store
from services.notify.domain import answer_subject, answer_text
from services.notify.handlers import load_queue_settings
from services.notify.mime import text_to_html
from services.notify.queue_settings import QueueMailSettings
from services.notify.settings import NotifySettings
from services.notify.templates import MailTemplateError
from shared.events import AnswerSent
from shared.service import Service

OutboundState = Literal["pending", "sending", "sent", "failed"]
Page = Annotated[int, Query(ge=1)]
PageSize = Annotated[int, Query(ge=1, le=500)]


def error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


def listing(total: int, items: list[dict[str, Any]], page: int, page_size: int) -> dict[str, Any]:
    return {"total": total, "items": items, "page": page, "page_size": page_size}


class PreviewRequest(BaseModel):
    """An answer not yet sent: the ticket's fields and the agent's text."""

    model_config = ConfigDict(extra="forbid")

    queue: str = Field(min_length=1, max_length=200)
    ticket_number: str = Field(min_length=1, max_length=64)
    title: str = ""
    customer_name: str | None = None
    customer_email: str = ""
    body: str = ""
    subject: str = Field("", description="the answer's subject as tickets would put it in AnswerSent")
    agent_name: str = ""


def preview_answer(request: PreviewRequest, settings: QueueMailSettings) -> dict[str, Any]:
    """Subject, text and HTML of the answer exactly as ``compose_answer`` would build them (the same
    functions, the same queue settings); ``template_errors`` lists templates whose raw text is used."""
    problems: list[MailTemplateError] = []
    event = AnswerSent(
        ticket_id="preview",
        ticket_number=request.ticket_number,
        article_id="preview",
        queue=request.queue,
        to=[request.customer_email] if request.customer_email else [],
        subject=request.subject or request.title,
        body=request.body,
        message_id="<preview@preview>",
        customer_name=request.customer_name,
        title=request.title,
        agent_name=request.agent_name or None,
    )
    text = answer_text(
        event, settings, agent_name=request.agent_name, title=request.title, on_template_error=problems.append
    )
    return {
        "subject": answer_subject(request.ticket_number, event.subject),
        "text": text,
        "html": text_to_html(text),
        "template_errors": [{"template": p.template, "detail": p.detail} for p in problems],
    }


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

    @router.post("/api/preview")
    async def preview(request: PreviewRequest) -> dict[str, Any]:
        """The answer as it would be sent now: ``{subject, text, html, template_errors}``."""
        # The queue's settings as the sender loads them for an AnswerSent (defaults if not configured).
        settings = await load_queue_settings(service.db, request.queue, cast(NotifySettings, service.settings))
        return preview_answer(request, settings)

    return router
