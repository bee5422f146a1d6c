"""Foundation figures: event-store append throughput, relay throughput, append→consumer latency.

Runs against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts a throwaway
PostgreSQL cluster and the local broker. Prints figures; asserts nothing.

    python -m bench.foundation [--events 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime

import asyncpg

from bench.infra import local_infra
from shared.bus import Consumer, ensure_topics
from shared.db import create_pool, ensure_database, migrate
from shared.envelope import Envelope, make_envelope
from shared.events import NoteAdded
from shared.eventstore import EventStore
from shared.outbox import OutboxRelay
from shared.settings import ServiceSettings


def note(stream: str, i: int) -> Envelope:
    return make_envelope(
        NoteAdded(ticket_id=stream, article_id=str(i), body="x" * 200), stream_id=stream, actor="bench"
    )


async def bench_appends(store: EventStore, n: int) -> None:
    started = time.perf_counter()
    for i in range(n):
        await store.append(f"single-{i}", 0, [note(f"single-{i}", i)])
    single = n / (time.perf_counter() - started)

    started = time.perf_counter()
    for i in range(0, n, 50):
        await store.append(f"batch-{i}", 0, [note(f"batch-{i}", j) for j in range(50)])
    batched = n / (time.perf_counter() - started)

    async def writer(w: int) -> None:
        for i in range(n // 8):
            await store.append(f"conc-{w}-{i}", 0, [note(f"conc-{w}-{i}", i)])

    started = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(8)))
    concurrent = (n // 8 * 8) / (time.perf_counter() - started)
    print(f"append, one event per transaction, 1 connection : {single:8.0f} events/s")
    print(f"append, one event per transaction, 8 connections: {concurrent:8.0f} events/s")
    print(f"append, 50 events per transaction              : {batched:8.0f} events/s")


async def bench_relay(pool: asyncpg.Pool, settings: ServiceSettings, n: int) -> None:
    store = EventStore(pool)
    topic = settings.topic("relay-bench")
    await ensure_topics(settings, [topic])
    for i in range(0, n, 100):
        await store.append(f"relay-{i}", 0, [note(f"relay-{i}", j) for j in range(100)], publish_to=topic)
    relay = OutboxRelay(pool, settings)
    stop = asyncio.Event()
    started = time.perf_counter()
    task = asyncio.create_task(relay.run(stop))
    while await pool.fetchval("select count(*) from outbox where published_at is null"):
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    stop.set()
    await task
    print(f"relay, outbox → broker (acks=all)              : {n / elapsed:8.0f} events/s")


async def bench_latency(pool: asyncpg.Pool, settings: ServiceSettings, n: int) -> None:
    store = EventStore(pool)
    topic = settings.topic("latency-bench")
    await ensure_topics(settings, [topic])
    latencies: list[float] = []
    done = asyncio.Event()

    async def measure(conn: asyncpg.Connection, envelope: Envelope) -> None:
        latencies.append((datetime.now(UTC) - envelope.occurred_at).total_seconds() * 1000)
        if len(latencies) >= n:
            done.set()

    stop = asyncio.Event()
    consumer = Consumer(name="latency", topics=[topic], pool=pool, settings=settings, handler=measure)
    tasks = [asyncio.create_task(OutboxRelay(pool, settings).run(stop)), asyncio.create_task(consumer.run(stop))]
    await store.append("warmup", 0, [note("warmup", 0)], publish_to=topic)
    while not latencies:
        await asyncio.sleep(0.1)
    latencies.clear()
    for i in range(n):
        await store.append(f"lat-{i}", 0, [note(f"lat-{i}", i)], publish_to=topic)
        await asyncio.sleep(0.002)  # a steady stream, not one burst
    await asyncio.wait_for(done.wait(), 60)
    stop.set()
    await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    p50 = statistics.median(ordered)
    p99 = ordered[int(len(ordered) * 0.99) - 1]
    print(f"append → relay → broker → consumer handler     : p50 {p50:6.1f} ms   p99 {p99:6.1f} ms  (n={n})")


async def main(events: int) -> None:
    with local_infra() as infra:
        dsn = infra.database()
        await ensure_database(dsn)
        settings = ServiceSettings(
            database_url=dsn,
            kafka_bootstrap_servers=infra.bootstrap,
            service_name="bench",
            kafka_topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
        )
        pool = await create_pool(dsn, max_size=10)
        await migrate(pool, [])
        print(f"PostgreSQL {await pool.fetchval('show server_version')}, {events} events per figure")
        await bench_appends(EventStore(pool), events)
        await bench_relay(pool, settings, events)
        await bench_latency(pool, settings, min(events, 2000))
        await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    asyncio.run(main(parser.parse_args().events))
