"""SQL for ingest's raw mail store."""

from __future__ import annotations

from typing import Any

import asyncpg


async def insert_raw(conn: asyncpg.Connection, row: dict[str, Any]) -> bool:
    """Store a raw mail; False when the same bytes (sha256) were stored before."""
    inserted = await conn.fetchval(
        "insert into raw_mails (mail_id, sha256, size, raw, source, envelope_from, envelope_to, flags, defects)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8, $9) on conflict (sha256) do nothing returning true",
        row["mail_id"], row["sha256"], row["size"], row["raw"], row["source"],
        row["envelope_from"], row["envelope_to"], row["flags"], row["defects"],
    )  # fmt: skip
    return bool(inserted)


async def mail_id_by_sha256(conn: asyncpg.Connection | asyncpg.Pool, sha256: str) -> str | None:
    return await conn.fetchval("select mail_id from raw_mails where sha256 = $1", sha256)


async def mail_summary(pool: asyncpg.Pool, mail_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow(
        "select mail_id, sha256, size, source, envelope_from, envelope_to, received_at, flags, defects"
        " from raw_mails where mail_id = $1",
        mail_id,
    )


async def raw_bytes(pool: asyncpg.Pool, mail_id: str) -> bytes | None:
    return await pool.fetchval("select raw from raw_mails where mail_id = $1", mail_id)
