"""The whole system as real processes, as `make dev` starts them, for end-to-end tests.

Each test module gets its own databases, its own broker (so a test may restart it empty) and
a real SMTP server standing in for the outbound relay, collecting what Firstline sends.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from scripts.demo import load_demo_data
from scripts.system import SERVICE_NAMES, Ports, System
from shared.db import ensure_database
from shared.devinfra import LocalBroker, free_port


@dataclass
class SmtpSink:
    """A real SMTP server that keeps every mail it is given."""

    mails: list[tuple[Envelope, EmailMessage]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
        with self.lock:
            self.mails.append((envelope, message))  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for e, m in self.mails if address in e.rcpt_tos]


@dataclass
class Running:
    system: System
    broker: LocalBroker
    sink: SmtpSink
    ports: Ports
    admin: tuple[str, str]

    def url(self, service: str) -> str:
        return self.ports.url(service)

    def login(self, username: str | None = None, password: str | None = None) -> httpx.Client:
        """An API client for the gateway, authenticated with a bearer token."""
        client = httpx.Client(base_url=self.url("gateway"), timeout=30)
        response = client.post(
            "/api/login", json={"username": username or self.admin[0], "password": password or self.admin[1]}
        )
        response.raise_for_status()
        client.headers["Authorization"] = f"Bearer {response.json()['token']}"
        return client


@pytest.fixture(scope="module")
def running(pg_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder: Path = tmp_path_factory.mktemp("e2e")
    broker = LocalBroker(free_port(), folder / "broker.log")
    broker.start()
    sink = SmtpSink()
    relay = Controller(sink, hostname="127.0.0.1", port=free_port())
    relay.start()
    ports = Ports(*(free_port() for _ in range(6)))
    system = System(
        pg_base=pg_server.rsplit("/", 1)[0],
        bootstrap=broker.bootstrap,
        ports=ports,
        smtp_relay=("127.0.0.1", relay.port),
        logs=folder / "logs",
        admin=("admin", "e2e-admin-password"),
        database_prefix=f"e2e_{uuid.uuid4().hex[:6]}_",
        extra_env={"LOG_LEVEL": "INFO", "CONSUMER_BACKOFF_SECONDS": "0.05"},
    )
    for name in SERVICE_NAMES:
        asyncio.run(ensure_database(f"{system.pg_base}/{system.database_prefix}{name}"))
    try:
        system.start_all()
        load_demo_data({name: ports.url(name) for name in SERVICE_NAMES})
        yield Running(system, broker, sink, ports, system.admin)
    finally:
        system.stop()
        relay.stop()
        broker.stop()
        print(f"e2e service logs: {system.logs}")
