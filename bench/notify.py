"""Notify figures: mails/s from ``AnswerSent`` on the broker to the relay's 250, and the latency
of each mail (the event's ``occurred_at`` to the moment the relay answers DATA).

The relay is an aiosmtpd sink in its own process (so its CPU is not notify's); notify runs in
this process with its consumer, sender workers and outbox relay. Runs against DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS when set, else starts a throwaway PostgreSQL cluster and the local broker.

    python -m bench.notify [--mails 2000] [--rate 100] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from email.parser import BytesHeaderParser
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaProducer

from services.notify.app import create_app
from services.notify.settings import NotifySettings
from shared.bus import ensure_topics
from shared.db import ensure_database
from shared.devinfra import LocalBroker, LocalPostgres, free_port, wait_for_port
from shared.envelope import Envelope, make_envelope
from shared.events import TOPIC_TICKET_EVENTS, AnswerSent

# --------------------------------------------------------------------------- the sink (child process)


class SinkHandler:
    def __init__(self, out: Path) -> None:
        self.out = out.open("a", buffering=1)

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        data = envelope.original_content  # type: ignore[attr-defined]
        message_id = BytesHeaderParser().parsebytes(data)["Message-ID"]
        self.out.write(f"{message_id}\t{time.time()}\n")
        return "250 2.0.0 Ok"


def run_sink(port: int, out: Path) -> None:
    from aiosmtpd.controller import Controller

    controller = Controller(SinkHandler(out), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


# --------------------------------------------------------------------------- the driver


def answer(i: int, run: str) -> Envelope:
    article = f"{run}-{i}"
    event = AnswerSent(
        ticket_id=f"ticket-{run}-{i % 500}",
        ticket_number="2025030410111213",
        article_id=article,
        queue="Info-en",
        to=["Jane Doe <jane@example.org>"],
        subject="[Ticket#2025030410111213] Re: Question about the logo",
        body="Yes, you may use the logo.\nPlease credit the author.\n" * 5,
        message_id=f"<{article}@firstline.example>",
        in_reply_to="<customer-2@example.org>",
        references=["<customer-1@example.org>", "<customer-2@example.org>"],
        customer_name="Jane Doe",
        agent_name="Alex Agent",
    )
    return make_envelope(event, stream_id=event.ticket_id, actor="alex")


def arrivals(out: Path) -> dict[str, float]:
    lines = out.read_text().splitlines() if out.exists() else []
    return {msgid: float(at) for msgid, at in (line.split("\t") for line in lines)}


async def wait_for(out: Path, ids: set[str], timeout: float = 300) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        seen = arrivals(out)
        if ids <= seen.keys():
            return {i: seen[i] for i in ids}
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(ids & seen.keys())} of {len(ids)} mails arrived in {timeout}s")
        await asyncio.sleep(0.05)


async def run_round(
    producer: AIOKafkaProducer, topic: str, out: Path, n: int, rate: float | None
) -> tuple[float, list[float]]:
    run = uuid.uuid4().hex[:8]
    envelopes = [answer(i, run) for i in range(n)]
    ids = {f"<{run}-{i}@firstline.example>" for i in range(n)}
    started = time.time()
    published: dict[str, float] = {}

    async def publish() -> None:
        t0 = time.perf_counter()
        for i, envelope in enumerate(envelopes):
            if rate:
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            published[f"<{run}-{i}@firstline.example>"] = time.time()
            await producer.send(topic, value=envelope.to_json(), key=envelope.stream_id.encode())
        await producer.flush()

    await publish()
    arrived = await wait_for(out, ids)
    elapsed = max(arrived.values()) - started
    latencies = sorted((arrived[i] - published[i]) * 1000 for i in ids)
    return n / elapsed, latencies


def percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, int(len(ordered) * p) - 1))]


async def bench(settings: NotifySettings, out: Path, mails: int, rate: float) -> None:
    topic = settings.topic(TOPIC_TICKET_EVENTS)
    await ensure_topics(settings, [topic])
    app = create_app(settings)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all", linger_ms=2)
    await producer.start()
    try:
        async with app.router.lifespan_context(app):
            await run_round(producer, topic, out, 1, None)  # consumer group joined, connections open
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            throughput, burst = await run_round(producer, topic, out, mails, None)
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            _, paced = await run_round(producer, topic, out, min(mails, int(rate * 10)), rate)
    finally:
        await producer.stop()
    cpu_ms = ((cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)) * 1000 / mails
    report(f"burst of {mails}, AnswerSent → relay 250", f"{throughput:7.0f} mails/s, {cpu_ms:.2f} ms CPU/mail here")
    report("  latency within the burst (queueing)", latencies(burst))
    report(f"paced at {rate:.0f} mails/s (n={len(paced)})", latencies(paced))


def latencies(ordered: list[float]) -> str:
    return f"p50 {statistics.median(ordered):7.1f} ms   p99 {percentile(ordered, 0.99):7.1f} ms"


def report(what: str, figures: str) -> None:
    print(f"{what:<44}: {figures}", flush=True)


async def drop_database(dsn: str) -> None:
    base, _, name = dsn.rpartition("/")
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


async def main(mails: int, rate: float, connections: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="firstline-bench-notify-"))
    pg = broker = sink = None
    try:
        base_url = os.environ.get("DATABASE_URL")
        if not base_url:
            pg = LocalPostgres(folder / "data", free_port())
            pg.start()
            base_url = pg.url
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = LocalBroker(free_port(), folder / "tansu.log")
            broker.start()
            bootstrap = broker.bootstrap
        port, out = free_port(), folder / "arrivals.tsv"
        sink = subprocess.Popen([sys.executable, "-m", "bench.notify", "--sink", str(port), str(out)])
        wait_for_port(port)
        dsn = f"{base_url.rsplit('/', 1)[0]}/bench_notify_{uuid.uuid4().hex[:8]}"
        await ensure_database(dsn)
        settings = NotifySettings(
            database_url=dsn,
            kafka_bootstrap_servers=bootstrap,
            kafka_topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
            smtp_relay_port=port,
            smtp_connections=connections,
            log_level="WARNING",
        )
        batch = settings.sender_batch_size
        print(f"notify: {connections} relay connections, claim batch {batch}; the sink runs in its own process")
        try:
            await bench(settings, out, mails, rate)
        finally:
            await drop_database(dsn)
    finally:
        if sink:
            sink.terminate()
            sink.wait(10)
        if broker:
            broker.stop()
        if pg:
            pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=100.0, help="mails/s of the paced latency round")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--sink", nargs=2, metavar=("PORT", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        run_sink(int(args.sink[0]), Path(args.sink[1]))
    else:
        asyncio.run(main(args.mails, args.rate, args.connections))
