"""Live updates as server-sent events."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from services.gateway.api.deps import AgentDep, GatewayDep
from services.gateway.errors import GatewayRoute
from services.gateway.live import event_stream

router = APIRouter(prefix="/api", tags=["live"], route_class=GatewayRoute)


@router.get("/events", response_class=StreamingResponse)
async def events(request: Request, agent: AgentDep, gateway: GatewayDep) -> StreamingResponse:
    """`text/event-stream`: `data: {type, ticket_id, ticket_number?, agent?}` for every change to a
    ticket in a queue the agent sees (`{type: QueueConfigured, queue}` for queue changes),
    comment heartbeats, and `event: logout` when the session ends."""
    return StreamingResponse(
        event_stream(gateway.live, gateway.accounts, agent, request.is_disconnected),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
