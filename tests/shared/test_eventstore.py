"""The event store against a real PostgreSQL."""

import asyncio

import asyncpg
import pytest

from shared.db import connect, create_pool, migrate
from shared.envelope import make_envelope
from shared.events import NoteAdded
from shared.eventstore import ConcurrencyError, EventStore, Position


def note(body: str, ticket: str = "t1"):
    return make_envelope(NoteAdded(ticket_id=ticket, article_id=body, body=body), stream_id=ticket, actor="alice")


@pytest.fixture
async def store(database_url: str):
    pool = await create_pool(database_url, max_size=20)
    await migrate(pool, [])
    yield EventStore(pool)
    await pool.close()


async def test_append_and_read_back_in_order(store: EventStore) -> None:
    await store.append("t1", 0, [note("a"), note("b")])
    await store.append("t1", 2, [note("c")])
    events = await store.read_stream("t1")
    assert [e.data["body"] for e in events] == ["a", "b", "c"]
    assert [e.stream_version for e in events] == [1, 2, 3]
    assert events[0].recorded_at is not None
    assert await store.stream_version("t1") == 3


async def test_wrong_expected_version_is_a_conflict(store: EventStore) -> None:
    await store.append("t1", 0, [note("a")])
    with pytest.raises(ConcurrencyError) as caught:
        await store.append("t1", 0, [note("b")])
    assert caught.value.actual == 1 and caught.value.expected == 0
    assert len(await store.read_stream("t1")) == 1


async def test_concurrent_appends_with_the_same_expected_version_exactly_one_wins(store: EventStore) -> None:
    await store.append("t1", 0, [note("start")])

    async def attempt(i: int) -> str:
        try:
            await store.append("t1", 1, [note(f"writer-{i}")])
            return "won"
        except ConcurrencyError:
            return "conflict"

    outcomes = await asyncio.gather(*(attempt(i) for i in range(16)))
    assert outcomes.count("won") == 1
    assert outcomes.count("conflict") == 15
    events = await store.read_stream("t1")
    assert len(events) == 2
    assert await store.verify_stream("t1") is None


async def test_reader_of_all_events_never_skips_a_late_commit(store: EventStore, database_url: str) -> None:
    """A transaction that started first but commits last must still be read after the cursor."""
    slow = await connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        await store.append("slow", 0, [note("late", "slow")], conn=slow)  # uncommitted, lower id
        await store.append("fast", 0, [note("early", "fast")])  # committed, higher id
        page = await store.read_all(Position())
        assert page == [], "nothing may be returned while an older transaction is open"
        await tx.commit()
    finally:
        await slow.close()
    seen = [e.data["body"] async for e in store.iterate_all()]
    assert sorted(seen) == ["early", "late"]


async def test_cursor_resumes_and_sees_later_commits(store: EventStore) -> None:
    await store.append("a", 0, [note("1", "a")])
    page = await store.read_all()
    cursor = page[-1][0]
    await store.append("b", 0, [note("2", "b")])
    later = await store.read_all(cursor)
    assert [e.data["body"] for _, e in later] == ["2"]


async def test_snapshots_keep_the_newest(store: EventStore) -> None:
    await store.save_snapshot("t1", 5, {"title": "five"})
    await store.save_snapshot("t1", 3, {"title": "three"})
    assert await store.load_snapshot("t1") == (5, {"title": "five"})
    assert await store.load_snapshot("missing") is None


async def test_hash_chain_verification_names_an_edited_event(store: EventStore) -> None:
    await store.append("t1", 0, [note("a"), note("b"), note("c")])
    await store.append("t2", 0, [note("x", "t2")])
    assert await store.verify_all() == (2, None)
    with pytest.raises(asyncpg.RaiseError, match="append-only"):
        await store.pool.execute("update events set data = data where stream_id = 't1'")
    async with store.pool.acquire() as conn, conn.transaction():
        await conn.execute("set local firstline.allow_rewrite = 'on'")  # what a tamperer would do
        await conn.execute(
            "update events set data = jsonb_set(data, '{body}', '\"forged\"') "
            "where stream_id = 't1' and stream_version = 2"
        )
    checked, broken = await store.verify_all()
    assert broken is not None
    assert (broken.stream_id, broken.stream_version) == ("t1", 2)


async def test_outbox_row_is_written_in_the_same_transaction(store: EventStore) -> None:
    await store.append("t1", 0, [note("a")], publish_to="ticket.events")
    with pytest.raises(ConcurrencyError):
        await store.append("t1", 0, [note("b")], publish_to="ticket.events")
    rows = await store.pool.fetch("select topic, key from outbox")
    assert [(r["topic"], r["key"]) for r in rows] == [("ticket.events", "t1")]
