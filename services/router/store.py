"""SQL for the router's own tables (asyncpg); see ``migrations/001_router.sql``.

Functions take a connection (inside the caller's transaction) or the pool (for reads).
Nothing here decides anything: the decisions are in :mod:`services.router.domain`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

import asyncpg

from services.router.domain import MAX_MERGE_HOPS, LookupKeys, SnapshotIndex, TicketInfo, normalize_message_id
from shared.events import FilterChanged, QueueConfigured, SystemAddressChanged, TicketCreated, TicketRouted

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool


# --------------------------------------------------------------------------- decisions


async def insert_decision(conn: Db, routed: TicketRouted, event_id: str, tokens: Sequence[str] | None = None) -> bool:
    """Record a decision, and the mail's tokens for later labels when given; False if the mail
    already has a decision (a redelivery: do nothing more). One round trip."""
    inserted = await conn.fetchval(
        "with decided as (insert into routing_decisions (mail_id, event_id, action, queue, priority, ticket_number,"
        " spam, spam_score, model_version, reasons) values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        " on conflict (mail_id) do nothing returning mail_id),"
        " learned as (insert into learning_mails (mail_id, tokens) select mail_id, $11::text[] from decided"
        " where $11::text[] is not null on conflict do nothing)"
        " select count(*) from decided",
        routed.mail_id,
        event_id,
        routed.action,
        routed.queue,
        routed.priority,
        routed.ticket_number,
        routed.spam,
        routed.spam_score,
        routed.model_version,
        [r.model_dump(mode="json") for r in routed.reasons],
        list(tokens) if tokens is not None else None,
    )
    return bool(inserted)


async def get_decision(db: Db, mail_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(
        "select mail_id, event_id::text, action, queue, priority, ticket_number, spam, spam_score,"
        " model_version, reasons, decided_at from routing_decisions where mail_id = $1",
        mail_id,
    )
    return dict(row) if row else None


# --------------------------------------------------------------------------- the ticket index

_TICKETS = (
    "select t.ticket_id, t.number, t.queue, t.state, t.merged_into_number,"
    " coalesce(q.follow_up_policy, 'reopen') as follow_up_policy,"
    " array(select p.email from router_participants p where p.ticket_id = t.ticket_id) as participants"
    " from router_tickets t left join router_queues q on q.name = t.queue"
    " where t.number = any($1::text[]) or t.ticket_id = any($2::text[])"
)


def _ticket_info(row: asyncpg.Record) -> TicketInfo:
    return TicketInfo(
        ticket_id=row["ticket_id"],
        number=row["number"],
        queue=row["queue"],
        state=row["state"],
        merged_into_number=row["merged_into_number"],
        participants=frozenset(row["participants"]),
        follow_up_policy=row["follow_up_policy"],
    )


async def load_index(conn: Db, keys: LookupKeys) -> SnapshotIndex:
    """The tickets a mail's keys point to, and the tickets they were merged into."""
    if not keys:
        return SnapshotIndex()
    by_msgid: dict[str, str] = {}
    if keys.message_ids:
        rows = await conn.fetch(
            "select message_id, ticket_id from router_message_ids where message_id = any($1::text[])",
            list(keys.message_ids),
        )
        by_msgid = {r["message_id"]: r["ticket_id"] for r in rows}
    tickets = [_ticket_info(r) for r in await conn.fetch(_TICKETS, list(keys.numbers), list(set(by_msgid.values())))]
    number_of = {t.ticket_id: t.number for t in tickets}
    index = SnapshotIndex(tickets, {m: number_of[t] for m, t in by_msgid.items() if t in number_of})
    for _ in range(MAX_MERGE_HOPS):
        missing = index.missing_merge_targets()
        if not missing:
            break
        tickets += [_ticket_info(r) for r in await conn.fetch(_TICKETS, sorted(missing), [])]
        index = SnapshotIndex(tickets, index.message_ids)
    return index


async def create_ticket(conn: Db, event: TicketCreated, created_at: Any) -> None:
    await conn.execute(
        "insert into router_tickets (ticket_id, number, queue, state, first_mail_id, created_at)"
        " values ($1, $2, $3, $4, $5, $6) on conflict (ticket_id) do nothing",
        event.ticket_id,
        event.ticket_number,
        event.queue,
        event.state,
        event.mail_id,
        created_at,
    )
    if event.mail_id:
        await conn.execute(
            "update learning_mails set ticket_id = $2 where mail_id = $1", event.mail_id, event.ticket_id
        )


async def add_participants(conn: Db, ticket_id: str, emails: Iterable[str]) -> None:
    found = sorted(set(emails))
    if found:
        await conn.execute(
            "insert into router_participants (ticket_id, email) select $1, unnest($2::text[]) on conflict do nothing",
            ticket_id,
            found,
        )


async def add_message_id(conn: Db, message_id: str | None, ticket_id: str) -> None:
    """Remember a message-id as the ticket's; the first ticket to claim an id keeps it."""
    normalized = normalize_message_id(message_id or "")
    if normalized:
        await conn.execute(
            "insert into router_message_ids (message_id, ticket_id) values ($1, $2) on conflict do nothing",
            normalized,
            ticket_id,
        )


