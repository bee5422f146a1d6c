"""Faults, bounded and on loopback only: the system keeps every accepted mail through each of them.

Each scenario runs the five services as processes with a PostgreSQL cluster and a broker of its
own, posts mails to ingest while the fault happens, waits until the system settles, and checks
the one rule that matters: every mail that got a 202 is exactly one article on exactly one ticket.

    python -m bench.faults [--mails 2000]     # prints a table of faults and outcomes

`tests/e2e/test_faults.py` runs the same scenarios with fewer mails and asserts the outcome.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from scripts.demo import load_demo_data
from scripts.system import SERVICE_NAMES, Ports, System
from shared.db import ensure_database
from shared.devinfra import LocalBroker, LocalPostgres, free_port
from shared.events import TOPIC_MAIL_RECEIVED, TOPIC_TICKET_EVENTS, TOPIC_TICKET_ROUTED

MAIL = (
    "From: Customer {n} <customer{n}@customer.example>\r\nTo: info@firstline.example\r\n"
    "Subject: Fault run {tag} mail {n}\r\nMessage-ID: <{tag}.{n}@customer.example>\r\n\r\n"
    "Hello, this is mail {n} of run {tag}. Could you help me with my account?\r\n"
)


@dataclass
class Cluster:
    folder: Path
    pg: LocalPostgres
    broker: LocalBroker
    system: System

    def tickets_dsn(self) -> str:
        return self.pg.url_for(f"{self.system.database_prefix}tickets")


@dataclass
class Outcome:
    scenario: str
    accepted: int
    settled_s: float
    missing: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    dead_lettered: int = 0
    notes: str = ""

    @property
    def ok(self) -> bool:
        return not self.missing and not self.duplicated


@contextmanager
def cluster() -> Iterator[Cluster]:
    folder = Path(tempfile.mkdtemp(prefix="firstline-faults-"))
    pg = LocalPostgres(folder / "data", free_port())  # folder becomes the server user's
    pg.start()
    broker = LocalBroker(free_port(), folder / "broker.log")
    broker.start()
    ports = Ports(*(free_port() for _ in range(6)))
    system = System(
        pg_base=pg.url.rsplit("/", 1)[0], bootstrap=broker.bootstrap, ports=ports,
        smtp_relay=("127.0.0.1", free_port()), logs=folder / "logs", admin=("admin", "faults-password"),
        extra_env={"LOG_LEVEL": "WARNING", "CLIENT_RATE_PER_MINUTE": "1000000", "CONSUMER_BACKOFF_SECONDS": "0.05"},
    )  # fmt: skip
    try:
        for name in SERVICE_NAMES:
            asyncio.run(ensure_database(f"{system.pg_base}/{system.database_prefix}{name}"))
        system.start_all()
        load_demo_data({name: ports.url(name) for name in SERVICE_NAMES})
        yield Cluster(folder, pg, broker, system)
    finally:
        system.stop()
        broker.stop()
        pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


class Poster:
    """Posts mails at a steady rate in a thread, retrying until each gets its 202 (or gives up)."""

    def __init__(self, port: int, count: int, rate: float) -> None:
        self.port, self.count, self.rate = port, count, rate
        self.tag = uuid.uuid4().hex[:8]
        self.accepted: list[str] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Poster:
        self._thread.start()
        return self

    def join(self, timeout: float = 600) -> list[str]:
        self._thread.join(timeout)
        return self.accepted

    def _run(self) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10) as client:
            for n in range(self.count):
                self._post_one(client, MAIL.format(n=n, tag=self.tag).encode())
                time.sleep(1 / self.rate)

    def _post_one(self, client: httpx.Client, raw: bytes) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                response = client.post("/mail", content=raw)
                if response.status_code == 202:
                    self.accepted.append(response.json()["mail_id"])
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)  # ingest is down or its database is: the client tries again, as MTAs do


async def article_counts(dsn: str, mail_ids: list[str]) -> dict[str, int]:
    """How many ArticleAdded events each mail has across every ticket stream (the log is the truth)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "select data->>'mail_id' as mail_id, count(*) as n from events"
            " where type = 'ArticleAdded' and data->>'mail_id' = any($1) group by 1",
            mail_ids,
        )
    finally:
        await conn.close()
    return {r["mail_id"]: r["n"] for r in rows}


