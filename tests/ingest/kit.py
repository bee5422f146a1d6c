"""Helpers shared by ingest's service tests."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from services.ingest.settings import IngestSettings
from shared.envelope import Envelope
from shared.events import TOPIC_MAIL_RECEIVED, MailReceived


async def received_events(settings: IngestSettings, expected: int, timeout: float = 30) -> list[MailReceived]:
    """MailReceived events on the test's topic: waits until ``expected`` are there or ``timeout``."""
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_MAIL_RECEIVED),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        fetch_max_bytes=50_000_000,
        max_partition_fetch_bytes=50_000_000,
    )
    await consumer.start()
    events: list[MailReceived] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(events) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                events += [Envelope.from_json(r.value).payload() for r in records]  # type: ignore[misc]
    finally:
        await consumer.stop()
    return events
