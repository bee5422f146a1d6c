"""Kafka on aiokafka: producer settings, topic creation, and the consumer runner.

The runner takes a poll's worth of records and handles them in database transactions of about
``consumer_transaction_seconds`` each, records each message id in ``processed_messages`` within
its transaction (so a redelivered message changes nothing), and commits the Kafka offsets only
after the poll's transactions committed.
A message whose handler keeps failing is retried with backoff, then sent to ``<topic>.dlq``
with the error attached; the consumer goes on with the next one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import ValidationError

from shared.envelope import Envelope
from shared.events import UnknownEventType
from shared.logs import correlation_id
from shared.metrics import CONSUMER_LAG, DLQ_MESSAGES, HANDLER_RETRIES, HANDLER_SECONDS, MESSAGES_CONSUMED
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 40 * 1024 * 1024

Handler = Callable[[asyncpg.Connection, Envelope], Awaitable[None]]


class PoisonMessage(Exception):
    """A message that can never be handled (bad JSON, unknown type, invalid data): no retry."""


_NO_RETRY = (PoisonMessage, ValidationError, UnknownEventType, orjson.JSONDecodeError)

# The database or the broker is away: nothing is wrong with the message, so it is neither
# retried to exhaustion nor dead-lettered; the batch waits (offsets uncommitted) until they return.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    KafkaError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def make_producer(settings: ServiceSettings) -> AIOKafkaProducer:
    # Idempotent producers and transactions are not used: the local broker lacks them, and
    # consumers deduplicate by event id anyway.
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        acks="all",
        linger_ms=2,
        max_request_size=MAX_MESSAGE_BYTES,
        request_timeout_ms=15000,
        client_id=settings.service_name,
    )


async def ensure_topics(settings: ServiceSettings, topics: list[str]) -> None:
    """Create topics (and their ``.dlq``) if missing; an existing topic is fine."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    try:
        names = [t for topic in topics for t in (topic, f"{topic}.dlq")]
        new = [NewTopic(n, num_partitions=settings.kafka_topic_partitions, replication_factor=1) for n in names]
        try:
            await admin.create_topics(new)
        except TopicAlreadyExistsError:
            pass
    finally:
        await admin.close()


@dataclass
class ConsumerStatus:
    running: bool = False
    assigned: int = 0
    last_poll: float = 0.0


