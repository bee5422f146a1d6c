"""SQL for ingest's raw mail store and its mailbox bookkeeping."""

from __future__ import annotations

from typing import Any

import asyncpg

from shared.envelope import Envelope

# One statement stores the raw bytes, the MailReceived event and its outbox row, or nothing when
# the same bytes (sha256) are stored already. A single statement is atomic on its own, so this is
# one round trip instead of a transaction's seven (begin, insert, stream head, event, outbox,
# commit and a dedupe lookup); at hundreds of mails a second that is most of the database cost.
# It writes the event as shared.eventstore would for a new stream: version 1 after the genesis
# hash, which holds because every mail id is new.
_STORE_MAIL = """
with raw as (
    insert into raw_mails (mail_id, sha256, size, raw, source, envelope_from, envelope_to, flags, defects)
    values ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9::jsonb)
    on conflict (sha256) do nothing
    returning mail_id
), event as (
    insert into events (event_id, type, schema_version, stream_id, stream_version, occurred_at, recorded_at,
                        correlation_id, causation_id, actor, data, prev_hash, hash)
    select $10::uuid, $11, $12, mail_id, $13, $14::timestamptz, now(), $15, $16, $17, $18::jsonb, $19, $20
    from raw
    returning event_id
)
insert into outbox (topic, key, event_id, payload, headers)
select $21, $1, event_id, $22::bytea, $23::jsonb from event
returning true
"""


def _event_args(envelope: Envelope) -> tuple[Any, ...]:
    return (
        envelope.event_id, envelope.type, envelope.schema_version, envelope.stream_version, envelope.occurred_at,
        envelope.correlation_id, envelope.causation_id, envelope.actor, envelope.data, envelope.prev_hash,
        envelope.hash,
    )  # fmt: skip


async def store_mail(pool: asyncpg.Pool, row: dict[str, Any], envelope: Envelope, topic: str) -> bool:
    """Store a raw mail with its sealed event and outbox row; False when the bytes were stored before."""
    headers = {"type": envelope.type, "event_id": envelope.event_id, "correlation_id": envelope.correlation_id}
    stored = await pool.fetchval(
        _STORE_MAIL,
        row["mail_id"], row["sha256"], row["size"], row["raw"], row["source"],
        row["envelope_from"], row["envelope_to"], row["flags"], row["defects"],
        *_event_args(envelope), topic, envelope.to_json(), headers,
    )  # fmt: skip
    return bool(stored)


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


# --------------------------------------------------------------------------- mailbox bookkeeping


async def known_keys(pool: asyncpg.Pool, account: str, keys: list[str]) -> dict[str, bool]:
    """Of ``keys``, those taken before, each with whether its server side is settled."""
    if not keys:
        return {}
    rows = await pool.fetch(
        "select key, settled from mailbox_messages where account = $1 and key = any($2::text[])", account, keys
    )
    return {r["key"]: r["settled"] for r in rows}


async def record_taken(
    pool: asyncpg.Pool, account: str, key: str, mail_id: str | None, outcome: str, *, settled: bool
) -> None:
    await pool.execute(
        "insert into mailbox_messages (account, key, mail_id, outcome, settled, settled_at)"
        " values ($1, $2, $3, $4, $5, case when $5 then now() end)"
        " on conflict (account, key) do update set mail_id = excluded.mail_id, outcome = excluded.outcome",
        account, key, mail_id, outcome, settled,
    )  # fmt: skip


async def mark_settled(pool: asyncpg.Pool, account: str, keys: list[str]) -> None:
    if keys:
        await pool.execute(
            "update mailbox_messages set settled = true, settled_at = now()"
            " where account = $1 and key = any($2::text[])",
            account,
            keys,
        )


async def imap_high_water(pool: asyncpg.Pool, account: str, uidvalidity: int) -> int:
    """The highest UID taken and settled from the account's folder in this UIDVALIDITY (0 if none).

    Taken mails not yet settled lie above it, so the next poll lists them again and settles them.
    """
    value = await pool.fetchval(
        "select max(split_part(key, ':', 2)::bigint) from mailbox_messages"
        " where account = $1 and key like $2 and settled",
        account,
        f"{uidvalidity}:%",
    )
    return int(value or 0)
