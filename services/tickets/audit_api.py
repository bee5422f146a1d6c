"""The audit side of the tickets API: event navigation, a queue at an instant, exports, the
printable report, erasure of a customer, and the rebuild as a background job.

The gateway decides who may call what (docs/services.md); these routes trust it, as the rest
of the internal API does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from services.tickets import queries
from services.tickets.api import Body, Cmd
from services.tickets.commands import Tickets
from services.tickets.erasure import erase
from services.tickets.jobs import RebuildJobs

Json = dict[str, Any]

# Reports and exports are for people and tools, never for a browser to sniff or frame.
_STRICT = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "x-content-type-options": "nosniff",
}


class RebuildBody(Body):
    swap: bool = True
    resume: bool = False


def build_audit_router(tickets: Tickets, jobs: RebuildJobs) -> APIRouter:
    router = APIRouter()

    @router.get("/events/{event_id}")
    async def get_event(event_id: str) -> Json:
        return await queries.event(tickets.pool, tickets.events, event_id)

    @router.get("/queues/{name}/at")
    async def queue_at(
        name: str,
        at: datetime,
        page: Annotated[int, Query(ge=1)] = 1,
        page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> Json:
        return await queries.queue_at(tickets.pool, name, at, page, page_size)

    @router.get("/audit/export")
    async def export_range(
        start: Annotated[datetime, Query(alias="from")], end: Annotated[datetime, Query(alias="to")]
    ) -> StreamingResponse:
        """Events that occurred in [from, to), as stored, in commit order (JSON Lines)."""
        lines = queries.export_range(tickets.pool, start, end)
        return StreamingResponse(lines, media_type="application/x-ndjson", headers=_STRICT)

    @router.get("/tickets/{number}/report.html", response_class=HTMLResponse)
    async def report(number: str) -> Response:
        return HTMLResponse(await queries.report(tickets.pool, tickets.events, number), headers=_STRICT)

    @router.post("/customers/{customer}/erase")
    async def erase_customer(customer: str, cmd: Cmd) -> Json:
        """``customer``: a subject id (``cus_…``) or an email address."""
        return {**await erase(tickets, customer), "erased_by": cmd.ctx.actor}

    @router.post("/admin/rebuild", status_code=202)
    async def start_rebuild(cmd: Cmd, body: RebuildBody | None = None) -> Json:
        body = body or RebuildBody()
        return await jobs.start(swap=body.swap, resume=body.resume)

    @router.get("/admin/rebuild")
    async def rebuilds() -> Json:
        return await jobs.recent()

    @router.get("/admin/rebuild/{job_id}")
    async def rebuild_status(job_id: str) -> Json:
        return await jobs.get(job_id)

    return router
