"""Where one incoming mail went, and its raw bytes and parts, for agents who may see it.

Status comes from the furthest service that knows the mail: tickets (``ticketed``), else router
(``routed``), else ingest (``stored``). Who may see it: for a ticketed mail, the agents who see
its ticket's queue now; for a routed one, those who see the queue it was routed to; a mail that
is only stored has no queue yet and is shown to administrators only. Anyone else gets the same
answer a mail that does not exist would get: 404, or the 503 of router or ingest when that
service is down (otherwise a hidden mail would answer 404 where an unknown one answers 503).
When the service that decides visibility is down the answer is 503, never a guess.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from services.gateway.accounts import Principal
from services.gateway.desk import Desk
from services.gateway.errors import ApiError, mail_not_found

_PASSED_HEADERS = ("content-type", "content-length", "content-disposition")


def _mail_segment(mail_id: str) -> str:
    if not mail_id or any(c in mail_id for c in "/?#%\\") or mail_id in (".", ".."):
        raise mail_not_found(mail_id)
    return mail_id


async def trace(desk: Desk, agent: Principal, mail_id: str) -> dict[str, Any]:
    segment = _mail_segment(mail_id)
    up = desk.upstream
    answers: list[Any] = await asyncio.gather(
        up.find("tickets", f"/mails/{segment}", actor=agent.username),
        up.find("router", f"/mails/{segment}", actor=agent.username),
        up.find("ingest", f"/mails/{segment}", actor=agent.username),
        return_exceptions=True,
    )
    ticketed, routed, stored = answers
    if isinstance(ticketed, BaseException):
        raise ticketed
    if ticketed:
        try:
            ticket, queue = await desk.visible_ticket(agent, str(ticketed["ticket_number"]))
        except ApiError as exc:
            if exc.status == 404:
                raise _as_unknown(mail_id, routed, stored) from None
            raise
        answer = {**_known(stored), **_known(routed), **ticketed, "status": "ticketed", "queue": queue.name}
        answer["ticket_number"] = ticket.get("number", ticketed.get("ticket_number"))
        answer.setdefault("reasons", [])
        if isinstance(routed, BaseException):
            answer["unavailable"] = ["router"]
        return answer
    if isinstance(routed, BaseException):
        raise routed
    if routed:
        directory = await desk.directory()
        if not directory.may_see(agent, str(routed.get("queue", ""))):
            raise _as_unknown(mail_id, None, stored)
        return {**_known(stored), **routed, "status": "routed", "ticket_number": routed.get("ticket_number")}
    if isinstance(stored, BaseException):
        raise stored
    if stored and agent.is_admin:
        return {**stored, "status": "stored", "queue": None, "ticket_number": None, "reasons": []}
    raise mail_not_found(mail_id)


def _as_unknown(mail_id: str, routed: Any, stored: Any) -> BaseException:
    """What an unknown mail would have answered, given which of router and ingest failed."""
    for failure in (routed, stored):
        if isinstance(failure, BaseException):
            return failure
    return mail_not_found(mail_id)


def _known(result: Any) -> dict[str, Any]:
    return result if isinstance(result, dict) else {}


async def ingest_bytes(desk: Desk, agent: Principal, mail_id: str, part: str | None) -> StreamingResponse:
    """The raw mail (or one decoded part) streamed from ingest, once the agent may see the mail."""
    await trace(desk, agent, mail_id)
    path = f"/mails/{_mail_segment(mail_id)}/raw"
    if part is not None:
        if not part or any(c in part for c in "/?#%\\") or part in (".", ".."):
            raise ApiError(404, "part_not_found", f"no part {part!r} in mail {mail_id}")
        path = f"/mails/{_mail_segment(mail_id)}/parts/{part}"
    response = await desk.upstream.send("ingest", "GET", path, actor=agent.username, stream=True)
    if response.status_code >= 400:
        await response.aread()
        await response.aclose()
        if response.status_code == 404:
            raise ApiError(404, "part_not_found" if part else "mail_not_found", f"not found in ingest: {path}")
        raise ApiError(502, "bad_gateway", f"ingest answered {response.status_code}", service="ingest")
    headers = {k: v for k, v in response.headers.items() if k.lower() in _PASSED_HEADERS}
    filename = f"{mail_id}.eml" if part is None else f"{mail_id}-{part}"
    if part is None:
        headers["content-disposition"] = f'inline; filename="{filename}"'
    elif "content-disposition" not in headers or not headers["content-disposition"].startswith("attachment"):
        headers["content-disposition"] = f'attachment; filename="{filename}"'
    # Untrusted bytes from our origin: never sniffed, never run, never framed.
    headers["content-security-policy"] = "default-src 'none'; sandbox"
    headers["x-content-type-options"] = "nosniff"
    return StreamingResponse(
        response.aiter_raw(),
        status_code=200,
        headers=headers,
        media_type=headers.get("content-type", "application/octet-stream"),
        background=BackgroundTask(response.aclose),
    )
