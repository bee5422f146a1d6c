"""Audit through the gateway: event navigation, a queue at an instant, the ticket report and
exports, signed heads, and the admin's rebuild and erasure (tickets does the work).

Who may what: an event, a ticket's report and its JSON Lines need ``history`` (``ro``) on the
ticket's queue, a queue's past contents ``ro`` on the queue; what is hidden answers exactly as
what does not exist. The whole log (range export, heads) needs the ``audit`` capability (or
admin). Rebuild and erasure are for administrators, and recorded in the gateway's audit log.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict
from starlette.background import BackgroundTask

from services.gateway import admin
from services.gateway.accounts import Principal
from services.gateway.api.deps import AdminDep, AgentDep, GatewayDep
from services.gateway.errors import ApiError, GatewayRoute, forbidden, queue_not_found
from services.gateway.permissions import check
from services.gateway.runtime import Gateway

router = APIRouter(prefix="/api", tags=["audit"], route_class=GatewayRoute)

_SEGMENT = r"^[^\s/?#%\\][^/?#%\\]{0,199}$"
Segment = Annotated[str, Path(pattern=_SEGMENT)]
Number = Annotated[str, Path(description="the ticket number", pattern=_SEGMENT, max_length=64)]
_STRICT = {
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'",
    "x-content-type-options": "nosniff",
}


class RebuildRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    swap: bool = True
    resume: bool = False


def _require_audit(agent: Principal) -> None:
    if not agent.has("audit"):
        raise forbidden("the whole log is for administrators and agents with the 'audit' permission")


async def _history_allowed(gateway: Gateway, agent: Principal, number: str) -> None:
    """404 for a ticket the agent may not see, 403 without ``history`` on its queue."""
    _, queue = await gateway.desk.visible_ticket(agent, number)
    denial = check(agent.access, "history", queue)
    if denial is not None:
        raise forbidden(denial.message, action="history", queue=denial.queue, permission=denial.permission)


@router.get("/audit/events/{event_id}")
async def event(event_id: Segment, agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """One event with its links: `caused_by` (the router's decision, the mail), `caused`, and the
    mail it answers or the answer it delivers. Needs `history` on the ticket's queue."""
    found = await gateway.upstream.find("tickets", f"/events/{event_id}", actor=agent.username)
    if not found:
        raise ApiError(404, "event_not_found", f"no event {event_id}")
    if found.get("ticket_number"):
        try:
            await _history_allowed(gateway, agent, str(found["ticket_number"]))
        except ApiError as exc:
            if exc.status == 404:
                raise ApiError(404, "event_not_found", f"no event {event_id}") from None
            raise
    else:
        _require_audit(agent)
    return dict(found)


@router.get("/queues/{name}/history")
async def queue_history(
    name: Segment,
    at: datetime,
    agent: AgentDep,
    gateway: GatewayDep,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The tickets that were in the queue at `at`, each as it was then (`{total, items, ...}`)."""
    directory = await gateway.desk.directory()
    if not directory.may_see(agent, name):
        raise queue_not_found(name)
    params = {"at": at.isoformat(), "page": page, "page_size": page_size}
    return dict(
        await gateway.upstream.call("tickets", "GET", f"/queues/{name}/at", actor=agent.username, params=params)
    )


@router.get("/tickets/{number}/report.html", response_class=Response)
async def report(number: Number, agent: AgentDep, gateway: GatewayDep) -> Response:
    """The ticket and its full history as a printable HTML page."""
    await _history_allowed(gateway, agent, number)
    response = await gateway.upstream.send("tickets", "GET", f"/tickets/{number}/report.html", actor=agent.username)
    if response.status_code >= 400:
        raise ApiError(response.status_code, "report_failed", f"tickets answered {response.status_code}")
    return Response(response.content, media_type="text/html; charset=utf-8", headers=_STRICT)


@router.get("/tickets/{number}/events.jsonl", response_class=StreamingResponse)
async def ticket_events(number: Number, agent: AgentDep, gateway: GatewayDep) -> StreamingResponse:
    """The ticket's events as stored (personal values encrypted, hashes verifiable)."""
    await _history_allowed(gateway, agent, number)
    return await _stream(gateway, agent, f"/tickets/{number}/events.jsonl", {})


@router.get("/audit/export", response_class=StreamingResponse)
async def export(
    start: Annotated[datetime, Query(alias="from")],
    end: Annotated[datetime, Query(alias="to")],
    agent: AgentDep,
    gateway: GatewayDep,
) -> StreamingResponse:
    """Every event that occurred in [from, to), as stored, in commit order (JSON Lines)."""
    _require_audit(agent)
    return await _stream(gateway, agent, "/audit/export", {"from": start.isoformat(), "to": end.isoformat()})


@router.get("/audit/heads")
async def heads(agent: AgentDep, gateway: GatewayDep) -> dict[str, Any]:
    """Every stream's last version and hash, and a digest over them (unsigned; the CLI signs)."""
    _require_audit(agent)
    return dict(await gateway.upstream.call("tickets", "GET", "/audit/heads", actor=agent.username))


async def _stream(gateway: Gateway, agent: Principal, path: str, params: dict[str, Any]) -> StreamingResponse:
    response = await gateway.upstream.send("tickets", "GET", path, actor=agent.username, params=params, stream=True)
    if response.status_code >= 400:
        await response.aread()
        await response.aclose()
        raise ApiError(response.status_code, "export_failed", f"tickets answered {response.status_code}")
    return StreamingResponse(
        response.aiter_raw(),
        media_type="application/x-ndjson",
        headers=_STRICT,
        background=BackgroundTask(response.aclose),
    )


# --------------------------------------------------------------------------- administrators


@router.post("/admin/rebuild", status_code=202)
async def start_rebuild(actor: AdminDep, gateway: GatewayDep, body: RebuildRequest | None = None) -> dict[str, Any]:
    """Rebuild every read model from the log in the background, compare digests, swap when they
    match (`swap`), or go on with an interrupted one (`resume`). 409 while one runs."""
    spec = (body or RebuildRequest()).model_dump()
    job = await gateway.upstream.call("tickets", "POST", "/admin/rebuild", actor=actor.username, json=spec)
    await admin.record(gateway.service.db, actor, "rebuild.start", f"rebuild:{job['job_id']}", spec)
    return dict(job)


@router.get("/admin/rebuild")
async def rebuilds(actor: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    return dict(await gateway.upstream.call("tickets", "GET", "/admin/rebuild", actor=actor.username))


@router.get("/admin/rebuild/{job_id}")
async def rebuild_status(job_id: Segment, actor: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    """`{state: running|done|failed|interrupted, events, matches, swapped, report, ...}`."""
    return dict(await gateway.upstream.call("tickets", "GET", f"/admin/rebuild/{job_id}", actor=actor.username))


@router.post("/admin/customers/{customer}/erase")
async def erase_customer(customer: Segment, actor: AdminDep, gateway: GatewayDep) -> dict[str, Any]:
    """Crypto-shred a customer (an email address or a `cus_…` subject id): their key is destroyed,
    their text reads "[erased]" everywhere; the events and their hash chains stay intact."""
    result = await gateway.upstream.call("tickets", "POST", f"/customers/{customer}/erase", actor=actor.username)
    detail = {"subjects": result.get("subjects", []), "tickets": result.get("tickets", [])}
    await admin.record(gateway.service.db, actor, "customer.erase", f"subjects:{','.join(detail['subjects'])}", detail)
    return dict(result)
