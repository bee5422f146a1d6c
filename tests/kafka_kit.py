"""Reading a (prefixed) topic from its start in tests, as the services' records were published."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer

from shared.envelope import Envelope
from shared.settings import ServiceSettings


async def read_topic(
    settings: ServiceSettings, topic: str, expected: int, timeout: float = 60.0
) -> list[tuple[str, Envelope]]:
    """(key, envelope) of a topic's records from its start, once at least ``expected`` are there."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    seen: list[tuple[str, Envelope]] = []
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while len(seen) < expected and asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=300)).values():
                seen += [(r.key.decode(), Envelope.from_json(r.value)) for r in records]
    finally:
        await consumer.stop()
    return seen
