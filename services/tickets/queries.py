"""The read side: what the API shows, from the read models (and, for history, the log)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.tickets import store, views
from services.tickets.errors import EventNotFound, MailNotFound, TemplateNotFound, TicketNotFound
from services.tickets.privacy import Vault
from services.tickets.report import render_report
from services.tickets.state import fold, state_at
from shared.envelope import Envelope
from shared.eventstore import EventStore

vault = Vault()


async def zoom(db: store.Db, number: str, *, articles: bool = True) -> dict[str, Any]:
    """The ticket with every article in order, including those of tickets merged into it
    (``articles=False``: without the ``articles`` key)."""
    row = await store.ticket_row(db, number)
    if row is None:
        raise TicketNotFound(f"no ticket {number}")
    if not articles:
        return {k: v for k, v in views.ticket_zoom(row, []).items() if k != "articles"}
    found = await store.articles_of(db, [row["ticket_id"], *views.absorbed_ticket_ids(row)])
    return views.ticket_zoom(row, found)


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


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def history(db: store.Db, events: EventStore, number: str, at: datetime | None) -> dict[str, Any]:
    """Every event of the ticket up to ``at`` (all when None), decrypted, with its description,
    hash and links (mail, router decision, replies, deliveries, causation), and the ticket as
    those events leave it: time travel is a fold of a prefix."""
    ticket_id = await store.ticket_id_by_number(db, number)
    if ticket_id is None:
        raise TicketNotFound(f"no ticket {number}")
    stream = await vault.open(db, await events.read_stream(ticket_id))
    links = await _links(db, stream)
    if at is not None:
        at = _aware(at)
        stream = [e for e in stream if e.occurred_at <= at]
    ticket = state_at(stream, at) if at is not None else fold(stream)
    return {
        "at": at.isoformat() if at else None,
        "ticket_id": ticket_id,
        "ticket": ticket.model_dump(mode="json") if ticket else None,
        "events": [views.history_event(e, links[e.event_id]) for e in stream],
    }


async def _links(db: store.Db, stream: Sequence[Envelope]) -> dict[str, dict[str, Any]]:
    caused = await store.caused_events(db, [e.event_id for e in stream])
    return views.event_links(stream, {cause: [r["event_id"] for r in refs] for cause, refs in caused.items()})


async def event(db: store.Db, events: EventStore, event_id: str) -> dict[str, Any]:
    """One event (decrypted), its ticket, and the events it caused and that caused it."""
    stream_id = await store.event_stream_of(db, event_id)
    if stream_id is None:
        raise EventNotFound(f"no event {event_id}")
    stream = await vault.open(db, await events.read_stream(stream_id))
    found = next(e for e in stream if e.event_id == event_id)
    links = (await _links(db, stream))[event_id]
    causes = await store.event_refs(db, [found.causation_id] if found.causation_id else [])
    caused = await store.caused_events(db, [event_id])
    row = await store.ticket_row_by_id(db, stream_id)
    return {
        "event": views.history_event(found, links),
        "stream_id": stream_id,
        "ticket_number": row["number"] if row else None,
        "queue": row["queue"] if row else None,
        "caused_by": _cause(found, causes, links),
        "caused": caused.get(event_id, []),
    }


def _cause(e: Envelope, found: dict[str, dict[str, Any]], links: dict[str, Any]) -> dict[str, Any] | None:
    if e.causation_id is None:
        return None
    ref = found.get(e.causation_id)
    if ref is not None:
        return {**ref, "in_store": True}
    return {"event_id": e.causation_id, "in_store": False, **links.get("caused_by", {})}


async def queue_at(db: store.Db, name: str, at: datetime, page: int = 1, page_size: int = 100) -> dict[str, Any]:
    """The tickets that were in queue ``name`` at ``at``: each ticket ever put there (created
    in it or moved into it by then) folded up to ``at``, kept if it was there then."""
    at = _aware(at)
    ids = await store.streams_ever_in_queue(db, name, at)
    streams: dict[str, list[Envelope]] = {}
    for e in await vault.open(db, [e for s in (await store.read_streams(db, ids, at)).values() for e in s]):
        streams.setdefault(e.stream_id, []).append(e)
    there = [t for t in (fold(s) for s in streams.values()) if t and t.queue == name]
    there.sort(key=lambda t: (t.created_at, t.ticket_id))
    counts: dict[str, int] = {}
    for t in there:
        counts[t.state] = counts.get(t.state, 0) + 1
    items = [views.ticket_at(t) for t in there[(page - 1) * page_size : page * page_size]]
    return {
        **views.page(len(there), items, page, page_size),
        "queue": name,
        "at": at.isoformat(),
        "counts": dict(sorted(counts.items())),
        "locked": sum(1 for t in there if t.lock is not None),
    }


async def export(db: store.Db, events: EventStore, number: str) -> bytes:
    """The ticket's events as stored (personal values encrypted): each line verifies."""
    ticket_id = await store.ticket_id_by_number(db, number)
    if ticket_id is None:
        raise TicketNotFound(f"no ticket {number}")
    return b"".join(e.to_json() + b"\n" for e in await events.read_stream(ticket_id))


async def export_range(pool: asyncpg.Pool, start: datetime, end: datetime, chunk: int = 500) -> AsyncIterator[bytes]:
    """Every event that occurred in [start, end), as stored, in commit order, as JSON Lines."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        lines: list[bytes] = []
        async for row in conn.cursor(store.range_query(), _aware(start), _aware(end), prefetch=2000):
            lines.append(store.envelope_of(row).to_json() + b"\n")
            if len(lines) >= chunk:
                yield b"".join(lines)
                lines = []
        if lines:
            yield b"".join(lines)


async def report(db: store.Db, events: EventStore, number: str) -> str:
    """The ticket and its whole history as a printable HTML page."""
    ticket = await zoom(db, number)
    return render_report(ticket, await history(db, events, number, None), datetime.now(UTC))


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