class Consumer:
    """Runs ``handler`` for every message of ``topics`` in consumer group ``group``."""

    def __init__(
        self,
        *,
        name: str,
        topics: list[str],
        pool: asyncpg.Pool,
        settings: ServiceSettings,
        handler: Handler,
        group: str | None = None,
        types: Collection[str] | None = None,
    ) -> None:
        """``types``: the event types the handler acts on (None: all). Records of other types, by
        their ``type`` header, are passed over without decoding or an idempotency record."""
        self.name = name
        self.topics = topics
        self.pool = pool
        self.settings = settings
        self.handler = handler
        self.types = frozenset(types) if types is not None else None
        self.group = group or f"{settings.kafka_topic_prefix}{settings.service_name}.{name}"
        self.status = ConsumerStatus()
        self._consumer: AIOKafkaConsumer | None = None
        self._dlq: AIOKafkaProducer | None = None
        self._stopping = asyncio.Event()
        self._seconds_per_record = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; reconnects when the broker goes away."""
        self._stopping = stop
        while not stop.is_set():
            try:
                await self._start()
                self.status.running = True
                while not stop.is_set():
                    await self.poll_once()
            except INFRASTRUCTURE_ERRORS as exc:
                logger.warning("consumer %s: broker error, reconnecting: %s", self.name, exc)
                await _sleep_unless(stop, 1.0)
            finally:
                self.status.running = False
                await self._stop()

    async def _start(self) -> None:
        await ensure_topics(self.settings, self.topics)
        self._consumer = AIOKafkaConsumer(
            *self.topics,
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            fetch_max_bytes=MAX_MESSAGE_BYTES,
            client_id=f"{self.settings.service_name}.{self.name}",
        )
        self._dlq = make_producer(self.settings)
        await self._consumer.start()
        await self._dlq.start()

    async def _stop(self) -> None:
        """Leave the group cleanly (offsets of handled batches were already committed)."""
        for client in (self._consumer, self._dlq):
            if client is not None:
                try:
                    await client.stop()
                except KafkaError:
                    logger.debug("consumer %s: stop failed", self.name, exc_info=True)
        self._consumer = self._dlq = None

    async def poll_once(self) -> int:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_max_records)
        self.status.last_poll = time.monotonic()
        self.status.assigned = len(self._consumer.assignment())
        records = [r for part in batches.values() for r in part]
        if records:
            if not await self.handle_records(records):
                return 0  # stopping while the database was away: redelivered later
            await self._consumer.commit({tp: part[-1].offset + 1 for tp, part in batches.items() if part})
        await self._record_lag()
        return len(records)

    async def handle_records(self, records: list[ConsumerRecord]) -> bool:
        """Handle a poll's records; while the database is away, wait and try again.

        Returns False only when asked to stop before the records could be handled.
        """
        pause = 0.5
        while True:
            try:
                await self._handle_batch(records)
                return True
            except INFRASTRUCTURE_ERRORS as exc:
                logger.warning("consumer %s: infrastructure unavailable, waiting: %r", self.name, exc)
                if self._stopping.is_set():
                    return False
                await _sleep_unless(self._stopping, pause)
                pause = min(pause * 2, 10.0)

    async def _handle_batch(self, records: list[ConsumerRecord]) -> None:
        """The poll's records in short transactions, in order (see :meth:`_handle_chunk`)."""
        wanted = [r for r in records if self._wanted(r)]
        if len(wanted) < len(records):
            MESSAGES_CONSUMED.labels(self.name, "ignored").inc(len(records) - len(wanted))
        while wanted:
            size = self._chunk_size()
            await self._handle_chunk(wanted[:size])
            wanted = wanted[size:]

    def _chunk_size(self) -> int:
        """How many records fit in one transaction of about ``consumer_transaction_seconds``.

        A transaction holds the row locks of what it wrote, and its outbox rows stay unseen,
        until it commits: a poll of 500 mails in one would make an agent's command on one of
        those tickets, and the next service, wait for all 500. Measured per record, so it
        adapts to the handler and the load.
        """
        per_record = self._seconds_per_record or self.settings.consumer_transaction_seconds / 16
        budget = self.settings.consumer_transaction_seconds / per_record
        return max(1, min(int(budget), self.settings.consumer_max_records))

    async def _handle_chunk(self, records: list[ConsumerRecord]) -> None:
        """The records in one transaction; if that fails, each on its own with retries."""
        started = time.perf_counter()
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await self._handle_all(conn, [_decode(r) for r in records])
        except INFRASTRUCTURE_ERRORS:
            raise
        except Exception:
            for record in records:
                await self._handle_with_retries(record)
        elapsed = (time.perf_counter() - started) / len(records)
        self._seconds_per_record = elapsed
        for _ in records:
            HANDLER_SECONDS.labels(self.name).observe(elapsed)
        MESSAGES_CONSUMED.labels(self.name, "handled").inc(len(records))

    def _wanted(self, record: ConsumerRecord) -> bool:
        if self.types is None:
            return True
        event_type = dict(record.headers or []).get("type")
        return event_type is None or event_type.decode(errors="replace") in self.types

    async def _handle_all(self, conn: asyncpg.Connection, envelopes: list[Envelope]) -> None:
        """Record every event id in one statement, then handle those not seen before, in order."""
        first_time = {
            row[0]
            for row in await conn.fetch(
                "insert into processed_messages (consumer, message_id) select $1, unnest($2::text[])"
                " on conflict do nothing returning message_id",
                self.group,
                [e.event_id for e in envelopes],
            )
        }
        for envelope in envelopes:
            if envelope.event_id not in first_time:
                MESSAGES_CONSUMED.labels(self.name, "duplicate").inc()
                continue
            first_time.discard(envelope.event_id)  # the same event twice in one poll: once
            token = correlation_id.set(envelope.correlation_id)
            try:
                await self.handler(conn, envelope)
            finally:
                correlation_id.reset(token)

    async def _handle(self, conn: asyncpg.Connection, record: ConsumerRecord) -> None:
        await self._handle_all(conn, [_decode(record)])

    async def _handle_with_retries(self, record: ConsumerRecord) -> None:
        delay = self.settings.consumer_backoff_seconds
        for attempt in range(1, self.settings.consumer_max_attempts + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await self._handle(conn, record)
                return
            except _NO_RETRY as exc:
                await self._dead_letter(record, exc)
                return
            except INFRASTRUCTURE_ERRORS:
                raise
            except Exception as exc:
                HANDLER_RETRIES.labels(self.name).inc()
                logger.warning(
                    "consumer %s: attempt %d failed on %s[%d]@%d: %r",
                    self.name,
                    attempt,
                    record.topic,
                    record.partition,
                    record.offset,
                    exc,
                )
                if attempt == self.settings.consumer_max_attempts:
                    await self._dead_letter(record, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _dead_letter(self, record: ConsumerRecord, exc: BaseException) -> None:
        """Park the message in ``<topic>.dlq`` with the error, and never handle it again."""
        assert self._dlq is not None
        headers = list(record.headers or []) + [
            ("dlq.error", repr(exc).encode()[:2000]),
            ("dlq.traceback", "".join(traceback.format_exception(exc)).encode()[-4000:]),
            ("dlq.source", f"{record.topic}[{record.partition}]@{record.offset}".encode()),
            ("dlq.consumer", self.group.encode()),
        ]
        await self._dlq.send_and_wait(f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers)
        message_id = _message_id(record)
        await self.pool.execute(
            "insert into processed_messages (consumer, message_id) values ($1, $2) on conflict do nothing",
            self.group,
            message_id,
        )
        DLQ_MESSAGES.labels(self.name, record.topic).inc()
        logger.error("consumer %s: message %s sent to %s.dlq: %r", self.name, message_id, record.topic, exc)

    async def _record_lag(self) -> None:
        assert self._consumer is not None
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            if highwater is not None:
                position = await self._consumer.position(tp)
                CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(highwater - position, 0))

    async def lag(self) -> dict[TopicPartition, int]:
        assert self._consumer is not None
        result = {}
        for tp in self._consumer.assignment():
            end = (await self._consumer.end_offsets([tp]))[tp]
            result[tp] = end - await self._consumer.position(tp)
        return result


def _decode(record: ConsumerRecord) -> Envelope:
    if record.value is None:
        raise PoisonMessage("empty message")
    try:
        envelope = Envelope.from_json(record.value)
    except (ValidationError, orjson.JSONDecodeError) as exc:
        raise PoisonMessage(f"not an event envelope: {exc}") from exc
    envelope.payload()  # validates the data against the catalogue (raises if unknown/invalid)
    return envelope


def _message_id(record: ConsumerRecord) -> str:
    """The event id if readable, else the record's coordinates (so junk is deduplicated too)."""
    for key, value in record.headers or []:
        if key == "event_id":
            return value.decode(errors="replace")
    try:
        return str(orjson.loads(record.value or b"")["event_id"])
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return f"{record.topic}[{record.partition}]@{record.offset}"


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
