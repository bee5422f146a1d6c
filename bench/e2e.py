"""End-to-end figures: mails/s from POST /mail to a ticket in the queue view, with every service running.

Starts the five services as processes (as `make dev` does) against DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS or a throwaway PostgreSQL and broker, posts N corpus mails (made unique)
to ingest, and measures how long until tickets holds them all; also the latency of single mails
at a steady rate (accepted → ticket visible), p50/p99, and each service's memory.

    python -m bench.e2e [--mails 2000] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import asyncpg
import httpx

from bench.infra import local_infra
from bench.ingest import corpus_mails, rss_mb, unique
from scripts.demo import load_demo_data
from scripts.system import SERVICE_NAMES, Ports, System
from shared.db import ensure_database
from shared.devinfra import free_port


async def count_tickets(dsn: str) -> int:
    """Mails that became an article (a new ticket, or a follow-up: corpus threads reply to each other)."""
    conn = await asyncpg.connect(dsn)
    try:
        query = "select count(*) from events where type = 'ArticleAdded' and data->>'mail_id' is not null"
        return int(await conn.fetchval(query))
    finally:
        await conn.close()


async def post_all(port: int, mails: list[bytes], n: int, tag: str, concurrency: int = 16) -> None:
    pending = list(range(n))

    async def worker(client: httpx.AsyncClient) -> None:
        while pending:
            i = pending.pop()
            (await client.post("/mail", content=unique(mails[i % len(mails)], i, tag))).raise_for_status()

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))


async def throughput(system: System, tickets_dsn: str, mails: list[bytes], n: int) -> None:
    before = await count_tickets(tickets_dsn)
    started = time.perf_counter()
    await post_all(system.ports.ingest, mails, n, f"burst-{uuid.uuid4().hex[:6]}")
    accepted = time.perf_counter() - started
    while await count_tickets(tickets_dsn) < before + n:
        await asyncio.sleep(0.2)
    total = time.perf_counter() - started
    print(f"accepted by ingest (POST /mail, 16 clients) : {n / accepted:7.0f} mails/s")
    print(f"end to end, mail → ticket (burst of {n})   : {n / total:7.0f} mails/s")


async def latency(system: System, tickets_dsn: str, mails: list[bytes], rate: int, seconds: int) -> None:
    """Post at ``rate`` mails/s; time from the 202 until the mail's article is in tickets' store."""
    conn = await asyncpg.connect(tickets_dsn)
    samples: list[float] = []
    tag = f"lat-{uuid.uuid4().hex[:6]}"
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{system.ports.ingest}", timeout=60) as client:
            waiting: dict[str, float] = {}
            next_at = time.perf_counter()
            for i in range(rate * seconds):
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += 1 / rate
                response = await client.post("/mail", content=unique(mails[i % len(mails)], i, tag))
                waiting[response.json()["mail_id"]] = time.perf_counter()
                await _collect(conn, waiting, samples)
            while waiting:
                await _collect(conn, waiting, samples)
                await asyncio.sleep(0.05)
    finally:
        await conn.close()
    ordered = sorted(samples)
    print(
        f"mail accepted → ticket stored at {rate}/s       : p50 {statistics.median(ordered):6.0f} ms"
        f"   p99 {ordered[int(len(ordered) * 0.99) - 1]:6.0f} ms"
    )


async def _collect(conn: asyncpg.Connection, waiting: dict[str, float], samples: list[float]) -> None:
    rows = await conn.fetch(
        "select data->>'mail_id' as mail_id from events where type = 'ArticleAdded' and data->>'mail_id' = any($1)",
        list(waiting),
    )
    now = time.perf_counter()
    for row in rows:
        samples.append((now - waiting.pop(row["mail_id"])) * 1000)


def main(n: int, rate: int) -> None:
    with local_infra() as infra:
        prefix = f"bench_{uuid.uuid4().hex[:6]}_"
        ports = Ports(*(free_port() for _ in range(6)))
        system = System(
            pg_base=infra.pg_base, bootstrap=infra.bootstrap, ports=ports, smtp_relay=("127.0.0.1", free_port()),
            logs=infra.folder / "logs", admin=("admin", "bench-password"), database_prefix=prefix,
            extra_env={"LOG_LEVEL": "WARNING", "CLIENT_RATE_PER_MINUTE": "1000000"},
        )  # fmt: skip
        for name in SERVICE_NAMES:
            asyncio.run(ensure_database(f"{infra.pg_base}/{prefix}{name}"))
        try:
            system.start_all()
            load_demo_data({name: ports.url(name) for name in SERVICE_NAMES})
            mails = corpus_mails()
            tickets_dsn = f"{infra.pg_base}/{prefix}tickets"
            asyncio.run(throughput(system, tickets_dsn, mails, n))
            asyncio.run(latency(system, tickets_dsn, mails, rate, seconds=10))
            for name, child in system.children.items():
                rss, peak = rss_mb(child.pid)
                print(f"memory {name:8}                              : {rss:5.0f} MB now, {peak:.0f} MB peak")
        finally:
            system.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=50)
    args = parser.parse_args()
    main(args.mails, args.rate)
