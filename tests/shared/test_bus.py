"""Outbox relay and consumer runner against a real PostgreSQL and a real Kafka-protocol broker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from shared.bus import Consumer, ensure_topics
from shared.db import create_pool, migrate
from shared.devinfra import LocalBroker
from shared.envelope import Envelope, make_envelope
from shared.events import NoteAdded, WatchStarted
from shared.eventstore import EventStore
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings

pytestmark = pytest.mark.timeout(180)


def note(ticket: str, body: str) -> Envelope:
    return make_envelope(NoteAdded(ticket_id=ticket, article_id=body, body=body), stream_id=ticket, actor="t")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=10)
    await migrate(pool, [])
    await pool.execute(
        "create table seen (event_id text primary key, stream_id text, version int,"
        " handled_at timestamptz default now())"
    )
    yield pool
    await pool.close()


async def record_seen(conn: asyncpg.Connection, envelope: Envelope) -> None:
    """A handler with a database effect; a duplicate insert would fail loudly."""
    await conn.execute(
        "insert into seen (event_id, stream_id, version) values ($1, $2, $3)",
        envelope.event_id,
        envelope.stream_id,
        envelope.stream_version,
    )


@asynccontextmanager
async def running(*loops: Callable[[asyncio.Event], Awaitable[None]]) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop(stop)) for loop in loops]
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


async def wait_until(condition: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def append_notes(store: EventStore, topic: str, streams: int, per_stream: int, start: int = 0) -> int:
    for n in range(start, start + per_stream):
        for s in range(streams):
            await store.append(f"ticket-{s}", n, [note(f"ticket-{s}", f"{s}-{n}")], publish_to=topic)
    return streams * per_stream


async def read_topic(settings: ServiceSettings, topic: str, expected: int) -> list[Envelope]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    out: list[Envelope] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len({e.event_id for e in out}) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                out += [Envelope.from_json(r.value) for r in records]
    finally:
        await consumer.stop()
    return out


def assert_per_stream_order(envelopes: list[Envelope]) -> None:
    """First deliveries of each stream arrive in version order (replays may repeat)."""
    last: dict[str, int] = {}
    for e in envelopes:
        if e.stream_version > last.get(e.stream_id, 0):
            assert e.stream_version == last.get(e.stream_id, 0) + 1, f"gap in {e.stream_id}"
            last[e.stream_id] = e.stream_version


async def test_relay_crash_and_restart_publishes_everything_in_stream_order(
    pool: asyncpg.Pool, settings: ServiceSettings
) -> None:
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    store = EventStore(pool)
    total = await append_notes(store, topic, streams=8, per_stream=20)

    relay = OutboxRelay(pool, settings)
    task = asyncio.create_task(relay.run(asyncio.Event()))
    await wait_until(lambda: _published_at_least(pool, 1))
    task.cancel()  # the relay dies mid-stream
    await asyncio.gather(task, return_exceptions=True)
    # and a batch it had sent lost its "published" mark in the crash
    await pool.execute("update outbox set published_at = null where id in (select id from outbox order by id limit 7)")
    total += await append_notes(store, topic, streams=8, per_stream=5, start=20)

    async with running(OutboxRelay(pool, settings).run):
        await wait_until(lambda: _all_published(pool))
    received = await read_topic(settings, topic, total)
    assert {e.event_id for e in received} == {
        r["event_id"] for r in await pool.fetch("select event_id::text from events")
    }
    assert_per_stream_order(received)


async def test_broker_restarted_empty_everything_is_republished_and_consumers_converge(
    pool: asyncpg.Pool, settings: ServiceSettings, local_broker: LocalBroker
) -> None:
    settings = settings.model_copy(update={"kafka_bootstrap_servers": local_broker.bootstrap})
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    store = EventStore(pool)
    total = await append_notes(store, topic, streams=5, per_stream=10)
    consumer = Consumer(name="seen", topics=[topic], pool=pool, settings=settings, handler=record_seen)
    relay = OutboxRelay(pool, settings)
    async with running(relay.run, consumer.run):
        await wait_until(lambda: _count(pool, "seen", total))
        local_broker.restart_empty()  # memory broker: no topics, no offsets
        total += await append_notes(store, topic, streams=5, per_stream=3, start=10)
        await wait_until(lambda: _count(pool, "seen", total), timeout=90)

        async def broker_holds_everything() -> bool:
            received = await read_topic(settings, topic, total)
            return len({e.event_id for e in received}) == total

        await wait_until(broker_holds_everything, timeout=90)  # the relay noticed and republished
    assert await pool.fetchval("select count(*) from seen") == total  # no duplicates (primary key)


async def test_a_consumer_passes_over_types_it_has_no_use_for_and_handles_redeliveries_once(
    pool: asyncpg.Pool, settings: ServiceSettings
) -> None:
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    watched = make_envelope(WatchStarted(ticket_id="t", agent="a"), stream_id="t", actor="t")
    store = EventStore(pool)
    await store.append("t", 0, [note("t", "n-1"), watched, note("t", "n-2")], publish_to=topic)
    consumer = Consumer(
        name="notes", topics=[topic], pool=pool, settings=settings, handler=record_seen, types={"NoteAdded"}
    )
    async with running(OutboxRelay(pool, settings).run, consumer.run):
        await wait_until(lambda: _count(pool, "seen", 2))
        await pool.execute("update outbox set published_at = null")  # everything again
        await wait_until(lambda: _all_published(pool))
        await asyncio.sleep(1)
    assert await pool.fetchval("select count(*) from seen") == 2
    processed = await pool.fetch("select message_id from processed_messages order by message_id")
    assert watched.event_id not in {r["message_id"] for r in processed} and len(processed) == 2


async def _all_published(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("select count(*) from outbox where published_at is null")


async def test_handler_that_fails_then_succeeds_is_retried(pool: asyncpg.Pool, settings: ServiceSettings) -> None:
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    failures = {"left": 3}

    async def flaky(conn: asyncpg.Connection, envelope: Envelope) -> None:
        if envelope.data["body"] == "flaky" and failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionError("transient")
        await record_seen(conn, envelope)

    store = EventStore(pool)
    await store.append("t", 0, [note("t", "ok-1"), note("t", "flaky"), note("t", "ok-2")], publish_to=topic)
    consumer = Consumer(name="flaky", topics=[topic], pool=pool, settings=settings, handler=flaky)
    async with running(OutboxRelay(pool, settings).run, consumer.run):
        await wait_until(lambda: _count(pool, "seen", 3))
    assert failures["left"] == 0
    assert await read_topic(settings, f"{topic}.dlq", 0) == []


async def test_poison_message_goes_to_the_dlq_and_the_consumer_goes_on(
    pool: asyncpg.Pool, settings: ServiceSettings
) -> None:
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"{not json", key=b"t")
        await producer.send_and_wait(topic, b'{"event_id": "x", "type": "NoSuchEvent"}', key=b"t")
    finally:
        await producer.stop()
    store = EventStore(pool)
    await store.append("t", 0, [note("t", "after-poison")], publish_to=topic)
    consumer = Consumer(name="poison", topics=[topic], pool=pool, settings=settings, handler=record_seen)
    async with running(OutboxRelay(pool, settings).run, consumer.run):
        await wait_until(lambda: _count(pool, "seen", 1))
    dead = AIOKafkaConsumer(
        f"{topic}.dlq", bootstrap_servers=settings.kafka_bootstrap_servers, auto_offset_reset="earliest"
    )
    await dead.start()
    try:
        records = []
        deadline = asyncio.get_running_loop().time() + 20
        while len(records) < 2 and asyncio.get_running_loop().time() < deadline:
            for part in (await dead.getmany(timeout_ms=500)).values():
                records += part
    finally:
        await dead.stop()
    assert sorted(r.value for r in records) == sorted([b"{not json", b'{"event_id": "x", "type": "NoSuchEvent"}'])
    errors = [dict(r.headers)["dlq.error"].decode() for r in records]
    assert any("not an event envelope" in e for e in errors)


async def test_redelivered_messages_change_nothing(pool: asyncpg.Pool, settings: ServiceSettings) -> None:
    topic = settings.topic("ticket.events")
    await ensure_topics(settings, [topic])
    store = EventStore(pool)
    await store.append("t", 0, [note("t", "a"), note("t", "b")], publish_to=topic)
    first = Consumer(name="once", topics=[topic], pool=pool, settings=settings, handler=record_seen, group="g1")
    async with running(OutboxRelay(pool, settings).run, first.run):
        await wait_until(lambda: _count(pool, "seen", 2))
    # Same group, offsets rewound (as after a lost commit): the redelivery is recognised.
    await pool.execute("update outbox set published_at = null")
    again = Consumer(name="once", topics=[topic], pool=pool, settings=settings, handler=record_seen, group="g1")
    async with running(OutboxRelay(pool, settings).run, again.run):
        await wait_until(lambda: _all_published(pool))
        await asyncio.sleep(2)
    assert await pool.fetchval("select count(*) from seen") == 2


async def _count(pool: asyncpg.Pool, table: str, n: int) -> bool:
    return bool(await pool.fetchval(f"select count(*) >= $1 from {table}", n))


async def _published_at_least(pool: asyncpg.Pool, n: int) -> bool:
    return bool(await pool.fetchval("select count(*) >= $1 from outbox where published_at is not null", n))


async def _all_published(pool: asyncpg.Pool) -> bool:
    return not await pool.fetchval("select exists (select 1 from outbox where published_at is null)")


async def test_a_long_poll_is_handled_in_short_transactions(pool: asyncpg.Pool, settings: ServiceSettings) -> None:
    """Row locks and outbox rows of a transaction wait for its commit: a poll of many records
    is committed in pieces of about ``consumer_transaction_seconds``, each record once."""
    transactions: list[int] = []

    async def slow(conn: asyncpg.Connection, envelope: Envelope) -> None:
        transactions.append(await conn.fetchval("select txid_current()"))
        await asyncio.sleep(0.005)
        await record_seen(conn, envelope)

    quick = settings.model_copy(update={"consumer_transaction_seconds": 0.02})
    consumer = Consumer(name="slow", topics=["t"], pool=pool, settings=quick, handler=slow)
    records = [as_record(note("t", f"n-{i}"), offset=i) for i in range(40)]
    assert await consumer.handle_records(records)
    assert await pool.fetchval("select count(*) from seen") == 40
    assert 4 <= len(set(transactions)) < 40


def as_record(envelope: Envelope, offset: int) -> ConsumerRecord[bytes, bytes]:
    value = envelope.to_json()
    return ConsumerRecord("t", 0, offset, 0, 0, b"t", value, None, len(b"t"), len(value), [])
