"""Helpers for the tickets service tests: settings, routed-mail envelopes, Kafka in and out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.tickets.app import create_app
from services.tickets.commands import Tickets
from services.tickets.handlers import routed_handler
from services.tickets.settings import TicketsSettings
from shared.envelope import Envelope, make_envelope
from shared.events import TOPIC_TICKET_ROUTED, EventData
from shared.settings import ServiceSettings
from tests.conftest import serving
from tests.kafka_kit import read_topic  # noqa: F401 - re-exported for the tests

from .helpers import routed

ALICE = {"X-Actor": "alice"}
BOB = {"X-Actor": "bob"}


def tickets_settings(settings: ServiceSettings, **overrides: Any) -> TicketsSettings:
    values = {**settings.model_dump(), "timer_interval_seconds": 0, "snapshot_every": 5, **overrides}
    return TicketsSettings(**values)


def routed_envelope(mail_id: str, **routed_args: Any) -> Envelope:
    """The router's decision about one mail, as the router publishes it (keyed by mail id)."""
    return make_envelope(routed(mail_id, **routed_args), stream_id=mail_id, actor="system:router")


@asynccontextmanager
async def running(settings: TicketsSettings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with serving(app) as client:
        yield app, client


def tickets_of(app: FastAPI) -> Tickets:
    return app.state.tickets


async def deliver(app: FastAPI, *envelopes: Envelope) -> None:
    """Hand routed mails to the consumer's handler directly (the Kafka path is tested on its own)."""
    tickets = tickets_of(app)
    handler = routed_handler(tickets)
    async with tickets.pool.acquire() as conn, conn.transaction():
        for envelope in envelopes:
            await handler(conn, envelope)


async def new_ticket(app: FastAPI, client: httpx.AsyncClient, mail_id: str = "mail-1", **routed_args: Any) -> str:
    """Create a ticket from a routed mail; returns its number."""
    await deliver(app, routed_envelope(mail_id, **routed_args))
    found = (await client.get(f"/mails/{mail_id}")).json()
    return found["ticket_number"]


async def publish(settings: ServiceSettings, topic: str, envelopes: Sequence[Envelope], key: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for e in envelopes:
            await producer.send_and_wait(
                settings.topic(topic),
                e.to_json(),
                key=(key or e.stream_id).encode(),
                headers=[("type", e.type.encode()), ("event_id", e.event_id.encode())],
            )
    finally:
        await producer.stop()


async def publish_routed(settings: ServiceSettings, *envelopes: Envelope) -> None:
    await publish(settings, TOPIC_TICKET_ROUTED, envelopes)


def event(envelope: Envelope) -> EventData:
    return envelope.payload()
