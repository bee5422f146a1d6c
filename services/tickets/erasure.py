"""Erasing a customer: destroy their keys, then make every copy of their text say "[erased]".

In one transaction: the subject keys are set to null (waiting for commands that hold them, see
``privacy``); the tickets under those subjects lose their snapshots (plaintext state) and get
their read-model rows projected anew from their events, which now decrypt to "[erased]"; their
outbox rows are rewritten the same way, so a republish after a broker loss sends no personal
data. The events themselves are not touched, so every hash chain still verifies.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tickets import store
from services.tickets.commands import Tickets
from services.tickets.errors import CustomerNotFound
from services.tickets.privacy import email_digest, kids_of
from shared.envelope import Envelope


async def subjects_of(conn: store.Db, customer: str) -> list[str]:
    """``customer`` is a subject id (``cus_...``) or an email address."""
    if customer.startswith("cus_"):
        return [customer] if await store.subject_exists(conn, customer) else []
    if "@" in customer:
        return await store.subjects_of_email(conn, email_digest(customer))
    return []


async def erase(tickets: Tickets, customer: str) -> dict[str, Any]:
    async with tickets.pool.acquire() as conn, conn.transaction():
        kids = await subjects_of(conn, customer)
        if not kids:
            raise CustomerNotFound(f"no customer {customer}")
        erased = await store.erase_subjects(conn, kids)
        ticket_ids = await store.tickets_of_subjects(conn, kids)
        events = await _scrub(tickets, conn, ticket_ids, set(kids))
        numbers = await conn.fetch("select number from ticket_list where ticket_id = any($1) order by 1", ticket_ids)
    return {
        "customer": customer,
        "subjects": kids,
        "newly_erased": erased,
        "tickets": [r["number"] for r in numbers],
        "events": events,
    }


async def _scrub(tickets: Tickets, conn: asyncpg.Connection, ticket_ids: list[str], kids: set[str]) -> int:
    """Snapshots, read models and outbox of these tickets from their events as they read now."""
    await store.delete_snapshots(conn, ticket_ids)
    streams: dict[str, list[Envelope]] = {}
    touched: list[Envelope] = []
    for ticket_id in ticket_ids:
        stored = await tickets.events.read_stream(ticket_id, conn=conn)
        readable = await tickets.vault.open(conn, stored)
        streams[ticket_id] = readable
        touched += [r for s, r in zip(stored, readable, strict=True) if kids_of([s]) & kids]
    await tickets.projector.replace(conn, streams)
    await store.replace_outbox_payloads(conn, [(e.event_id, e.to_json()) for e in touched])
    return len(touched)
