"""Router figures: spam quality on a held-out half of the corpus, the pure decision rate, and
decisions/s through the running service (MailReceived on the topic → TicketRouted on the topic).

Runs against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS when set, else starts a throwaway
PostgreSQL cluster and the local broker (``bench.infra``). Prints figures; asserts nothing.

    python -m bench.router [--mails 2000] [--corpus ../shared/corpus]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.infra import Infra, local_infra
from services.router.app import create_app
from services.router.classifier import Classifier
from services.router.corpus import corpus_files, parse_raw
from services.router.domain import Filter, RouterConfig, SnapshotIndex, SystemAddress, route
from services.router.handlers import RouterHandlers
from services.router.settings import RouterSettings
from services.router.state import RouterState
from services.router.train import seed
from shared.bus import ensure_topics, make_producer
from shared.db import create_pool, ensure_database
from shared.envelope import Envelope, make_envelope
from shared.events import TOPIC_MAIL_RECEIVED, TOPIC_TICKET_ROUTED, MailReceived, ParsedMail
from shared.service import Service

DEFAULT_CORPUS = Path(os.environ.get("FIRSTLINE_CORPUS") or Path(__file__).resolve().parents[2] / "shared" / "corpus")
DOMAIN = "firstline.example"
ADDRESSES = (
    SystemAddress(f"info@{DOMAIN}", "Info-en", {"de": "Info-de"}),
    SystemAddress(f"info-de@{DOMAIN}", "Info-de"),
    SystemAddress(f"permissions@{DOMAIN}", "Permissions"),
    SystemAddress(f"press@{DOMAIN}", "Press"),
)
FILTERS = (
    Filter("spam flag", {"X-Spam-Flag": "^yes"}, {"mark_spam": True, "stop": True}, position=1),
    Filter("press", {"Subject": "interview|press release"}, {"set_queue": "Press"}, position=2),
    Filter("lists", {"List-Id": "."}, {"set_priority": 2}, position=3),
)


def load_corpus(corpus: Path) -> dict[str, list[ParsedMail]]:
    return {label: [parse_raw(p.read_bytes()) for p in corpus_files(corpus / label)] for label in ("spam", "ham")}


def spam_quality(mails: dict[str, list[ParsedMail]], threshold: float) -> Classifier:
    """Train on the even-numbered mails of each folder, report on the odd-numbered ones."""
    model = Classifier()
    for label, queue in (("spam", "Junk"), ("ham", "Raw")):
        for mail in mails[label][0::2]:
            model.train(mail, queue)
    spam = [model.spam_probability(m) or 0.0 for m in mails["spam"][1::2]]
    ham = [model.spam_probability(m) or 0.0 for m in mails["ham"][1::2]]
    recall = sum(p >= threshold for p in spam) / len(spam)
    ham_in_junk = sum(p >= threshold for p in ham) / len(ham)
    print(f"spam on held-out half ({len(spam)} spam, {len(ham)} ham), threshold {threshold}:")
    print(f"  recall {recall:.4f}   ham in Junk {ham_in_junk:.4f}   (classifier only, no spam headers)")
    return model


def pure_rate(mails: list[ParsedMail], model: Classifier, n: int) -> None:
    config = RouterConfig(filters=FILTERS, system_addresses=ADDRESSES)
    index = SnapshotIndex()
    for classifier, what in ((None, "no classifier"), (model, "trained classifier")):
        started = time.perf_counter()
        for i in range(n):
            route(mails[i % len(mails)], f"m{i}", [], config, index, classifier)
        rate = n / (time.perf_counter() - started)
        print(f"route(), pure decision, {what:18}: {rate:8.0f} mails/s")


async def handler_rate(dsn: str, mails: list[ParsedMail], model: Classifier, n: int) -> None:
    """The mail handler with its database effects, batches of 500 per transaction as the consumer
    takes them, without the broker."""
    settings = RouterSettings(database_url=dsn, tickets_url="", log_level="WARNING")
    await seed(dsn, model, reason="bench")
    pool = await create_pool(dsn, max_size=4)
    service = Service(settings)
    service.pool = pool  # the handler needs only the pool
    handlers = RouterHandlers(service, RouterState(settings), settings)
    envelopes = [_received(f"handler-{i}", mails[i % len(mails)]) for i in range(n)]
    await handlers.state.refresh(pool, force=True)
    started = time.perf_counter()
    for i in range(0, n, 500):
        async with pool.acquire() as conn, conn.transaction():
            for envelope in envelopes[i : i + 500]:
                await handlers.handle_mail(conn, envelope)
    rate = n / (time.perf_counter() - started)
    await pool.close()
    print(f"mail handler with PostgreSQL, 500 per transaction, no broker: {rate:8.0f} mails/s")


async def end_to_end(dsn: str, bootstrap: str, mails: list[ParsedMail], model: Classifier, n: int) -> None:
    settings = RouterSettings(
        database_url=dsn,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic_prefix=f"b{uuid.uuid4().hex[:6]}.",
        tickets_url="",
        log_level="WARNING",
    )
    await seed(dsn, model, reason="bench")
    envelopes = [_received(f"bench-{i}", mails[i % len(mails)]) for i in range(n + 1)]
    app = create_app(settings)
    async with app.router.lifespan_context(app), _routed_counter(settings) as routed:
        await _send(settings, envelopes[:1])  # warm up: the consumer group has joined once this is routed
        await routed(1, timeout=60)
        started = time.perf_counter()
        await _send(settings, envelopes[1:])
        await routed(n + 1, timeout=600)
        elapsed = time.perf_counter() - started
    print(f"consumer end to end, {n} mails (MailReceived → TicketRouted on the topic): {n / elapsed:8.0f} mails/s")


def _received(mail_id: str, mail: ParsedMail) -> Envelope:
    event = MailReceived(mail_id=mail_id, sha256="0" * 64, size=len(mail.body_text), envelope_to=[], mail=mail)
    return make_envelope(event, stream_id=mail_id, actor="system:bench")


async def _send(settings: RouterSettings, envelopes: list[Envelope]) -> None:
    topic = settings.topic(TOPIC_MAIL_RECEIVED)
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    try:
        futures = [await producer.send(topic, value=e.to_json(), key=e.stream_id.encode()) for e in envelopes]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


@asynccontextmanager
async def _routed_counter(settings: RouterSettings) -> AsyncIterator:
    """``await routed(k)`` returns once ``k`` TicketRouted records are on the topic."""
    topic = settings.topic(TOPIC_TICKET_ROUTED)
    await ensure_topics(settings, [topic])
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    consumer.assign([TopicPartition(topic, p) for p in range(settings.kafka_topic_partitions)])
    await consumer.seek_to_beginning()
    seen = 0

    async def routed(k: int, timeout: float) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while seen < k:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {seen} of {k} decisions after {timeout}s")
            seen += sum(len(r) for r in (await consumer.getmany(timeout_ms=200)).values())

    try:
        yield routed
    finally:
        await consumer.stop()


async def main(mails_n: int, corpus: Path) -> None:
    mails = load_corpus(corpus)
    model = spam_quality(mails, RouterConfig().spam_threshold)
    everything = mails["spam"] + mails["ham"]
    pure_rate(everything, model, max(mails_n, 3000))
    with local_infra() as infra:
        async with _database(infra) as dsn:
            await handler_rate(dsn, everything, model, mails_n)
        async with _database(infra) as dsn:
            await end_to_end(dsn, infra.bootstrap, everything, model, mails_n)


@asynccontextmanager
async def _database(infra: Infra) -> AsyncIterator[str]:
    """A fresh database for one figure, dropped afterwards."""
    dsn = infra.database("bench_router")
    await ensure_database(dsn)
    try:
        yield dsn
    finally:
        admin = await asyncpg.connect(f"{infra.pg_base}/postgres")
        try:
            await admin.execute(f'drop database if exists "{dsn.rsplit("/", 1)[1]}" with (force)')
        finally:
            await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()
    asyncio.run(main(args.mails, args.corpus))
