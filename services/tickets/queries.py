"""The read side: what the API shows, from the read models (and, for history, the log)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.tickets import store, views
from services.tickets.errors import MailNotFound, TemplateNotFound, TicketNotFound
from services.tickets.state import fold, state_at
from shared.eventstore import EventStore


async def zoom(db: store.Db, number: str) -> dict[str, Any]:
    """The ticket with every article in order, including those of tickets merged into it."""
    row = await store.ticket_row(db, number)
    if row is None:
        raise TicketNotFound(f"no ticket {number}")
    articles = await store.articles_of(db, [row["ticket_id"], *views.absorbed_ticket_ids(row)])
    return views.ticket_zoom(row, articles)


async def zoom_by_id(db: store.Db, ticket_id: str) -> dict[str, Any]:
    row = await store.ticket_row_by_id(db, ticket_id)
    if row is None:
        raise TicketNotFound(f"no ticket {ticket_id}")
    articles = await store.articles_of(db, [row["ticket_id"], *views.absorbed_ticket_ids(row)])
    return views.ticket_zoom(row, articles)


async def ticket_list(db: store.Db, f: store.TicketFilter) -> dict[str, Any]:
    total, rows = await store.list_tickets(db, f)
    return views.page(total, [views.ticket_item(r) for r in rows], f.page, f.page_size)


async def queue_overview(db: store.Db) -> dict[str, Any]:
    items = views.queue_views(await store.queues(db), await store.count_sums(db))
    return {"total": len(items), "items": items}


async def queue(db: store.Db, name: str) -> dict[str, Any]:
    row = await store.queue_config(db, name)
    counts = {(c["state"], c["locked"]): int(c["n"]) for c in await store.count_sums(db) if c["queue"] == name}
    return views.queue_view(row, name, counts)


async def search(db: store.Db, query: str, queues: Sequence[str] | None, page: int, page_size: int) -> dict[str, Any]:
    total, rows = await store.search(db, query, queues, page, page_size)
    items = [{**views.ticket_item(r), "snippet": r["snippet"]} for r in rows]
    return views.page(total, items, page, page_size)


async def mail(db: store.Db, mail_id: str) -> dict[str, Any]:
    row = await store.mail(db, mail_id)
    if row is None:
        raise MailNotFound(f"no ticket has mail {mail_id}")
    return {
        "mail_id": row["mail_id"],
        "status": "ticketed",
        "ticket_number": row["number"],
        "ticket_id": row["ticket_id"],
        "article_id": row["article_id"],
        "queue": row["queue"],
    }


async def history(db: store.Db, events: EventStore, number: str, at: datetime | None) -> dict[str, Any]:
    """Every event of the ticket up to ``at`` (all when None) with its description and hash,
    and the ticket as those events leave it: time travel is a fold of a prefix."""
    ticket_id = await store.ticket_id_by_number(db, number)
    if ticket_id is None:
        raise TicketNotFound(f"no ticket {number}")
    stream = await events.read_stream(ticket_id)
    if at is not None:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        stream = [e for e in stream if e.occurred_at <= at]
    ticket = state_at(stream, at) if at is not None else fold(stream)
    return {
        "at": at.isoformat() if at else None,
        "ticket_id": ticket_id,
        "ticket": ticket.model_dump(mode="json") if ticket else None,
        "events": [views.history_event(e) for e in stream],
    }


async def export(db: store.Db, events: EventStore, number: str) -> bytes:
    ticket_id = await store.ticket_id_by_number(db, number)
    if ticket_id is None:
        raise TicketNotFound(f"no ticket {number}")
    return b"".join(e.to_json() + b"\n" for e in await events.read_stream(ticket_id))


async def verify(events: EventStore) -> dict[str, Any]:
    checked, broken = await events.verify_all()
    return {
        "ok": broken is None,
        "streams_checked": checked,
        "broken": None
        if broken is None
        else {
            "stream_id": broken.stream_id,
            "stream_version": broken.stream_version,
            "event_id": broken.event_id,
            "reason": broken.reason,
        },
    }


async def head_hashes(events: EventStore) -> dict[str, Any]:
    """Every stream's last version and hash, and one digest over them all: an auditor keeps the
    digest and can later show the log was not rewritten before it."""
    heads = await events.head_hashes()
    lines = "".join(f"{stream}\t{version}\t{digest}\n" for stream, (version, digest) in sorted(heads.items()))
    return {
        "streams": {s: {"version": v, "hash": h} for s, (v, h) in sorted(heads.items())},
        "digest": hashlib.sha256(lines.encode()).hexdigest(),
        "taken_at": datetime.now(UTC).isoformat(),
    }


async def template(db: store.Db, template_id: str) -> dict[str, Any]:
    row = await store.template(db, template_id)
    if row is None:
        raise TemplateNotFound(f"no template {template_id}")
    return views.template_view(row)


async def templates(db: store.Db, queue_name: str | None) -> dict[str, Any]:
    items = [views.template_view(r) for r in await store.templates(db, queue_name)]
    return {"total": len(items), "items": items}


async def put_template(db: asyncpg.Pool, template_id: str, name: str, body: str, queues: list[str]) -> dict[str, Any]:
    return views.template_view(await store.put_template(db, template_id, name, body, queues))
