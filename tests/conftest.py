"""Test harness: real PostgreSQL and a real Kafka-protocol broker, found or started.

Order, as ARCHITECTURE.md says: ``DATABASE_URL`` / ``KAFKA_BOOTSTRAP_SERVERS`` from the
environment; else containers when a Docker engine answers; else local processes in a
temporary folder (``shared.devinfra``). Each test gets a fresh database and its own topic
prefix, so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shared.devinfra import LocalBroker, LocalPostgres, free_port
from shared.settings import ServiceSettings


def _find_corpus() -> Path:
    """The shared mail corpus: $FIRSTLINE_CORPUS, else ../shared/corpus beside the repository."""
    candidates = [
        os.environ.get("FIRSTLINE_CORPUS", ""),
        str(Path(__file__).resolve().parents[1].parent / "shared" / "corpus"),
        "/work/shared/corpus",
    ]
    for candidate in candidates:
        if candidate and Path(candidate, "MANIFEST.tsv").exists():
            return Path(candidate)
    return Path(candidates[1])


CORPUS = _find_corpus()


def _docker_available() -> bool:
    if not (os.path.exists("/var/run/docker.sock") or os.environ.get("DOCKER_HOST")):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a PostgreSQL server (its 'postgres' database) where tests may create databases."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16-alpine", driver=None) as container:
            yield container.get_connection_url()
        return
    # Not under pytest's tmp dir: that is private to the user, and the server runs as 'postgres'.
    folder = Path(tempfile.mkdtemp(prefix="firstline-pg-"))
    server = LocalPostgres(folder / "data", free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield servers
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalBroker(free_port(), tmp_path_factory.mktemp("broker") / "tansu.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def local_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of the test's own, for tests that restart it (always the local memory broker)."""
    broker = LocalBroker(free_port(), tmp_path / "tansu.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _with_database(url: str, name: str) -> str:
    base = url.rsplit("/", 1)[0]
    return f"{base}/{name}"


@contextlib.asynccontextmanager
async def fresh_database(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database on the test server (one per service, as in production); dropped after."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_with_database(pg_server, "postgres"))
    try:
        await admin.execute(f'create database "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_database(pg_server, name)
    finally:
        admin = await asyncpg.connect(_with_database(pg_server, "postgres"))
        try:
            await admin.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await admin.close()


@pytest.fixture
async def database_url(pg_server: str) -> AsyncIterator[str]:
    """A fresh, empty database for one test; dropped afterwards."""
    async with fresh_database(pg_server) as url:
        yield url


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}."


@pytest.fixture
def settings(database_url: str, kafka_bootstrap: str, topic_prefix: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="test",
        database_url=database_url,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic_prefix=topic_prefix,
        kafka_topic_partitions=2,
        consumer_backoff_seconds=0.01,
        broker_check_interval_seconds=0.5,
    )


@pytest.fixture(scope="session")
def corpus() -> Path:
    if not CORPUS.exists():
        pytest.skip(f"mail corpus not found at {CORPUS} (set FIRSTLINE_CORPUS)")
    return CORPUS


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run an app's lifespan (its service starts: migrations, relay, consumers) and give a client."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 60.0, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with the last value after ``timeout``."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        await asyncio.sleep(interval)
