"""Gateway test harness: the real gateway app on a fresh database and the real broker.

``gateway`` runs it in-process (``serving``); ``served`` runs an app with uvicorn on a loopback
port, for streamed answers (server-sent events) and for the real tickets service. Internal
services that a test does not start point at a closed port, so a call to them is a 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.gateway.app import create_app
from services.gateway.security import CSRF_COOKIE, CSRF_HEADER
from services.gateway.settings import GatewaySettings
from shared.bus import ensure_topics, make_producer
from shared.devinfra import free_port
from shared.envelope import Envelope, make_envelope
from shared.events import EventData, QueueConfigured
from shared.settings import ServiceSettings
from tests.conftest import eventually, fresh_database

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "volunteer-pass-1"


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


def gateway_settings(settings: ServiceSettings, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {
        **settings.model_dump(),
        "service_name": "gateway",
        "firstline_admin_user": ADMIN,
        "firstline_admin_password": ADMIN_PASSWORD,
        # Cheap hashing keeps the suite fast; the production parameters are tested in phase 1.
        "argon2_time_cost": 1,
        "argon2_memory_kib": 8,
        "argon2_parallelism": 1,
        "tickets_url": closed_url(),
        "router_url": closed_url(),
        "ingest_url": closed_url(),
        "notify_url": closed_url(),
        "upstream_connect_timeout_seconds": 1.0,
        "sse_heartbeat_seconds": 0.5,
    }
    values.update(overrides)
    return GatewaySettings(**values)


def wide_settings(database_url: str, kafka_bootstrap: str, topic_prefix: str | None = None) -> ServiceSettings:
    """What the ``settings`` fixture gives, for fixtures wider than one test."""
    return ServiceSettings(
        service_name="test",
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=topic_prefix or f"t{uuid.uuid4().hex[:8]}.",
        kafka_topic_partitions=2,
        consumer_backoff_seconds=0.01,
        broker_check_interval_seconds=0.5,
    )


@dataclass
class RunningGateway:
    app: FastAPI
    settings: GatewaySettings
    queues_configured: bool = False


@pytest.fixture(scope="module")
async def running_gateway(pg_server: str, kafka_bootstrap: str) -> AsyncIterator[RunningGateway]:
    """One gateway per test module (its own database and topics).

    Stopping a service whose consumer is still joining its group takes the local broker ~5 s,
    so the tests of a module share the app; each uses its own agents and its own client.
    """
    async with fresh_database(pg_server) as url:
        gw = gateway_settings(wide_settings(url, kafka_bootstrap))
        app = create_app(gw)
        async with app.router.lifespan_context(app):
            yield RunningGateway(app, gw)


@pytest.fixture
def gw_settings(running_gateway: RunningGateway) -> GatewaySettings:
    return running_gateway.settings


@pytest.fixture
async def gateway(running_gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh browser (empty cookie jar) on the module's gateway."""
    transport = httpx.ASGITransport(app=running_gateway.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def other_client(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A second browser (its own cookie jar) on the same in-process app."""
    return httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))


async def login(client: httpx.AsyncClient, username: str = ADMIN, password: str = ADMIN_PASSWORD) -> str:
    """Log in (the client keeps the cookies); returns the bearer token."""
    response = await client.post("/api/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def csrf(client: httpx.AsyncClient) -> dict[str, str]:
    return {CSRF_HEADER: client.cookies.get(CSRF_COOKIE) or ""}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_agent(
    admin: httpx.AsyncClient, username: str, permissions: dict[str, list[str]], **fields: Any
) -> dict[str, Any]:
    body = {"username": username, "password": PASSWORD, "permissions": permissions, **fields}
    response = await admin.post("/api/admin/agents", json=body, headers=csrf(admin))
    assert response.status_code == 201, response.text
    return dict(response.json())


@contextlib.asynccontextmanager
async def agent_client(
    admin: httpx.AsyncClient, username: str, permissions: dict[str, list[str]]
) -> AsyncIterator[httpx.AsyncClient]:
    """A new agent with those per-queue permissions, logged in in a browser of its own."""
    await create_agent(admin, username, permissions)
    async with other_client(admin) as client:
        await login(client, username, PASSWORD)
        yield client


# --------------------------------------------------------------------------- the broker


async def publish(settings: ServiceSettings, topic: str, envelopes: list[Envelope], key: str | None = None) -> None:
    """Put events on a catalogue topic, as the service that owns them would."""
    real = settings.topic(topic)
    await ensure_topics(settings, [real])
    producer = make_producer(settings)
    await producer.start()
    try:
        for envelope in envelopes:
            record_key = key or str(envelope.data.get("ticket_id") or envelope.stream_id)
            await producer.send_and_wait(
                real, envelope.to_json(), key=record_key.encode(), headers=[("event_id", envelope.event_id.encode())]
            )
    finally:
        await producer.stop()


def envelope(data: EventData, stream_id: str, actor: str = "tester") -> Envelope:
    return make_envelope(data, stream_id=stream_id, actor=actor)


async def configure_queues(settings: ServiceSettings, admin: httpx.AsyncClient, groups: dict[str, str]) -> None:
    """Publish QueueConfigured for each queue and wait until the gateway's consumer has them."""
    events = [envelope(QueueConfigured(name=name, group=group), f"queue:{name}") for name, group in groups.items()]
    await publish(settings, "ticket.events", events)

    async def known() -> bool:
        me = (await admin.get("/api/me")).json()
        return set(groups) <= set(me["permissions"])

    await eventually(known, timeout=90)


# --------------------------------------------------------------------------- apps on real ports


@dataclass
class Served:
    app: FastAPI
    url: str


@contextlib.asynccontextmanager
async def served(app: FastAPI, *, lifespan: bool = True) -> AsyncIterator[Served]:
    """Serve ``app`` with uvicorn on a free loopback port until the block ends.

    ``lifespan=False`` serves an app whose lifespan already runs (e.g. the module's gateway).
    """
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on" if lifespan else "off"
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # pytest owns the signals
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: _started(server, task), timeout=60, interval=0.05)
        yield Served(app, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=60)


async def _started(server: uvicorn.Server, task: asyncio.Task[None]) -> bool:
    if task.done():
        task.result()  # raises what made it stop
        raise AssertionError("server stopped before it started")
    return bool(server.started)
