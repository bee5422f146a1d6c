"""Transactional outbox and the relay that publishes it to Kafka.

Writers call :func:`enqueue` inside the transaction that records their events, so an event is
published if and only if it was committed. The relay publishes unpublished rows in id order
(for one stream that is its version order: a later version can only be written after the
earlier one committed), waits for the broker's acknowledgement (acks=all), then marks them.

A crash between the acknowledgement and the mark republishes a few rows: consumers are
idempotent by event id. Rows are kept after publishing because they are also the source for
republishing when the broker comes back empty: the relay remembers the highest offset
acknowledged per partition and, when the broker reports a lower end offset or a missing topic,
marks every row unpublished again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError, OffsetOutOfRangeError

from shared.bus import INFRASTRUCTURE_ERRORS, ensure_topics, make_producer
from shared.envelope import Envelope
from shared.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED, OUTBOX_REPUBLISHED
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)
_RELAY_LOCK = 0x46_4C_52_4C  # "FLRL": one active relay per database


async def enqueue(
    conn: asyncpg.Connection, topic: str, envelopes: Sequence[Envelope], *, key: str | None = None
) -> None:
    """Queue envelopes for publication; call inside the transaction that produced them."""
    await conn.executemany(
        "insert into outbox (topic, key, event_id, payload, headers) values ($1, $2, $3, $4, $5)",
        [
            (
                topic,
                key or e.stream_id,
                e.event_id,
                e.to_json(),
                {"type": e.type, "event_id": e.event_id, "correlation_id": e.correlation_id},
            )
            for e in envelopes
        ],
    )


class OutboxRelay:
    def __init__(self, pool: asyncpg.Pool, settings: ServiceSettings) -> None:
        self.pool = pool
        self.settings = settings
        self.producer: AIOKafkaProducer | None = None
        self.published_offsets: dict[tuple[str, int], int] = {}
        self.healthy = False

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; only the holder of the relay lock publishes."""
        async with self.pool.acquire() as lock_conn:
            while not stop.is_set():
                if await lock_conn.fetchval("select pg_try_advisory_lock($1)", _RELAY_LOCK):
                    break
                await _wait(stop, 1.0)
            try:
                await self._publish_until(stop)
            finally:
                await lock_conn.execute("select pg_advisory_unlock($1)", _RELAY_LOCK)

    async def _publish_until(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_check = 0.0
        while not stop.is_set():
            try:
                await self._connect()
                if loop.time() >= next_check:
                    await self.check_broker()
                    next_check = loop.time() + self.settings.broker_check_interval_seconds
                published = await self.publish_batch()
                self.healthy = True
                if not published:
                    await _wait(stop, self.settings.relay_interval_seconds)
            except INFRASTRUCTURE_ERRORS as exc:
                self.healthy = False
                logger.warning("relay: broker or database unavailable, retrying: %r", exc)
                await self._disconnect()
                next_check = 0.0
                await _wait(stop, 1.0)
        await self._disconnect()

    async def _connect(self) -> None:
        if self.producer is None:
            producer = make_producer(self.settings)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self.producer = producer
            self.published_offsets = await self._load_offsets()

    async def _disconnect(self) -> None:
        if self.producer is not None:
            producer, self.producer = self.producer, None
            try:
                await producer.stop()
            except KafkaError:
                logger.debug("relay: producer stop failed", exc_info=True)

    async def publish_batch(self) -> int:
        """Publish one batch of unpublished rows; returns how many were published."""
        assert self.producer is not None
        rows = await self.pool.fetch(
            "select id, topic, key, payload, headers from outbox where published_at is null order by id limit $1",
            self.settings.relay_batch_size,
        )
        OUTBOX_PENDING.set(len(rows))
        if not rows:
            return 0
        futures = [
            await self.producer.send(
                r["topic"],
                value=r["payload"],
                key=r["key"].encode(),
                headers=[(k, str(v).encode()) for k, v in r["headers"].items()],
            )
            for r in rows
        ]
        results = await asyncio.gather(*futures)
        offsets: dict[tuple[str, int], int] = {}
        for meta in results:  # per partition, the first offset of this round (see missing_records)
            tp = (meta.topic, meta.partition)
            offsets[tp] = min(offsets.get(tp, meta.offset), meta.offset)
        await self._mark_published([r["id"] for r in rows], offsets)
        for r in rows:
            OUTBOX_PUBLISHED.labels(r["topic"]).inc()
        return len(rows)

    async def _mark_published(self, ids: list[int], offsets: dict[tuple[str, int], int]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("update outbox set published_at = now() where id = any($1)", ids)
            await conn.executemany(
                'insert into relay_offsets (topic, partition, "offset") values ($1, $2, $3)'
                ' on conflict (topic, partition) do update set "offset" = greatest(relay_offsets."offset",'
                ' excluded."offset")',
                [(t, p, o) for (t, p), o in offsets.items()],
            )
        for tp, offset in offsets.items():
            self.published_offsets[tp] = max(self.published_offsets.get(tp, -1), offset)

    async def _load_offsets(self) -> dict[tuple[str, int], int]:
        rows = await self.pool.fetch('select topic, partition, "offset" from relay_offsets')
        return {(r["topic"], r["partition"]): r["offset"] for r in rows}

    async def check_broker(self) -> bool:
        """Republish everything if the broker has lost what it acknowledged. Returns True if so."""
        if not self.published_offsets:
            return False
        lost = await missing_records(self.settings, self.published_offsets)
        if not lost:
            return False
        logger.warning("relay: broker lost acknowledged messages on %s; republishing the outbox", lost)
        await ensure_topics(self.settings, sorted({t for t, _ in self.published_offsets}))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("update outbox set published_at = null where published_at is not null")
            await conn.execute("delete from relay_offsets")
        self.published_offsets = {}
        OUTBOX_REPUBLISHED.inc()
        return True


async def missing_records(settings: ServiceSettings, acknowledged: dict[tuple[str, int], int]) -> list[tuple[str, int]]:
    """Partitions where a record the broker acknowledged to us is gone.

    ``acknowledged`` holds, per partition, the first offset of the relay's latest round. A
    broker that kept its data ends after it. The local broker answers "latest offset" with
    the base offset of its last batch, which may equal that offset: then the record itself
    is fetched to tell.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, auto_offset_reset="none"
    )
    await consumer.start()
    lost: list[tuple[str, int]] = []
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001 - topics may have vanished
        for (topic, partition), offset in acknowledged.items():
            tp = TopicPartition(topic, partition)
            if partition not in (consumer.partitions_for_topic(topic) or set()):
                lost.append((topic, partition))
                continue
            end = (await consumer.end_offsets([tp]))[tp]
            if end < offset or (end == offset and not await _record_exists(consumer, tp, offset)):
                lost.append((topic, partition))
    finally:
        await consumer.stop()
    return lost


async def _record_exists(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> bool:
    consumer.assign([tp])
    consumer.seek(tp, offset)
    try:
        batch = await consumer.getmany(tp, timeout_ms=3000, max_records=1)
    except OffsetOutOfRangeError:
        return False
    return bool(batch.get(tp))


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
