"""Tickets service figures: tickets created per second from ``ticket.routed`` through the consumer,
command latency over HTTP (in-process ASGI client), queue view and list latency with many
tickets, rebuild and verify speed, time travel on a long ticket.

Runs against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts a throwaway
PostgreSQL cluster and the local broker. Prints figures; asserts nothing.

    python -m bench.tickets [--tickets 20000] [--commands 500] [--agents 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx
from aiokafka import AIOKafkaProducer

from bench.infra import local_infra
from services.tickets import store
from services.tickets.app import create_app
from services.tickets.commands import Tickets
from services.tickets.rebuild import rebuild
from services.tickets.settings import TicketsSettings
from shared.db import ensure_database
from shared.envelope import Envelope, make_envelope
from shared.events import TOPIC_TICKET_ROUTED, Address, ParsedMail, TicketRouted

QUEUES = ("Raw", "Junk", "Info-en", "Info-de", "Permissions", "Press")


def routed(i: int) -> Envelope:
    mail_id = f"bench-{i}"
    mail = ParsedMail(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        from_=Address(name=f"Customer {i}", email=f"customer{i}@example.org"),
        to=[Address(email="info@firstline.example")],
        subject=f"Question {i} about my account",
        message_id=f"<{mail_id}@example.org>",
        body_text=f"Hello, this is mail {i}. Please help me with my account and the licence.\n" * 5,
    )
    decision = TicketRouted(mail_id=mail_id, action="new", queue=QUEUES[i % 7 % len(QUEUES)], mail=mail)
    return make_envelope(decision, stream_id=mail_id, actor="system:router")


def report(label: str, figure: str) -> None:
    print(f"{label:<52}: {figure}", flush=True)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p50 = statistics.median(ordered)
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)]
    return f"p50 {p50:7.2f} ms   p99 {p99:7.2f} ms  (n={len(ordered)})"


async def timed(call: Callable[[], Awaitable[httpx.Response]], samples: list[float]) -> httpx.Response:
    started = time.perf_counter()
    response = await call()
    samples.append((time.perf_counter() - started) * 1000)
    return response


async def count(tickets: Tickets) -> int:
    return int(await tickets.pool.fetchval("select count(*) from ticket_list"))


async def bench_creation(settings: TicketsSettings, tickets: Tickets, n: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=5)
    await producer.start()
    topic = settings.topic(TOPIC_TICKET_ROUTED)
    try:
        await producer.send_and_wait(topic, routed(-1).to_json(), key=b"warmup")
        while await count(tickets) < 1:  # the consumer has joined its group
            await asyncio.sleep(0.1)
        envelopes = [routed(i) for i in range(n)]
        started = time.perf_counter()
        for e in envelopes:
            await producer.send(topic, e.to_json(), key=e.stream_id.encode())
        await producer.flush()
        while (done := await count(tickets)) < n + 1:
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        await producer.stop()
    report(
        "tickets created from ticket.routed (consumer)",
        f"{(done - 1) / elapsed:8.0f} tickets/s  ({n} in {elapsed:.1f} s)",
    )


def lock_unlock(client: httpx.AsyncClient, number: str, agent: str, samples: list[float]) -> list[Awaitable[object]]:
    headers = {"X-Actor": agent}
    return [
        timed(lambda: client.post(f"/tickets/{number}/lock", headers=headers), samples),
        timed(lambda: client.post(f"/tickets/{number}/unlock", headers=headers), samples),
    ]


async def settle(tickets: Tickets) -> None:
    """Let the relay publish what the burst left in the outbox (it runs in this process and
    would compete with the commands measured next) and refresh the planner's statistics, as
    autovacuum would."""
    while await tickets.pool.fetchval("select count(*) from outbox where published_at is null"):
        await asyncio.sleep(0.2)
    await tickets.pool.execute("analyze")


async def bench_lock_unlock(client: httpx.AsyncClient, numbers: list[str], commands: int, agents: int) -> None:
    """Sequential; then ``agents`` agents acting at random moments (one lock/unlock per agent
    per ~2 s on average: a busy team); then all of them at once, back to back (saturation)."""
    samples: list[float] = []
    for number in numbers[:commands]:
        for call in lock_unlock(client, number, "solo", samples):
            await call
    report("lock/unlock, one agent, sequential", percentiles(samples))

    samples = []
    rng = random.Random(7)

    async def working_agent(a: int) -> None:
        for number in numbers[a::agents][:10]:
            await asyncio.sleep(rng.expovariate(1 / 2.0))
            for call in lock_unlock(client, number, f"w{a}", samples):
                await call

    started = time.perf_counter()
    await asyncio.gather(*(working_agent(a) for a in range(agents)))
    rate = len(samples) / (time.perf_counter() - started)
    report(f"lock/unlock, {agents} agents working ({rate:.0f} cmd/s)", percentiles(samples))

    samples = []

    async def hammering_agent(a: int) -> None:
        for number in numbers[a::agents][10 : 10 + max(commands // agents, 1)]:
            for call in lock_unlock(client, number, f"h{a}", samples):
                await call

    started = time.perf_counter()
    await asyncio.gather(*(hammering_agent(a) for a in range(agents)))
    rate = len(samples) / (time.perf_counter() - started)
    report(f"lock/unlock, {agents} agents back to back", f"{percentiles(samples)}  {rate:.0f} cmd/s")

    samples = []

    async def answering_agent(a: int) -> None:
        body = {"body": "Thank you, done.", "next_state": "closed successful"}
        for number in numbers[a::agents][20 + commands // agents :][:5]:
            await asyncio.sleep(rng.expovariate(1 / 2.0))
            await timed(
                lambda n=number, h={"X-Actor": f"w{a}"}: client.post(f"/tickets/{n}/answer", json=body, headers=h),
                samples,
            )

    started = time.perf_counter()
    await asyncio.gather(*(answering_agent(a) for a in range(agents)))
    rate = len(samples) / (time.perf_counter() - started)
    report(f"answer, {agents} agents working ({rate:.0f} cmd/s)", percentiles(samples))


async def bench_reads(client: httpx.AsyncClient, tickets: Tickets, rounds: int = 50) -> None:
    for label in ("deltas", "compacted"):
        samples: list[float] = []
        for _ in range(rounds):
            await timed(lambda: client.get("/queues"), samples)
        rows = await tickets.pool.fetchval("select count(*) from queue_counts")
        report(f"GET /queues ({label}, {rows} count rows)", percentiles(samples))
        async with tickets.pool.acquire() as conn:
            await store.compact_counts(conn)
    for name, params in (
        ("first page of Raw, newest first", {"queues": "Raw"}),
        ("first page, all queues, open", {"queues": ",".join(QUEUES), "state": "new,open"}),
        ("page 50 of Raw by number", {"queues": "Raw", "sort": "number", "page": 50}),
        ("search 'licence' in Raw", None),
    ):
        samples = []
        for _ in range(rounds):
            if params is None:
                await timed(lambda: client.get("/search", params={"q": "licence", "queues": "Raw"}), samples)
            else:
                await timed(lambda p=params: client.get("/tickets", params=p), samples)
        report(name, percentiles(samples))


async def bench_long_ticket(client: httpx.AsyncClient, number: str, events: int) -> None:
    for i in range(events // 2):
        await client.post(f"/tickets/{number}/note", json={"body": f"note {i}"}, headers={"X-Actor": "historian"})
    zoom = (await client.get(f"/tickets/{number}")).json()
    at = datetime.now(UTC).isoformat()
    samples: list[float] = []
    for _ in range(20):
        await timed(lambda: client.get(f"/tickets/{number}/history", params={"at": at}), samples)
    report(f"time travel, ticket with {zoom['version']} events", f"{percentiles(samples)}")
    samples = []
    for _ in range(50):
        await timed(
            lambda: client.post(f"/tickets/{number}/note", json={"body": "x"}, headers={"X-Actor": "h"}), samples
        )
    report("note on that ticket (snapshot + tail)", percentiles(samples))


async def bench_rebuild_and_verify(client: httpx.AsyncClient, tickets: Tickets) -> None:
    result = await rebuild(tickets.pool)
    report(
        "rebuild: projecting the log into fresh tables",
        f"{result.events / result.bulk_seconds:8.0f} events/s  ({result.events} events in {result.bulk_seconds:.1f} s)",
    )
    report(
        "rebuild: all (+ indexes, catch-up, digests)",
        f"{result.events_per_second:8.0f} events/s  ({result.seconds:.1f} s, digests match: {result.matches})",
    )
    started = time.perf_counter()
    verdict = (await client.get("/audit/verify", timeout=600)).json()
    elapsed = time.perf_counter() - started
    events = await tickets.pool.fetchval("select count(*) from events")
    report(
        "verify every hash chain",
        f"{events / elapsed:8.0f} events/s  ({verdict['streams_checked']} streams, ok: {verdict['ok']})",
    )


async def main(n: int, commands: int, agents: int) -> None:
    with local_infra() as infra:
        dsn = infra.database()
        await ensure_database(dsn)
        settings = TicketsSettings(
            database_url=dsn,
            kafka_bootstrap_servers=infra.bootstrap,
            kafka_topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
            timer_interval_seconds=0,
            db_pool_max=20,
            log_level="WARNING",
        )
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            tickets: Tickets = app.state.tickets
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://tickets", timeout=60) as client:
                for queue in QUEUES:
                    await client.put(f"/queues/{queue}", json={"group": "users"}, headers={"X-Actor": "bench"})
                print(f"PostgreSQL {await tickets.pool.fetchval('show server_version')}, {n} tickets")
                await bench_creation(settings, tickets, n)
                await settle(tickets)
                rows = await tickets.pool.fetch("select number from ticket_list where queue = 'Raw' order by number")
                numbers = [r["number"] for r in rows]
                await bench_lock_unlock(client, numbers, commands, agents)
                await bench_reads(client, tickets)
                await bench_long_ticket(client, numbers[-1], 1000)
                await bench_rebuild_and_verify(client, tickets)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report("peak memory (RSS) of this process", f"{peak:8.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tickets", type=int, default=20000)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.tickets, args.commands, args.agents))
