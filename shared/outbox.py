"""Transactional outbox and the relay that publishes it to Kafka.

Writers call :func:`enqueue` inside the transaction that records their events, so an event is
published if and only if it was committed. The relay publishes unpublished rows in id order
(for one stream that is its version order: a later version can only be written after the
earlier one committed), waits for the broker's acknowledgement (acks=all), then marks them.

A crash between the acknowledgement and the mark republishes a few rows: consumers are
idempotent by event id. Rows are kept after publishing because they are also the source for
republishing when the broker comes back empty. Per partition the relay keeps a witness, the
offset and event id of the first record of the last round the broker acknowledged (the first,
because the local broker reports a batch's base offset as the partition's end), and marks every
row unpublished again when either

* a round is acknowledged at or below the witness's offset (offsets only grow: the log was
  reset, e.g. a broker restarted empty that has already taken new records), or
* a periodic check finds the witness's record gone or replaced (a reset with nothing new yet).
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

Witness = tuple[int, str]  # (offset, event id) of a record the broker acknowledged


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
        self.published_offsets: dict[tuple[str, int], Witness] = {}
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
        await self._drain(loop.time() + self.settings.relay_drain_seconds)
        await self._disconnect()

    async def _drain(self, deadline: float) -> None:
        """On a graceful stop, publish what is pending (best effort, until ``deadline``): what
        the last requests committed reaches consumers now, not when a relay next runs."""
        if self.producer is None:
            return
        try:
            while await self.publish_batch() and asyncio.get_running_loop().time() < deadline:
                pass
        except INFRASTRUCTURE_ERRORS as exc:
            logger.warning("relay: outbox not drained at stop, the next relay publishes it: %r", exc)

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
        witnesses: dict[tuple[str, int], Witness] = {}
        for row, meta in zip(rows, results, strict=True):  # per partition, this round's first record
            tp = (meta.topic, meta.partition)
            if tp not in witnesses or meta.offset < witnesses[tp][0]:
                witnesses[tp] = (meta.offset, str(row["headers"].get("event_id", "")))
        reset = [tp for tp, (offset, _) in witnesses.items() if offset <= self.published_offsets.get(tp, (-1, ""))[0]]
        await self._mark_published([r["id"] for r in rows], witnesses)
        for r in rows:
            OUTBOX_PUBLISHED.labels(r["topic"]).inc()
        if reset:
            await self._republish_all(reset)
        return len(rows)

    async def _mark_published(self, ids: list[int], witnesses: dict[tuple[str, int], Witness]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("update outbox set published_at = now() where id = any($1)", ids)
            await conn.executemany(
                'insert into relay_offsets (topic, partition, "offset", event_id) values ($1, $2, $3, $4)'
                ' on conflict (topic, partition) do update set "offset" = excluded."offset",'
                ' event_id = excluded.event_id where excluded."offset" > relay_offsets."offset"',
                [(t, p, offset, event_id) for (t, p), (offset, event_id) in witnesses.items()],
            )
        for tp, witness in witnesses.items():
            if witness[0] > self.published_offsets.get(tp, (-1, ""))[0]:
                self.published_offsets[tp] = witness

    async def _load_offsets(self) -> dict[tuple[str, int], Witness]:
        rows = await self.pool.fetch('select topic, partition, "offset", event_id from relay_offsets')
        return {(r["topic"], r["partition"]): (r["offset"], r["event_id"]) for r in rows}

    async def check_broker(self) -> bool:
        """Republish everything if the broker has lost what it acknowledged. Returns True if so."""
        if not self.published_offsets:
            return False
        lost = await missing_records(self.settings, self.published_offsets)
        if not lost:
            return False
        await self._republish_all(lost)
        return True

    async def _republish_all(self, lost: list[tuple[str, int]]) -> None:
        logger.warning("relay: broker lost acknowledged messages on %s; republishing the outbox", lost)
        await ensure_topics(self.settings, sorted({t for t, _ in self.published_offsets}))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("update outbox set published_at = null where published_at is not null")
            await conn.execute("delete from relay_offsets")
        self.published_offsets = {}
        OUTBOX_REPUBLISHED.inc()


async def missing_records(
    settings: ServiceSettings, acknowledged: dict[tuple[str, int], Witness]
) -> list[tuple[str, int]]:
    """Partitions where a record the broker acknowledged to us is gone.

    ``acknowledged`` holds, per partition, a witness: the offset and event id of a record the
    broker acknowledged. The record at that offset must still be that event. Offsets alone are
    not enough: a recreated topic refills past them, and the local broker answers "latest
    offset" with the base offset of its last batch, not the high watermark.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False, auto_offset_reset="none"
    )
    await consumer.start()
    lost: list[tuple[str, int]] = []
    try:
        cluster = await consumer._client.fetch_all_metadata()  # noqa: SLF001 - every topic, fresh
        for (topic, partition), witness in acknowledged.items():
            tp = TopicPartition(topic, partition)
            if partition not in (cluster.partitions_for_topic(topic) or set()):
                lost.append((topic, partition))
            elif not await _witness_holds(consumer, tp, witness):
                lost.append((topic, partition))
    finally:
        await consumer.stop()
    return lost


async def _witness_holds(consumer: AIOKafkaConsumer, tp: TopicPartition, witness: Witness) -> bool:
    offset, event_id = witness
    consumer.assign([tp])
    consumer.seek(tp, offset)
    try:
        batch = await consumer.getmany(tp, timeout_ms=3000, max_records=1)
    except OffsetOutOfRangeError:
        return False
    records = batch.get(tp, [])
    if not records:  # nothing fetched: gone if the partition ends before it, else unknown (not lost)
        end = (await consumer.end_offsets([tp]))[tp]
        return end >= offset
    found = dict(records[0].headers or []).get("event_id", b"").decode()
    return records[0].offset == offset and (not event_id or found == event_id)


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
