"""SQL for notify's tables: queue mail settings, the outbound log, auto-reply suppressions."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

import asyncpg

from services.notify.delivery import ErrorKind, RowState
from services.notify.outbound import PURPOSE_AUTO_REPLY, ClaimedRow, NewOutbound
from shared.envelope import make_envelope
from shared.events import EventData
from shared.outbox import enqueue

WAKE_CHANNEL = "notify_outbound"
ACTOR = "system:notify"


async def publish(
    conn: asyncpg.Connection,
    topic: str,
    data: EventData,
    *,
    ticket_id: str,
    correlation_id: str,
    causation_id: str,
) -> None:
    """Queue one of notify's events in the outbox (this transaction), keyed by its ticket."""
    envelope = make_envelope(
        data, stream_id=ticket_id, actor=ACTOR, correlation_id=correlation_id, causation_id=causation_id
    )
    await enqueue(conn, topic, [envelope], key=ticket_id)


# --------------------------------------------------------------------------- queue settings


async def upsert_queue_settings(
    conn: asyncpg.Connection,
    queue: str,
    settings: dict[str, Any],
    *,
    valid: bool,
    event_id: str,
    configured_at: datetime,
) -> bool:
    """Store a queue's settings unless a later ``QueueConfigured`` is already stored."""
    row = await conn.fetchval(
        "insert into queue_mail_settings (queue, settings, valid, source_event_id, configured_at)"
        " values ($1, $2, $3, $4, $5)"
        " on conflict (queue) do update set settings = excluded.settings, valid = excluded.valid,"
        " source_event_id = excluded.source_event_id, configured_at = excluded.configured_at, updated_at = now()"
        " where queue_mail_settings.configured_at <= excluded.configured_at"
        " returning true",
        queue,
        settings,
        valid,
        event_id,
        configured_at,
    )
    return bool(row)


async def queue_settings(conn: asyncpg.Connection | asyncpg.Pool, queue: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "select queue, settings, valid, source_event_id, configured_at, updated_at"
        " from queue_mail_settings where queue = $1",
        queue,
    )


