"""Helpers for notify's integration tests: a real SMTP relay (aiosmtpd on a loopback port),
publishing envelopes to ``ticket.events``, reading ``delivery.events``, building events."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from fastapi import FastAPI

from services.notify.settings import NotifySettings
from shared.bus import ensure_topics
from shared.envelope import Envelope, make_envelope
from shared.events import (
    TOPIC_DELIVERY_EVENTS,
    TOPIC_TICKET_EVENTS,
    AnswerSent,
    AutoReplyRequested,
    EventData,
    QueueConfigured,
)
from shared.settings import ServiceSettings

DOMAIN = "firstline.example"
NUMBER = "2025030410111213"


# --------------------------------------------------------------------------- the SMTP relay


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes
    at: float

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class RelayHandler:
    """Accepts mail like a relay, with scripted trouble chosen by the recipient's local part:

    * ``reject…@``: ``550 5.1.1`` to RCPT (permanent);
    * ``flaky…@``: ``451 4.3.0`` to DATA for the first ``flaky_failures`` tries of each Message-ID.
    """

    flaky_failures: int = 2
    received: list[Received] = field(default_factory=list)
    data_tries: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: SmtpEnvelope, address: str, options: list[str]
    ) -> str:
        if address.lower().startswith("reject"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        data = bytes(envelope.original_content or b"")
        message_id = str(message_from_bytes(data, policy=policy.default)["Message-ID"])
        with self.lock:
            self.data_tries[message_id] += 1
            tries = self.data_tries[message_id]
            flaky = any(r.lower().startswith("flaky") for r in envelope.rcpt_tos)
            if flaky and tries <= self.flaky_failures:
                return "451 4.3.0 Try again later"
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), data, time.time()))
            return f"250 2.0.0 Ok: queued as Q{len(self.received)}"

    def with_id(self, message_id: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.message_id == message_id]


class Relay:
    """An aiosmtpd server on 127.0.0.1:``port``, started and stopped by the test."""

    def __init__(self, port: int, handler: RelayHandler | None = None) -> None:
        self.port = port
        self.handler = handler or RelayHandler()
        self._controller: Controller | None = None

    def start(self) -> Relay:
        self._controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


# --------------------------------------------------------------------------- the broker


async def publish(settings: ServiceSettings, *envelopes: Envelope, topic: str = TOPIC_TICKET_EVENTS) -> None:
    """Send envelopes to the (prefixed) topic, keyed as tickets would key them."""
    name = settings.topic(topic)
    await ensure_topics(settings, [name])
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        for envelope in envelopes:
            key = envelope.data.get("ticket_id") or f"queue:{envelope.data.get('name')}"
            headers = [("type", envelope.type.encode()), ("event_id", envelope.event_id.encode())]
            await producer.send_and_wait(name, value=envelope.to_json(), key=key.encode(), headers=headers)
    finally:
        await producer.stop()


@dataclass
class TopicReader:
    """Everything on a topic from the beginning, read without a consumer group (no join wait)."""

    envelopes: list[Envelope] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)

    def of_type(self, event_type: type[EventData], **data: Any) -> list[Envelope]:
        return [
            e for e in self.envelopes if e.type == event_type.TYPE and all(e.data.get(k) == v for k, v in data.items())
        ]


@asynccontextmanager
async def reading(settings: ServiceSettings, topic: str = TOPIC_DELIVERY_EVENTS) -> AsyncIterator[TopicReader]:
    name = settings.topic(topic)
    await ensure_topics(settings, [name])
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    reader = TopicReader()
    partitions = [TopicPartition(name, p) for p in range(settings.kafka_topic_partitions)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)

    async def poll() -> None:
        while True:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    envelope = Envelope.from_json(record.value)
                    reader.envelopes.append(envelope)
                    reader.keys[envelope.event_id] = (record.key or b"").decode()

    task = asyncio.create_task(poll())
    try:
        yield reader
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await consumer.stop()


# --------------------------------------------------------------------------- events


def notify_settings(settings: ServiceSettings, relay_port: int, **changes: Any) -> NotifySettings:
    """Fast retries and polling for tests; the relay on ``relay_port``."""
    values: dict[str, Any] = settings.model_dump() | {
        "service_name": "notify",
        "smtp_relay_host": "127.0.0.1",
        "smtp_relay_port": relay_port,
        "smtp_timeout_seconds": 5.0,
        "smtp_backoff_seconds": 0.05,
        "smtp_backoff_max_seconds": 0.3,
        "smtp_max_attempts": 40,
        "sender_poll_seconds": 0.2,
        "smtp_connections": 2,
    }
    return NotifySettings(**(values | changes))


def envelope_of(data: EventData, *, actor: str = "alex", **kwargs: Any) -> Envelope:
    stream = getattr(data, "ticket_id", None) or f"queue:{getattr(data, 'name', '')}"
    return make_envelope(data, stream_id=stream, actor=actor, **kwargs)


def queue_configured(name: str = "Press", **changes: Any) -> QueueConfigured:
    fields: dict[str, Any] = {
        "name": name,
        "group": "press",
        "system_address": f"press@{DOMAIN}",
        "display_name": "Firstline Press Desk",
        "salutation": "Hello {{ customer_name or 'there' }},",
        "signature": "Best,\n{{ agent_name }}\n-- \nPress desk, {{ queue }}",
    }
    return QueueConfigured(**(fields | changes))


def answer_sent(ticket_id: str, article_id: str, **changes: Any) -> AnswerSent:
    fields: dict[str, Any] = {
        "ticket_id": ticket_id,
        "ticket_number": NUMBER,
        "article_id": article_id,
        "queue": "Press",
        "to": ["jane@example.org"],
        "subject": f"[Ticket#{NUMBER}] Re: Interview request",
        "body": "Yes, Tuesday at 10 works for us.",
        "message_id": f"<{article_id}@{DOMAIN}>",
        "in_reply_to": "<customer-2@example.org>",
        "references": ["<customer-1@example.org>", "<customer-2@example.org>"],
        "customer_name": "Jane Doe",
        "agent_name": "Alex Agent",
    }
    return AnswerSent(**(fields | changes))


def auto_reply_requested(ticket_id: str, to: str, **changes: Any) -> AutoReplyRequested:
    fields: dict[str, Any] = {
        "ticket_id": ticket_id,
        "ticket_number": NUMBER,
        "queue": "Press",
        "kind": "new_ticket",
        "to": to,
        "subject": "Interview request",
        "in_reply_to": f"<{ticket_id}.mail@example.org>",
    }
    return AutoReplyRequested(**(fields | changes))


# --------------------------------------------------------------------------- apps on real ports


@asynccontextmanager
async def served_on(app: FastAPI, port: int) -> AsyncIterator[str]:
    """Serve ``app`` (with its lifespan) by uvicorn on 127.0.0.1:``port``; yields its URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # pytest owns the signals
    task = asyncio.create_task(server.serve())
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("server stopped before it started")
            if time.monotonic() > deadline:
                raise AssertionError("server did not start")
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)