async def set_ticket_field(conn: Db, ticket_id: str, column: str, value: str) -> None:
    assert column in ("state", "queue")
    await conn.execute(f"update router_tickets set {column} = $2 where ticket_id = $1", ticket_id, value)


async def set_merged(conn: Db, ticket_id: str, into_ticket_id: str | None, into_number: str | None) -> None:
    await conn.execute(
        "update router_tickets set merged_into_ticket_id = $2, merged_into_number = $3 where ticket_id = $1",
        ticket_id,
        into_ticket_id,
        into_number,
    )


async def clear_merged(conn: Db, ticket_id: str, from_ticket_id: str) -> None:
    """Undo a merge, if ``ticket_id`` is still merged into ``from_ticket_id``."""
    await conn.execute(
        "update router_tickets set merged_into_ticket_id = null, merged_into_number = null"
        " where ticket_id = $1 and merged_into_ticket_id = $2",
        ticket_id,
        from_ticket_id,
    )


async def upsert_queue(conn: Db, event: QueueConfigured) -> None:
    await conn.execute(
        "insert into router_queues (name, follow_up_policy, valid) values ($1, $2, $3)"
        " on conflict (name) do update set follow_up_policy = excluded.follow_up_policy, valid = excluded.valid",
        event.name,
        event.follow_up_policy,
        event.valid,
    )


async def queue_known(db: Db, name: str) -> bool:
    return bool(await db.fetchval("select valid from router_queues where name = $1", name))


# --------------------------------------------------------------------------- learning


async def learning_mails(conn: Db, *, ticket_id: str | None = None, mail_ids: Sequence[str] = ()) -> list[Any]:
    """The stored first mails of a ticket, or the given mails: (mail_id, tokens, trained_as)."""
    return await conn.fetch(
        "select mail_id, tokens, trained_as from learning_mails"
        " where mail_id = any($1::text[]) or ticket_id = $2 order by mail_id for update",
        list(mail_ids),
        ticket_id if not mail_ids else None,
    )


async def set_trained_as(conn: Db, mail_id: str, label: str) -> None:
    await conn.execute("update learning_mails set trained_as = $2 where mail_id = $1", mail_id, label)


async def prune_learning_mails(db: Db, max_age_hours: float, max_rows: int) -> int:
    """Forget mails too old to be labelled by a move, and the oldest beyond ``max_rows``."""
    aged = await db.execute(
        "delete from learning_mails where routed_at < now() - make_interval(secs => $1)", max_age_hours * 3600
    )
    excess = await db.execute(
        "delete from learning_mails where mail_id in"
        " (select mail_id from learning_mails order by routed_at desc offset $1)",
        max_rows,
    )
    return _affected(aged) + _affected(excess)


# --------------------------------------------------------------------------- classifier


async def bump_version(conn: Db, name: str) -> int:
    """Next version of ``config`` or ``classifier``; the row stays locked until commit."""
    return int(
        await conn.fetchval("update router_versions set version = version + 1 where name = $1 returning version", name)
    )


async def versions(db: Db) -> dict[str, int]:
    return {r["name"]: int(r["version"]) for r in await db.fetch("select name, version from router_versions")}


async def train(
    conn: Db, tokens: Sequence[str], label: str, delta: int, *, mail_id: str | None, reason: str
) -> int | None:
    """Count (delta +1) or uncount (-1) one mail's tokens under ``label``, as
    :meth:`Classifier.train`/``untrain`` do in memory; returns the new version, or None when
    there was nothing to uncount."""
    distinct = list(dict.fromkeys(tokens))
    if delta < 0 and not await conn.fetchval("select docs from classifier_docs where label = $1 for update", label):
        return None
    version = await bump_version(conn, "classifier")
    if delta > 0:
        await conn.execute(
            "insert into classifier_docs (label, docs) values ($1, 1)"
            " on conflict (label) do update set docs = classifier_docs.docs + 1",
            label,
        )
        await conn.execute(
            "insert into classifier_tokens (token, label, count) select unnest($1::text[]), $2, 1"
            " on conflict (token, label) do update set count = classifier_tokens.count + 1",
            distinct,
            label,
        )
    else:
        await conn.execute("update classifier_docs set docs = docs - 1 where label = $1", label)
        await conn.execute(
            "delete from classifier_tokens where label = $2 and token = any($1::text[]) and count = 1", distinct, label
        )
        await conn.execute(
            "update classifier_tokens set count = count - 1 where label = $2 and token = any($1::text[])",
            distinct,
            label,
        )
    await _log(conn, version, label=label, delta=delta, tokens=distinct, mail_id=mail_id, reason=reason)
    return version


