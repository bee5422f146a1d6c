"""The outbound log in PostgreSQL: claims never overlap, leases, releases, the unique key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.notify import store
from services.notify.app import MIGRATIONS
from services.notify.outbound import PURPOSE_ANSWER, PURPOSE_AUTO_REPLY, NewOutbound
from services.notify.relay import RelayConnection
from services.notify.sender import Sender
from services.notify.settings import NotifySettings
from shared.db import create_pool, migrate
from shared.envelope import new_id, utcnow


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=4)
    await migrate(pool, [MIGRATIONS])
    yield pool
    await pool.close()


def mail(n: int, *, purpose: str = PURPOSE_ANSWER, cause: str | None = None) -> NewOutbound:
    return NewOutbound(
        cause_event_id=cause or new_id(),
        purpose=purpose,
        ticket_id=f"ticket-{n}",
        correlation_id=new_id(),
        envelope_from="info@firstline.example",
        recipients=[f"customer{n}@example.org"],
        message_id=f"<m{n}@firstline.example>",
        message=b"Subject: x\r\n\r\nbody\r\n",
        requested_at=utcnow(),
        recipient_key=f"customer{n}@example.org",
    )


async def insert(pool: asyncpg.Pool, *mails: NewOutbound) -> list[int | None]:
    async with pool.acquire() as conn, conn.transaction():
        return [await store.insert_outbound(conn, m) for m in mails]


async def insert_one(pool: asyncpg.Pool, new: NewOutbound) -> int:
    [row_id] = await insert(pool, new)
    assert row_id is not None
    return row_id


async def test_one_row_per_cause_and_purpose(pool: asyncpg.Pool) -> None:
    cause = new_id()
    first, again = await insert(pool, mail(1, cause=cause), mail(1, cause=cause))
    (other_purpose,) = await insert(pool, mail(1, cause=cause, purpose=PURPOSE_AUTO_REPLY))
    assert first is not None and again is None and other_purpose is not None
    assert await pool.fetchval("select count(*) from outbound") == 2


async def test_concurrent_workers_never_claim_the_same_row(pool: asyncpg.Pool) -> None:
    await insert(pool, *(mail(n) for n in range(10)))
    async with pool.acquire() as a, pool.acquire() as b, a.transaction(), b.transaction():
        first = await store.lock_due(a, 4)
        second = await store.lock_due(b, 10)
    ids_a, ids_b = {r["id"] for r in first}, {r["id"] for r in second}
    assert len(ids_a) == 4 and len(ids_b) == 6 and not ids_a & ids_b


async def test_a_claimed_row_is_due_again_only_when_its_lease_ends(pool: asyncpg.Pool) -> None:
    row_id = await insert_one(pool, mail(1))
    async with pool.acquire() as conn, conn.transaction():
        [row] = await store.lock_due(conn, 10)
        await store.claim(conn, [row["id"]], new_id(), lease_seconds=0.5)
    async with pool.acquire() as conn, conn.transaction():
        assert await store.lock_due(conn, 10) == []
    await asyncio.sleep(0.6)
    async with pool.acquire() as conn, conn.transaction():
        [stale] = await store.lock_due(conn, 10)
    assert (stale["id"], stale["state"], stale["attempts"]) == (row_id, "sending", 1)


async def test_finish_needs_the_claim_token(pool: asyncpg.Pool) -> None:
    row_id = await insert_one(pool, mail(1))
    token, other = new_id(), new_id()
    async with pool.acquire() as conn, conn.transaction():
        await store.claim(conn, [row_id], token, lease_seconds=60)
    async with pool.acquire() as conn:
        assert not await store.finish(conn, row_id, other, state="sent", relay_response="250 ok")
        assert await store.finish(conn, row_id, token, state="sent", relay_response="250 ok")
        assert not await store.finish(conn, row_id, token, state="failed")
    assert await pool.fetchval("select state from outbound where id = $1", row_id) == "sent"


async def test_a_stopping_sender_releases_what_it_claimed(pool: asyncpg.Pool, database_url: str) -> None:
    await insert(pool, *(mail(n) for n in range(3)))
    sender = Sender(pool, NotifySettings(database_url=database_url, sender_batch_size=10))
    stop = asyncio.Event()
    stop.set()
    assert await sender.run_once(RelayConnection(sender.settings), stop) == 3
    rows = await pool.fetch("select state, attempts, claim_token from outbound")
    assert [(r["state"], r["attempts"], r["claim_token"]) for r in rows] == [("pending", 0, None)] * 3


async def test_auto_replies_are_counted_per_recipient_and_day(pool: asyncpg.Pool) -> None:
    await insert(pool, mail(1, purpose=PURPOSE_AUTO_REPLY), mail(1, purpose=PURPOSE_AUTO_REPLY), mail(2))
    now = utcnow()
    async with pool.acquire() as conn:
        since, until = now.replace(hour=0, minute=0, second=0, microsecond=0), now.replace(year=now.year + 1)
        assert await store.count_auto_replies(conn, "customer1@example.org", since, until) == 2
        assert await store.count_auto_replies(conn, "customer2@example.org", since, until) == 0
        assert await store.count_auto_replies(conn, "customer1@example.org", until, until) == 0
