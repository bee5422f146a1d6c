"""Where a mail went, its raw bytes and its attachments (only for agents who may see it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import StreamingResponse

from services.gateway import mails
from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.errors import GatewayRoute

router = APIRouter(prefix="/api/mails", tags=["mails"], route_class=GatewayRoute)

MailId = Annotated[str, Path(max_length=200)]


@router.get("/{mail_id}")
async def mail(mail_id: MailId, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """`{mail_id, status: stored|routed|ticketed, queue, ticket_number, article_id, reasons, ...}`."""
    return await mails.trace(gateway.desk, agent, mail_id)


@router.get("/{mail_id}/raw", response_class=StreamingResponse)
async def raw(mail_id: MailId, agent: AgentDep, gateway: GatewayDep) -> StreamingResponse:
    """The bytes exactly as received (`message/rfc822`)."""
    return await mails.ingest_bytes(gateway.desk, agent, mail_id, None)


@router.get("/{mail_id}/parts/{part}", response_class=StreamingResponse)
async def part(
    mail_id: MailId, part: Annotated[str, Path(max_length=100)], agent: AgentDep, gateway: GatewayDep
) -> StreamingResponse:
    """One attachment's decoded bytes, always as a download."""
    return await mails.ingest_bytes(gateway.desk, agent, mail_id, part)
