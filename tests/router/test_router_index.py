"""The router's ticket index as its handlers build it from ticket.events, and the decisions it
leads to: handlers called directly on a real PostgreSQL (no broker, so fast)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.router.app import MIGRATIONS
from services.router.handlers import RouterHandlers
from services.router.state import RouterState
from shared.db import create_pool, migrate
from shared.envelope import Envelope, new_id
from shared.events import (
    ArticleAdded,
    EventData,
    QueueConfigured,
    StateChanged,
    TicketCreated,
    TicketMerged,
    TicketRouted,
    TicketUnmerged,
)
from shared.service import Service
from shared.settings import ServiceSettings
from shared.ticket_numbers import format_ticket_number
from tests.router.router_mailkit import make_mail
from tests.router.router_servicekit import mail_received, router_settings, ticket_event

A, B = new_id(), new_id()
NUMBER_A = format_ticket_number(date(2026, 5, 4), 10, 1)
NUMBER_B = format_ticket_number(date(2026, 5, 4), 10, 2)


@pytest.fixture
async def handlers(database_url: str, settings: ServiceSettings) -> AsyncIterator[tuple[RouterHandlers, asyncpg.Pool]]:
    pool = await create_pool(database_url, max_size=4)
    await migrate(pool, [MIGRATIONS])
    rsettings = router_settings(settings)
    service = Service(rsettings, migrations=MIGRATIONS)
    service.pool = pool  # the handlers only need the pool; no consumers, no relay
    yield RouterHandlers(service, RouterState(rsettings), rsettings), pool
    await pool.close()


async def feed(pool: asyncpg.Pool, handlers: RouterHandlers, *events: EventData) -> None:
    async with pool.acquire() as conn, conn.transaction():
        for event in events:
            await handlers.handle_ticket_event(conn, ticket_event(event))


async def route_mail(
    pool: asyncpg.Pool, handlers: RouterHandlers, envelope: Envelope
) -> tuple[str, TicketRouted] | None:
    async with pool.acquire() as conn, conn.transaction():
        await handlers.handle_mail(conn, envelope)
    row = await pool.fetchrow(
        "select key, payload from outbox o join routing_decisions d on d.event_id = o.event_id where d.mail_id = $1",
        envelope.payload().mail_id,
    )
    return (row["key"], Envelope.from_json(row["payload"]).payload()) if row else None


async def test_merges_policies_and_redelivery(handlers) -> None:
    h, pool = handlers
    await feed(
        pool,
        h,
        QueueConfigured(name="Permissions", group="permissions", follow_up_policy="reject"),
        TicketCreated(ticket_id=A, ticket_number=NUMBER_A, title="a", queue="Permissions", customer_email="a@x.org"),
        TicketCreated(ticket_id=B, ticket_number=NUMBER_B, title="b", queue="Info-en", customer_email="b@x.org"),
        ArticleAdded(ticket_id=A, article_id="1", message_id="<m1@x.org>", **{"from": "Alice <Alice@X.org>"}),
        TicketMerged(ticket_id=A, into_ticket_id=B, into_ticket_number=NUMBER_B),
        StateChanged(ticket_id=A, from_state="new", to_state="merged"),
    )
    participants = {
        r["email"] for r in await pool.fetch("select email from router_participants where ticket_id = $1", A)
    }
    assert participants == {"a@x.org", "alice@x.org"}

    key, merged = await route_mail(pool, h, mail_received("m-1", make_mail("Re: hi", in_reply_to="<m1@x.org>")))
    assert (merged.action, merged.ticket_number, key) == ("follow_up", NUMBER_B, B)
    assert any(r.step == "merge" and NUMBER_B in r.detail for r in merged.reasons)

    await feed(
        pool,
        h,
        TicketUnmerged(ticket_id=A, from_ticket_id=B),
        StateChanged(ticket_id=A, from_state="merged", to_state="closed successful"),
    )
    key, rejected = await route_mail(pool, h, mail_received("m-2", make_mail(f"Re: [Ticket#{NUMBER_A}]")))
    assert (rejected.action, rejected.ticket_number, rejected.queue, key) == ("reject", NUMBER_A, "Permissions", A)
    assert rejected.sender_not_on_ticket  # alice@example.org is not on it

    again = mail_received("m-2", make_mail("something else entirely"))
    await route_mail(pool, h, again)
    assert await pool.fetchval("select count(*) from outbox where key = $1", A) == 1
    assert await pool.fetchval("select action from routing_decisions where mail_id = 'm-2'") == "reject"
    assert await pool.fetchval("select count(*) from learning_mails") == 0  # follow-ups teach nothing