async def system_addresses(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("select settings->'system_address'->>'email' as email from queue_mail_settings")
    return {r["email"] for r in rows if r["email"]}


# --------------------------------------------------------------------------- writing the log

_INSERT_COLUMNS = (
    "cause_event_id, purpose, ticket_id, correlation_id, envelope_from, recipients, message_id, message,"
    " requested_at, article_id, kind, recipient_key, smtputf8"
)


async def insert_outbound(
    conn: asyncpg.Connection, mail: NewOutbound, *, state: RowState = "pending", error: str | None = None
) -> int | None:
    """Record a mail to send; None if the row for (cause, purpose) exists already."""
    values = asdict(mail)
    return await conn.fetchval(
        f"insert into outbound ({_INSERT_COLUMNS}, state, last_error, last_error_kind, finished_at)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,"
        " case when $15::text is null then null else 'permanent' end,"
        " case when $14 = 'failed' then now() end)"
        " on conflict (cause_event_id, purpose) do nothing returning id",
        *(values[name.strip()] for name in _INSERT_COLUMNS.split(",")),
        state,
        error,
    )


async def lock_recipient(conn: asyncpg.Connection, recipient_key: str) -> None:
    """Serialise auto-reply decisions per recipient (until commit), so that two consumers
    counting at once cannot both see room under the daily limit."""
    await conn.execute("select pg_advisory_xact_lock(hashtext('notify.auto_reply:' || $1))", recipient_key)


async def count_auto_replies(conn: asyncpg.Connection, recipient_key: str, since: datetime, until: datetime) -> int:
    return await conn.fetchval(
        "select count(*) from outbound where purpose = $1 and recipient_key = $2"
        " and requested_at >= $3 and requested_at < $4",
        PURPOSE_AUTO_REPLY,
        recipient_key,
        since,
        until,
    )


async def insert_suppression(
    conn: asyncpg.Connection,
    *,
    cause_event_id: str,
    ticket_id: str,
    kind: str,
    recipient: str,
    reason: str,
    requested_at: datetime,
) -> bool:
    inserted = await conn.fetchval(
        "insert into auto_reply_suppressions (cause_event_id, ticket_id, kind, recipient, reason, requested_at)"
        " values ($1, $2, $3, $4, $5, $6) on conflict do nothing returning true",
        cause_event_id,
        ticket_id,
        kind,
        recipient,
        reason,
        requested_at,
    )
    return bool(inserted)


# --------------------------------------------------------------------------- the sender


_ROW_COLUMNS = (
    "id, cause_event_id::text, purpose, ticket_id, article_id, kind, correlation_id, envelope_from, recipients,"
    " message_id, message, smtputf8, attempts"
)


async def lock_due(conn: asyncpg.Connection, limit: int) -> list[asyncpg.Record]:
    """Due rows (pending and due, or 'sending' past their lease), locked until the transaction
    ends; other workers skip them. Each has the columns of :class:`ClaimedRow` plus ``state``,
    ``claim_token``, ``last_error``, ``last_error_kind`` and ``smtp_code``."""
    return await conn.fetch(
        f"select {_ROW_COLUMNS}, state, claim_token::text, last_error, last_error_kind, smtp_code from outbound"
        " where state in ('pending', 'sending') and due_at <= now()"
        " order by due_at, id limit $1 for update skip locked",
        limit,
    )


def as_claimed(row: asyncpg.Record, *, attempts: int) -> ClaimedRow:
    fields = {name: row[name] for name in ClaimedRow.__dataclass_fields__ if name not in ("attempts", "previous_state")}
    return ClaimedRow(**fields, attempts=attempts, previous_state=row["state"])


async def claim(conn: asyncpg.Connection, ids: list[int], token: str, lease_seconds: float) -> None:
    """Mark locked rows 'sending' for this worker's lease and count the attempt, before any SMTP."""
    await conn.execute(
        "update outbound set state = 'sending', attempts = attempts + 1, claimed_at = now(), claim_token = $2,"
        " due_at = now() + make_interval(secs => $3) where id = any($1::bigint[])",
        ids,
        token,
        lease_seconds,
    )


async def finish(
    conn: asyncpg.Connection,
    row_id: int,
    token: str | None,
    *,
    state: RowState,
    due_in_seconds: float = 0.0,
    error: str | None = None,
    error_kind: ErrorKind | None = None,
    smtp_code: int | None = None,
    relay_response: str | None = None,
    refused: dict[str, str] | None = None,
) -> bool:
    """Record an attempt's end. False when the claim is no longer this worker's (its lease ran
    out and another worker took the row): then the other worker reports, not this one."""
    updated = await conn.fetchval(
        "update outbound set state = $3, due_at = now() + make_interval(secs => $4), last_error = $5,"
        " last_error_kind = $6, smtp_code = $7, relay_response = $8, refused = $9, claim_token = null,"
        " finished_at = case when $3 in ('sent', 'failed') then now() end"
        " where id = $1 and claim_token is not distinct from $2::uuid"
        " and state in ('sending', 'pending') returning true",
        row_id,
        token,
        state,
        due_in_seconds,
        error,
        error_kind,
        smtp_code,
        relay_response,
        refused or {},
    )
    return bool(updated)


async def release(conn: asyncpg.Connection, ids: list[int], token: str) -> None:
    """Give back claimed rows that were not attempted (shutdown, lease too short): the claim's
    attempt is taken back and the rows are due at once, for any worker."""
    await conn.execute(
        "update outbound set state = 'pending', attempts = attempts - 1, due_at = now(), claim_token = null"
        " where id = any($1::bigint[]) and claim_token = $2 and state = 'sending'",
        ids,
        token,
    )


async def seconds_until_next_due(conn: asyncpg.Connection | asyncpg.Pool) -> float | None:
    return await conn.fetchval(
        "select greatest(extract(epoch from min(due_at) - now()), 0)::float8 from outbound"
        " where state in ('pending', 'sending')"
    )


# --------------------------------------------------------------------------- reading (API)

_LIST_COLUMNS = (
    "id, cause_event_id::text, purpose, ticket_id, article_id, kind, correlation_id, envelope_from, recipients,"
    " message_id, state, attempts, due_at, claimed_at, last_error, last_error_kind, smtp_code, relay_response,"
    " refused, requested_at, created_at, finished_at"
)


async def list_outbound(
    pool: asyncpg.Pool, *, ticket_id: str | None, state: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    where = "($1::text is null or ticket_id = $1) and ($2::text is null or state = $2)"
    total = await pool.fetchval(f"select count(*) from outbound where {where}", ticket_id, state)
    rows = await pool.fetch(
        f"select {_LIST_COLUMNS} from outbound where {where} order by id limit $3 offset $4",
        ticket_id,
        state,
        limit,
        offset,
    )
    return total, [dict(r) for r in rows]


async def outbound_message(pool: asyncpg.Pool, row_id: int) -> bytes | None:
    return await pool.fetchval("select message from outbound where id = $1", row_id)


async def list_suppressions(
    pool: asyncpg.Pool, *, ticket_id: str | None, limit: int, offset: int
) -> tuple[int, list[dict[str, Any]]]:
    where = "($1::text is null or ticket_id = $1)"
    total = await pool.fetchval(f"select count(*) from auto_reply_suppressions where {where}", ticket_id)
    rows = await pool.fetch(
        "select cause_event_id::text, ticket_id, kind, recipient, reason, requested_at, created_at"
        f" from auto_reply_suppressions where {where} order by created_at, cause_event_id limit $2 offset $3",
        ticket_id,
        limit,
        offset,
    )
    return total, [dict(r) for r in rows]


# --------------------------------------------------------------------------- agent notices


async def upsert_agent(conn: asyncpg.Connection, profile: dict[str, Any], *, revision: int, event_id: str) -> bool:
    """Store an agent's profile unless a later revision is already stored."""
    row = await conn.fetchval(
        "insert into agents (username, email, name, valid, language, notifications, my_queues, readable_queues,"
        " revision, source_event_id) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " on conflict (username) do update set email = excluded.email, name = excluded.name,"
        " valid = excluded.valid, language = excluded.language, notifications = excluded.notifications,"
        " my_queues = excluded.my_queues, readable_queues = excluded.readable_queues,"
        " revision = excluded.revision, source_event_id = excluded.source_event_id, updated_at = now()"
        " where agents.revision < excluded.revision"
        " returning true",
        profile["agent"],
        profile.get("email"),
        profile.get("name") or "",
        bool(profile.get("valid", True)),
        profile.get("language") or "en",
        list(profile.get("notifications") or []),
        list(profile.get("my_queues") or []),
        list(profile.get("readable_queues") or []),
        revision,
        event_id,
    )
    return bool(row)


_AGENT_COLUMNS = "username, email, name, valid, language, notifications, my_queues, readable_queues, revision"


async def agents_for(
    conn: asyncpg.Connection | asyncpg.Pool, usernames: list[str], queue: str | None
) -> list[asyncpg.Record]:
    """The agents named (case-insensitively), and those with ``queue`` in their my_queues (when given)."""
    return await conn.fetch(
        f"select {_AGENT_COLUMNS} from agents where lower(username) = any($1::text[])"
        " or ($2::text is not null and my_queues @> array[$2::text]) order by username",
        [name.lower() for name in usernames],
        queue,
    )


async def agent(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"select {_AGENT_COLUMNS} from agents where username = $1", username)


_TICKET_COLUMNS = (
    "ticket_id, ticket_number, title, queue, state, priority, owner, lock_holder, customer, spam, articles"
)


async def notice_ticket(conn: asyncpg.Connection, ticket_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"select {_TICKET_COLUMNS} from notice_tickets where ticket_id = $1", ticket_id)


async def put_notice_ticket(conn: asyncpg.Connection, values: dict[str, Any]) -> None:
    names = [n.strip() for n in _TICKET_COLUMNS.split(",")]
    updates = ", ".join(f"{n} = excluded.{n}" for n in names[1:])
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    await conn.execute(
        f"insert into notice_tickets ({_TICKET_COLUMNS}) values ({placeholders})"
        f" on conflict (ticket_id) do update set {updates}, updated_at = now()",
        *(values[n] for n in names),
    )