def settle(c: Cluster, scenario: str, mail_ids: list[str], started: float, timeout: float = 240) -> Outcome:
    deadline = time.monotonic() + timeout
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        try:
            counts = asyncio.run(article_counts(c.tickets_dsn(), mail_ids))
        except (OSError, asyncpg.PostgresError):
            counts = {}
        if len(counts) == len(set(mail_ids)):
            break
        time.sleep(1)
    return Outcome(
        scenario=scenario,
        accepted=len(mail_ids),
        settled_s=time.monotonic() - started,
        missing=[m for m in mail_ids if m not in counts],
        duplicated=[m for m, n in counts.items() if n > 1],
    )


def restart_each_service_with_kill_9(c: Cluster, mails: int, rate: float) -> Outcome:
    started = time.monotonic()
    poster = Poster(c.system.ports.ingest, mails, rate).start()
    for name in SERVICE_NAMES:
        time.sleep(random.uniform(0.5, 2.0))
        c.system.kill(name)
        c.system.start(name)
        c.system.wait_healthy(name)
    return settle(c, "kill -9 each service in turn", poster.join(), started)


def restart_broker_empty(c: Cluster, mails: int, rate: float) -> Outcome:
    started = time.monotonic()
    poster = Poster(c.system.ports.ingest, mails, rate).start()
    time.sleep(mails / rate / 2)
    c.broker.restart_empty()
    return settle(c, "broker restarted empty mid-run", poster.join(), started, timeout=300)


def stop_postgres(c: Cluster, mails: int, rate: float, seconds: float = 10) -> Outcome:
    started = time.monotonic()
    poster = Poster(c.system.ports.ingest, mails, rate).start()
    time.sleep(mails / rate / 3)
    c.pg.stop("fast")
    time.sleep(seconds)
    c.pg.start()
    outcome = settle(c, f"PostgreSQL stopped for {seconds:.0f} s", poster.join(), started, timeout=300)
    outcome.notes = f"services alive afterwards: {', '.join(n for n in SERVICE_NAMES if n not in c.system.dead())}"
    return outcome


def poison_messages(c: Cluster, mails: int, rate: float, poison: int = 50) -> Outcome:
    started = time.monotonic()
    asyncio.run(_send_poison(c.broker.bootstrap, poison))
    accepted = Poster(c.system.ports.ingest, mails, rate).start().join()
    outcome = settle(c, f"{poison} poison messages on each consumed topic", accepted, started)
    outcome.dead_lettered = asyncio.run(_count_dlq(c.broker.bootstrap))
    return outcome


async def _send_poison(bootstrap: str, count: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic in (TOPIC_MAIL_RECEIVED, TOPIC_TICKET_ROUTED, TOPIC_TICKET_EVENTS):
            for n in range(count):
                junk = random.choice([b"{not json", b'{"event_id": "x", "type": "Nope"}', bytes([n % 256]) * 40])
                await producer.send_and_wait(topic, junk, key=f"poison-{n}".encode())
    finally:
        await producer.stop()


async def _count_dlq(bootstrap: str) -> int:
    from aiokafka import AIOKafkaConsumer

    topics = [f"{t}.dlq" for t in (TOPIC_MAIL_RECEIVED, TOPIC_TICKET_ROUTED, TOPIC_TICKET_EVENTS)]
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    total = 0
    try:
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=500)
            total += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return total


SCENARIOS: list[Callable[[Cluster, int, float], Outcome]] = [
    restart_each_service_with_kill_9,
    restart_broker_empty,
    stop_postgres,
    poison_messages,
]


def print_table(outcomes: list[Outcome]) -> None:
    print(f"| {'fault':44} | accepted | missing | duplicated | DLQ | settled | result |")
    print(f"|{'-' * 46}|---------:|--------:|-----------:|----:|--------:|--------|")
    for o in outcomes:
        print(
            f"| {o.scenario:44} | {o.accepted:8} | {len(o.missing):7} | {len(o.duplicated):10} | {o.dead_lettered:3} |"
            f" {o.settled_s:6.0f}s | {'ok' if o.ok else 'LOST' if o.missing else 'DUPLICATED'} |"
        )


def main(mails: int, rate: float) -> None:
    outcomes = []
    for scenario in SCENARIOS:
        with cluster() as c:
            outcomes.append(scenario(c, mails, rate))
    print_table(outcomes)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100)
    args = parser.parse_args()
    main(args.mails, args.rate)
