"""PostgreSQL access: a connection pool and versioned SQL migrations applied at start.

Migrations are plain ``NNN_name.sql`` files. The shared library's own (event store, outbox,
processed messages) live in ``shared/migrations``; each service adds a folder of its own. Every
file runs once, in order, inside a transaction, recorded in ``schema_migrations``; an advisory
lock lets several replicas start at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import asyncpg
import orjson

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x46_4C_4D_49  # "FLMI"

logger = logging.getLogger(__name__)


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name, encoder=lambda v: orjson.dumps(v).decode(), decoder=orjson.loads, schema="pg_catalog"
        )


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, init=_init_connection)
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """A single connection with the same JSON codecs as the pool's."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


def _migration_files(folders: list[Path]) -> list[tuple[str, Path]]:
    files: list[tuple[str, Path]] = []
    for folder in folders:
        scope = "shared" if folder == SHARED_MIGRATIONS else folder.parent.name
        files += [(f"{scope}/{path.name}", path) for path in sorted(folder.glob("*.sql"))]
    return files


async def migrate(pool: asyncpg.Pool, folders: list[Path]) -> list[str]:
    """Apply the shared migrations and then each folder's, once each. Returns what was applied."""
    applied: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("select pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                "create table if not exists schema_migrations"
                " (name text primary key, applied_at timestamptz not null default now())"
            )
            done = {r["name"] for r in await conn.fetch("select name from schema_migrations")}
            for name, path in _migration_files([SHARED_MIGRATIONS, *folders]):
                if name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text())
                    await conn.execute("insert into schema_migrations(name) values ($1)", name)
                applied.append(name)
                logger.info("migration applied: %s", name)
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _MIGRATION_LOCK)
    return applied


async def ensure_database(dsn: str) -> None:
    """Create the database named in ``dsn`` if it does not exist (dev and tests)."""
    base, _, name = dsn.rpartition("/")
    name = name.split("?")[0]
    conn = await asyncpg.connect(f"{base}/postgres")
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