async def add_counts(
    conn: Db, docs: Mapping[str, int], counts: Mapping[str, Mapping[str, int]], *, reason: str, replace: bool = False
) -> int:
    """Add a whole model's counts (a corpus import) in one go; replicas reload on this version."""
    version = await bump_version(conn, "classifier")
    if replace:
        await conn.execute("delete from classifier_tokens")
        await conn.execute("delete from classifier_docs")
    await conn.execute(
        "insert into classifier_docs (label, docs) select * from unnest($1::text[], $2::int[])"
        " on conflict (label) do update set docs = classifier_docs.docs + excluded.docs",
        list(docs),
        list(docs.values()),
    )
    triples = [(token, label, n) for token, row in counts.items() for label, n in row.items() if n > 0]
    await conn.execute(
        "insert into classifier_tokens (token, label, count) select * from unnest($1::text[], $2::text[], $3::int[])"
        " on conflict (token, label) do update set count = classifier_tokens.count + excluded.count",
        [t[0] for t in triples],
        [t[1] for t in triples],
        [t[2] for t in triples],
    )
    await _log(conn, version, label=None, delta=None, tokens=None, mail_id=None, reason=reason)
    return version


async def _log(conn: Db, version: int, **entry: Any) -> None:
    await conn.execute(
        "insert into classifier_log (version, label, delta, tokens, mail_id, reason) values ($1, $2, $3, $4, $5, $6)",
        version,
        entry["label"],
        entry["delta"],
        entry["tokens"],
        entry["mail_id"],
        entry["reason"],
    )


async def load_classifier(conn: asyncpg.Connection) -> tuple[int, dict[str, int], dict[str, dict[str, int]]]:
    """(version, docs per label, counts per token and label); call in a repeatable-read transaction."""
    version = int(await conn.fetchval("select version from router_versions where name = 'classifier'"))
    docs = {r["label"]: r["docs"] for r in await conn.fetch("select label, docs from classifier_docs")}
    counts: dict[str, dict[str, int]] = {}
    for token, label, count in await conn.fetch("select token, label, count from classifier_tokens"):
        counts.setdefault(token, {})[label] = count
    return version, docs, counts


async def classifier_log_since(db: Db, version: int) -> list[Any]:
    return await db.fetch(
        "select version, label, delta, tokens from classifier_log where version > $1 order by version", version
    )


async def prune_classifier_log(db: Db, keep: int) -> int:
    """Keep the newest ``keep`` entries; a replica further behind reloads the whole table."""
    return _affected(
        await db.execute(
            "delete from classifier_log where version <= (select max(version) from classifier_log) - $1", keep
        )
    )


# --------------------------------------------------------------------------- configuration


_FILTER_COLUMNS = "filter_id, name, position, match, actions, enabled, version, changed_by, changed_at"
_ADDRESS_COLUMNS = "email, queue, display_name, language_queues, version, changed_by, changed_at"


async def stream_version(conn: Db, stream_id: str) -> int:
    return int(
        await conn.fetchval("select coalesce(max(stream_version), 0) from events where stream_id = $1", stream_id)
    )


async def list_filters(db: Db) -> list[dict[str, Any]]:
    rows = await db.fetch(f"select {_FILTER_COLUMNS} from router_filters order by position, filter_id")
    return [dict(r) for r in rows]


async def get_filter(db: Db, filter_id: str) -> dict[str, Any] | None:
    row = await db.fetchrow(f"select {_FILTER_COLUMNS} from router_filters where filter_id = $1", filter_id)
    return dict(row) if row else None


async def save_filter(conn: Db, event: FilterChanged, version: int, actor: str) -> None:
    if event.deleted:
        await conn.execute("delete from router_filters where filter_id = $1", event.filter_id)
        return
    await conn.execute(
        "insert into router_filters (filter_id, name, position, match, actions, enabled, version, changed_by)"
        " values ($1, $2, $3, $4, $5, $6, $7, $8) on conflict (filter_id) do update set name = excluded.name,"
        " position = excluded.position, match = excluded.match, actions = excluded.actions,"
        " enabled = excluded.enabled, version = excluded.version, changed_by = excluded.changed_by,"
        " changed_at = now()",
        event.filter_id,
        event.name,
        event.position,
        dict(event.match),
        dict(event.actions),
        event.enabled,
        version,
        actor,
    )


async def list_addresses(db: Db) -> list[dict[str, Any]]:
    rows = await db.fetch(f"select {_ADDRESS_COLUMNS} from router_system_addresses order by email")
    return [dict(r) for r in rows]


async def get_address(db: Db, email: str) -> dict[str, Any] | None:
    row = await db.fetchrow(f"select {_ADDRESS_COLUMNS} from router_system_addresses where email = $1", email)
    return dict(row) if row else None


async def save_address(conn: Db, event: SystemAddressChanged, version: int, actor: str) -> None:
    if event.deleted:
        await conn.execute("delete from router_system_addresses where email = $1", event.email)
        return
    await conn.execute(
        "insert into router_system_addresses (email, queue, display_name, language_queues, version, changed_by)"
        " values ($1, $2, $3, $4, $5, $6) on conflict (email) do update set queue = excluded.queue,"
        " display_name = excluded.display_name, language_queues = excluded.language_queues,"
        " version = excluded.version, changed_by = excluded.changed_by, changed_at = now()",
        event.email,
        event.queue,
        event.display_name,
        dict(event.language_queues),
        version,
        actor,
    )


def _affected(status: str) -> int:
    """Rows affected, from a command tag like ``DELETE 3``."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0
