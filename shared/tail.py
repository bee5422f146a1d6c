"""Read topics from their end without a consumer group: every reader sees every record.

For fan-out to live clients (the gateway's server-sent events). A consumer group would share
the partitions among the replicas, so each replica would see only part of the events, and a
group join costs seconds on the local broker. A tail instead assigns itself every partition,
starts at the current end, commits nothing and keeps no state outside the process. After a
broker error it resumes from the positions it had reached (or the end, if the broker lost them).

Delivery is best effort, by design: live clients refresh from the read models anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from shared.bus import MAX_MESSAGE_BYTES, ensure_topics
from shared.envelope import Envelope
from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

EnvelopeHandler = Callable[[Envelope], Awaitable[None]]


class TopicTail:
    """Tails ``topics`` (real topic names, prefix applied) and hands each envelope to a handler."""

    def __init__(self, settings: ServiceSettings, topics: list[str], *, client_id: str | None = None) -> None:
        self.settings = settings
        self.topics = topics
        self.client_id = client_id or f"{settings.service_name}.tail"
        self.ready = asyncio.Event()
        self.positions: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None

    async def run(self, stop: asyncio.Event, handle: EnvelopeHandler) -> None:
        """Tail until ``stop`` is set. ``ready`` is set once every partition sits at its end."""
        while not stop.is_set():
            try:
                await self._start()
                self.ready.set()
                while not stop.is_set():
                    await self._poll(handle)
            except (KafkaError, OSError) as exc:
                self.ready.clear()
                logger.warning("tail %s: broker error, reconnecting: %s", self.client_id, exc)
                await _sleep_unless(stop, 1.0)
            finally:
                await self._stop()

    async def _start(self) -> None:
        await ensure_topics(self.settings, self.topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
            fetch_max_bytes=MAX_MESSAGE_BYTES,
            fetch_max_wait_ms=self.settings.consumer_fetch_wait_ms,
            client_id=self.client_id,
        )
        self._consumer = consumer
        await consumer.start()
        partitions = await self._partitions(consumer)
        consumer.assign(partitions)
        fresh = [tp for tp in partitions if tp not in self.positions]
        if fresh:
            await consumer.seek_to_end(*fresh)
        for tp in partitions:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])
            else:
                self.positions[tp] = await consumer.position(tp)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> list[TopicPartition]:
        partitions: list[TopicPartition] = []
        for topic in self.topics:
            for _ in range(50):
                await consumer.topics()  # refreshes the cluster metadata
                found = consumer.partitions_for_topic(topic)
                if found:
                    partitions += [TopicPartition(topic, p) for p in sorted(found)]
                    break
                await asyncio.sleep(0.1)
            else:
                raise KafkaError(f"topic {topic} has no partitions")
        return partitions

    async def _poll(self, handle: EnvelopeHandler) -> None:
        assert self._consumer is not None
        batches = await self._consumer.getmany(timeout_ms=500, max_records=self.settings.consumer_max_records)
        for tp, records in batches.items():
            for record in records:
                envelope = _decode(record.value)
                if envelope is not None:
                    try:
                        await handle(envelope)
                    except Exception:
                        logger.exception("tail %s: handler failed on %s", self.client_id, envelope.event_id)
                self.positions[tp] = record.offset + 1

    async def _stop(self) -> None:
        if self._consumer is not None:
            try:
                await self._consumer.stop()
            except KafkaError:
                logger.debug("tail %s: stop failed", self.client_id, exc_info=True)
            self._consumer = None


def _decode(value: bytes | None) -> Envelope | None:
    if not value:
        return None
    try:
        return Envelope.from_json(value)
    except (ValidationError, orjson.JSONDecodeError):
        logger.debug("tail: skipping a record that is not an event envelope")
        return None


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass
