"""Helpers for the router service's integration tests: events in, decisions out, the database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from services.router.settings import RouterSettings
from shared.bus import ensure_topics, make_producer
from shared.db import connect
from shared.envelope import Envelope, make_envelope
from shared.events import EventData, MailReceived, ParsedMail
from shared.settings import ServiceSettings
from tests.kafka_kit import read_topic  # noqa: F401 - re-exported for the tests


def router_settings(settings: ServiceSettings, **overrides: Any) -> RouterSettings:
    """The test's settings for the router: no tickets service to ask, a quick refresh."""
    values = {**settings.model_dump(), "tickets_url": "", "state_refresh_seconds": 0.05, **overrides}
    return RouterSettings(**values)


def mail_received(mail_id: str, mail: ParsedMail, envelope_to: Sequence[str] = ()) -> Envelope:
    event = MailReceived(
        mail_id=mail_id, sha256="0" * 64, size=len(mail.body_text), envelope_to=list(envelope_to), mail=mail
    )
    return make_envelope(event, stream_id=mail_id, actor="system:ingest")


def ticket_event(event: EventData, stream_id: str | None = None) -> Envelope:
    stream = stream_id or getattr(event, "ticket_id", None) or f"queue:{getattr(event, 'name', '')}"
    return make_envelope(event, stream_id=stream, actor="agent-1")


async def publish(settings: ServiceSettings, topic: str, envelopes: Sequence[Envelope]) -> None:
    """Put envelopes on a catalogue topic (prefixed), keyed by their stream, as a relay would."""
    real = settings.topic(topic)
    await ensure_topics(settings, [real])
    producer = make_producer(settings)
    await producer.start()
    try:
        for e in envelopes:
            headers = [("type", e.type.encode()), ("event_id", e.event_id.encode())]
            await producer.send_and_wait(real, value=e.to_json(), key=e.stream_id.encode(), headers=headers)
    finally:
        await producer.stop()


@asynccontextmanager
async def database(settings: ServiceSettings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings.database_url)
    try:
        yield conn
    finally:
        await conn.close()
