"""SQL for the tickets service's own tables (asyncpg).

Read-model tables are named without a schema: the live ones are in ``public``, and a rebuild
writes the same SQL into a fresh schema by setting ``search_path`` (see
``services.tickets.rebuild``).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeAlias

import asyncpg

from shared.envelope import Envelope
from shared.events import CLOSED_STATES, QueueConfigured

Db: TypeAlias = asyncpg.Connection | asyncpg.Pool

READ_MODEL_TABLES = ("ticket_list", "articles", "mail_index", "queue_counts", "queues")

# --------------------------------------------------------------------------- ticket numbers


async def next_day_counter(db: Db, day: date, count: int = 1) -> int:
    """Reserve ``count`` values of ``day``'s counter; returns the last one reserved.

    Run on its own connection (not in the caller's transaction): the row is locked only for
    this one statement, and a rolled-back ticket leaves a gap, as a sequence would.
    """
    value = await db.fetchval(
        "insert into ticket_counters (day, n) values ($1, $2)"
        " on conflict (day) do update set n = ticket_counters.n + excluded.n returning n",
        day,
        count,
    )
    return int(value)


# --------------------------------------------------------------------------- snapshots
# The shared ``snapshots`` table, written in the caller's transaction so a snapshot never
# outlives a rolled-back append (``EventStore.save_snapshot`` has no ``conn``).


async def load_snapshot(conn: Db, stream_id: str) -> tuple[int, dict[str, Any]] | None:
    row = await conn.fetchrow("select stream_version, state from snapshots where stream_id = $1", stream_id)
    return (row["stream_version"], row["state"]) if row else None


async def save_snapshot(conn: Db, stream_id: str, version: int, state: dict[str, Any]) -> None:
    await conn.execute(
        "insert into snapshots (stream_id, stream_version, state) values ($1, $2, $3)"
        " on conflict (stream_id) do update set stream_version = excluded.stream_version,"
        " state = excluded.state, taken_at = now() where snapshots.stream_version < excluded.stream_version",
        stream_id,
        version,
        state,
    )


async def stream_exists(conn: Db, stream_id: str) -> bool:
    return bool(await conn.fetchval("select exists (select 1 from events where stream_id = $1)", stream_id))


# --------------------------------------------------------------------------- projection writes


@dataclass(frozen=True, slots=True)
class TicketRow:
    ticket_id: str
    number: str
    title: str
    state: str
    locked_by: str | None
    owner: str | None
    responsible: str | None
    queue: str
    priority: int
    customer_email: str | None
    customer_id: str | None
    created_at: datetime
    changed_at: datetime
    pending_until: datetime | None
    due_at: datetime | None
    watchers: list[str]
    merged_into: str | None
    spam: bool
    version: int
    doc: dict[str, Any]
    escalation_due_at: datetime | None = None  # the earliest running escalation clock
    escalation_kind: str | None = None
    escalation_next_at: datetime | None = None  # when the timer must next act on escalations
    escalation_settings: str = ""  # the queue times it runs on (EscalationSettings.key)


@dataclass(frozen=True, slots=True)
class ArticleRow:
    article_id: str
    ticket_id: str
    stream_version: int
    kind: str
    channel: str
    sender_type: str
    visible_to_customer: bool
    from_addr: str | None
    to_addrs: list[str]
    cc_addrs: list[str]
    subject: str
    body: str
    body_html: str | None
    created_at: datetime
    created_by: str
    mail_id: str | None
    message_id: str | None
    in_reply_to: str | None
    attachments: list[dict[str, Any]]
    delivery: str | None


_TICKET_COLUMNS = (
    "ticket_id, number, title, state, locked_by, owner, responsible, queue, priority, customer_email,"
    " customer_id, created_at, changed_at, pending_until, due_at, watchers, merged_into, spam, version, doc,"
    " escalation_due_at, escalation_kind, escalation_next_at, escalation_settings"
)
_TICKET_UPDATES = ", ".join(
    f"{c} = excluded.{c}" for c in _TICKET_COLUMNS.replace(" ", "").split(",") if c != "ticket_id"
)
_ARTICLE_COLUMNS = (
    "article_id, ticket_id, stream_version, kind, channel, sender_type, visible_to_customer, from_addr,"
    " to_addrs, cc_addrs, recipients, subject, body, body_html, created_at, created_by, mail_id, message_id,"
    " in_reply_to, attachments, delivery"
)


async def ticket_docs(conn: Db, ticket_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows = await conn.fetch("select ticket_id, doc from ticket_list where ticket_id = any($1)", list(ticket_ids))
    return {r["ticket_id"]: r["doc"] for r in rows}


async def queue_versions(conn: Db, names: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch("select name, version from queues where name = any($1)", list(names))
    return {r["name"]: r["version"] for r in rows}


async def upsert_tickets(conn: Db, rows: Iterable[TicketRow]) -> None:
    placeholders = ", ".join(f"${i}" for i in range(1, 25))
    await conn.executemany(
        f"insert into ticket_list ({_TICKET_COLUMNS}) values ({placeholders})"
        f" on conflict (ticket_id) do update set {_TICKET_UPDATES} where ticket_list.version < excluded.version",
        [
            (
                r.ticket_id,
                r.number,
                r.title,
                r.state,
                r.locked_by,
                r.owner,
                r.responsible,
                r.queue,
                r.priority,
                r.customer_email,
                r.customer_id,
                r.created_at,
                r.changed_at,
                r.pending_until,
                r.due_at,
                r.watchers,
                r.merged_into,
                r.spam,
                r.version,
                r.doc,
                r.escalation_due_at,
                r.escalation_kind,
                r.escalation_next_at,
                r.escalation_settings,
            )  # fmt: skip
            for r in rows
        ],
    )


def _article_record(a: ArticleRow) -> tuple[Any, ...]:
    recipients = ", ".join([*a.to_addrs, *a.cc_addrs])
    return (
        a.article_id, a.ticket_id, a.stream_version, a.kind, a.channel, a.sender_type, a.visible_to_customer,
        a.from_addr, a.to_addrs, a.cc_addrs, recipients, a.subject, a.body, a.body_html, a.created_at,
        a.created_by, a.mail_id, a.message_id, a.in_reply_to, a.attachments, a.delivery,
    )  # fmt: skip


async def insert_articles(conn: Db, rows: Iterable[ArticleRow]) -> None:
    placeholders = ", ".join(f"${i}" for i in range(1, 22))
    await conn.executemany(
        f"insert into articles ({_ARTICLE_COLUMNS}) values ({placeholders}) on conflict (article_id) do nothing",
        [_article_record(a) for a in rows],
    )


async def set_deliveries(conn: Db, updates: Iterable[tuple[str, str, str]]) -> None:
    """(article_id, status, detail), applied in order."""
    await conn.executemany(
        "update articles set delivery = $2, delivery_detail = $3 where article_id = $1", list(updates)
    )


async def set_bounce_links(conn: Db, links: Iterable[tuple[str, str]]) -> None:
    """(bounce article_id, answer article_id): the bounce article names the answer it returned."""
    await conn.executemany("update articles set bounce_of = $2 where article_id = $1", list(links))


async def insert_mails(conn: Db, rows: Iterable[tuple[str, str, str]]) -> None:
    """(mail_id, ticket_id, article_id); the first article of a mail wins."""
    await conn.executemany(
        "insert into mail_index (mail_id, ticket_id, article_id) values ($1, $2, $3) on conflict do nothing",
        list(rows),
    )


async def add_count_deltas(conn: Db, deltas: Iterable[tuple[str, str, bool, int]]) -> None:
    await conn.executemany("insert into queue_counts (queue, state, locked, n) values ($1, $2, $3, $4)", list(deltas))


async def upsert_queues(conn: Db, rows: Iterable[tuple[str, str, str | None, bool, dict[str, Any], int]]) -> None:
    await conn.executemany(
        'insert into queues (name, "group", parent, valid, config, version) values ($1, $2, $3, $4, $5, $6)'
        ' on conflict (name) do update set "group" = excluded."group", parent = excluded.parent,'
        " valid = excluded.valid, config = excluded.config, version = excluded.version"
        " where queues.version < excluded.version",
        list(rows),
    )


async def compact_counts(conn: asyncpg.Connection) -> int:
    """Fold the count deltas into one row per key; returns how many rows were folded."""
    async with conn.transaction():
        folded = await conn.fetch("delete from queue_counts returning queue, state, locked, n")
        sums: dict[tuple[str, str, bool], int] = {}
        for r in folded:
            key = (r["queue"], r["state"], r["locked"])
            sums[key] = sums.get(key, 0) + r["n"]
        await add_count_deltas(conn, [(*key, n) for key, n in sorted(sums.items()) if n])
    return len(folded)


# --------------------------------------------------------------------------- lookups


async def ticket_id_by_number(db: Db, number: str) -> str | None:
    return await db.fetchval("select ticket_id from ticket_list where number = $1", number)


async def ticket_row(db: Db, number: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from ticket_list where number = $1 or ticket_id = $1", number)


async def ticket_row_by_id(db: Db, ticket_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from ticket_list where ticket_id = $1", ticket_id)


async def articles_of(db: Db, ticket_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await db.fetch(
        "select * from articles where ticket_id = any($1) order by created_at, stream_version, article_id",
        list(ticket_ids),
    )


async def article(db: Db, article_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from articles where article_id = $1", article_id)


async def mail(db: Db, mail_id: str) -> asyncpg.Record | None:
    return await db.fetchrow(
        "select m.mail_id, m.ticket_id, m.article_id, t.number, t.queue from mail_index m"
        " join ticket_list t using (ticket_id) where m.mail_id = $1",
        mail_id,
    )


async def follow_up_policy(db: Db, ticket_id: str) -> str | None:
    """The follow-up policy of the ticket's queue; None when the queue is not configured."""
    return await db.fetchval(
        "select q.config->>'follow_up_policy' from ticket_list t join queues q on q.name = t.queue"
        " where t.ticket_id = $1",
        ticket_id,
    )


async def known_queues(db: Db) -> set[str]:
    return {r["name"] for r in await db.fetch("select name from queues where valid")}


async def queue_config(db: Db, name: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from queues where name = $1", name)


async def queue_settings(db: Db, name: str) -> QueueConfigured | None:
    """A queue's latest configuration (None for a queue never configured)."""
    config = await db.fetchval("select config from queues where name = $1", name)
    return None if config is None else QueueConfigured.model_validate(config)


async def all_queue_settings(db: Db) -> list[QueueConfigured]:
    return [QueueConfigured.model_validate(r["config"]) for r in await db.fetch("select config from queues")]


async def queues(db: Db) -> list[asyncpg.Record]:
    return await db.fetch("select * from queues order by name")


async def count_sums(db: Db) -> list[asyncpg.Record]:
    return await db.fetch(
        "select queue, state, locked, sum(n)::bigint as n from queue_counts"
        " group by queue, state, locked having sum(n) <> 0"
    )


# --------------------------------------------------------------------------- the ticket list

SORT_COLUMNS = {
    "number": "number",
    "age": "created_at",
    "created_at": "created_at",
    "changed_at": "changed_at",
    "priority": "priority",
    "title": "title",
    "state": "state",
    "queue": "queue",
    "owner": "owner",
    "pending_until": "pending_until",
    "customer": "customer_email",
    "escalation": "escalation_due_at",  # nulls (no clock running) last in both orders
}
_NULLS_LAST = {"escalation"}


@dataclass(frozen=True, slots=True)
class TicketFilter:
    queues: Sequence[str] | None = None
    states: Sequence[str] | None = None
    owner: str | None = None
    locked: bool | None = None
    watched_by: str | None = None
    customer: str | None = None
    sort: str = "created_at"
    descending: bool = True
    page: int = 1
    page_size: int = 25

    @property
    def counts_answer_total(self) -> bool:
        """True when the counts table alone knows how many tickets match."""
        return self.owner is None and self.watched_by is None and self.customer is None


def _where(f: TicketFilter, *, first: int = 1, per_queue: bool = False) -> tuple[str, list[Any]]:
    """The WHERE clause and its arguments, numbered from ``$first``; ``per_queue``: the queue is
    the lateral ``q.name`` of :func:`_list_per_queue`."""
    clauses: list[str] = []
    args: list[Any] = []

    def add(sql: str, value: Any) -> None:
        args.append(value)
        clauses.append(sql.replace("?", f"${first + len(args) - 1}"))

    # One value is written as ``=``, so the (queue, order) indexes give the page in order.
    if per_queue:
        clauses.append("queue = q.name")
    elif f.queues is not None and len(f.queues) == 1:
        add("queue = ?", f.queues[0])
    elif f.queues is not None:
        add("queue = any(?)", list(f.queues))
    if f.states is not None and len(f.states) == 1:
        add("state = ?", f.states[0])
    elif f.states is not None:
        add("state = any(?)", list(f.states))
    if f.owner is not None:
        add("owner = ?", f.owner)
    if f.locked is not None:
        clauses.append("locked_by is not null" if f.locked else "locked_by is null")
    if f.watched_by is not None:
        add("watchers @> array[?]::text[]", f.watched_by)
    if f.customer is not None:
        add("customer_email = ?", f.customer)
    return (" where " + " and ".join(clauses)) if clauses else "", args


async def list_tickets(db: Db, f: TicketFilter) -> tuple[int, list[asyncpg.Record]]:
    direction = "desc" if f.descending else "asc"
    nulls = " nulls last" if f.sort in _NULLS_LAST else ""
    order = f"{SORT_COLUMNS[f.sort]} {direction}{nulls}, ticket_id {direction}"
    offset = (f.page - 1) * f.page_size
    where, args = _where(f)
    if f.queues is not None and len(f.queues) > 1:
        rows = await _list_per_queue(db, f, order, offset)
    else:
        rows = await db.fetch(
            f"select * from ticket_list{where} order by {order} limit {f.page_size} offset {offset}", *args
        )
    return await _total(db, f, where, args), rows


async def _list_per_queue(db: Db, f: TicketFilter, order: str, offset: int) -> list[asyncpg.Record]:
    """A page over several queues, merged from each queue's first ``offset + page_size`` tickets
    (each read in order from its (queue, ...) index), so big queues the agent may not see are
    never scanned through."""
    where, args = _where(f, first=2, per_queue=True)
    return await db.fetch(
        "select t.* from unnest($1::text[]) as q(name) cross join lateral"
        f" (select * from ticket_list{where} order by {order} limit {offset + f.page_size}) as t"
        f" order by {order} limit {f.page_size} offset {offset}",
        list(f.queues or []),
        *args,
    )


async def _total(db: Db, f: TicketFilter, where: str, args: list[Any]) -> int:
    if not f.counts_answer_total:
        return int(await db.fetchval(f"select count(*) from ticket_list{where}", *args))
    clauses, count_args = ["true"], []
    for column, values in (("queue", f.queues), ("state", f.states)):
        if values is not None:
            count_args.append(list(values))
            clauses.append(f"{column} = any(${len(count_args)})")
    if f.locked is not None:
        clauses.append("locked" if f.locked else "not locked")
    query = f"select coalesce(sum(n), 0) from queue_counts where {' and '.join(clauses)}"
    return int(await db.fetchval(query, *count_args))


# --------------------------------------------------------------------------- search


async def search(
    db: Db, query: str, queues: Sequence[str] | None, page: int, page_size: int
) -> tuple[int, list[asyncpg.Record]]:
    """Tickets whose number, title or any article (subject, addresses, body) match ``query``
    (web-search syntax), best match first, each with a snippet of its best article."""
    queue_filter = "and t.queue = any($2)" if queues is not None else ""
    args: list[Any] = [query] + ([list(queues)] if queues is not None else [])
    offset = (page - 1) * page_size
    rows = await db.fetch(
        f"""
        with q as (select websearch_to_tsquery('simple', $1) as q),
        article_hits as (
            select a.ticket_id, max(ts_rank(a.tsv, q.q)) as rank from articles a, q
            where a.tsv @@ q.q group by a.ticket_id
        ),
        title_hits as (
            select t.ticket_id, ts_rank(t.title_tsv, q.q) * 2 as rank from ticket_list t, q where t.title_tsv @@ q.q
        ),
        hits as (
            select ticket_id, max(rank) as rank from (
                select * from article_hits union all select * from title_hits
            ) h group by ticket_id
        ),
        page as (
            select t.*, hits.rank, count(*) over () as total from hits join ticket_list t using (ticket_id)
            where true {queue_filter}
            order by hits.rank desc, t.changed_at desc, t.ticket_id
            limit {page_size} offset {offset}
        )
        select page.*, coalesce(best.snippet, ts_headline('simple', page.title, q.q)) as snippet
        from page cross join q
        left join lateral (
            select ts_headline('simple', left(a.subject || ' — ' || a.body, 20000), q.q,
                               'MaxFragments=2, MaxWords=20, MinWords=5') as snippet
            from articles a where a.ticket_id = page.ticket_id and a.tsv @@ q.q
            order by ts_rank(a.tsv, q.q) desc limit 1
        ) best on true
        order by page.rank desc, page.changed_at desc, page.ticket_id
        """,
        *args,
    )
    if rows:
        return int(rows[0]["total"]), rows
    if page > 1:  # past the last page: the total still says how many there are
        total, _ = await search(db, query, queues, 1, 1)
        return total, []
    return 0, []


# --------------------------------------------------------------------------- templates


async def templates(db: Db, queue: str | None) -> list[asyncpg.Record]:
    if queue is None:
        return await db.fetch("select * from templates order by name, id")
    return await db.fetch("select * from templates where queues = '{}' or $1 = any(queues) order by name, id", queue)


async def template(db: Db, template_id: str) -> asyncpg.Record | None:
    return await db.fetchrow("select * from templates where id = $1", template_id)


async def put_template(db: Db, template_id: str, name: str, body: str, queues: Sequence[str]) -> asyncpg.Record:
    return await db.fetchrow(
        "insert into templates (id, name, body, queues) values ($1, $2, $3, $4)"
        " on conflict (id) do update set name = excluded.name, body = excluded.body, queues = excluded.queues,"
        " updated_at = now() returning *",
        template_id,
        name,
        body,
        list(queues),
    )


async def delete_template(db: Db, template_id: str) -> bool:
    return (await db.execute("delete from templates where id = $1", template_id)) != "DELETE 0"


# --------------------------------------------------------------------------- timers


async def due_tickets(db: Db, now: datetime, limit: int) -> list[str]:
    rows = await db.fetch("select ticket_id from ticket_list where due_at <= $1 order by due_at limit $2", now, limit)
    return [r["ticket_id"] for r in rows]


async def due_escalations(db: Db, now: datetime, limit: int) -> list[str]:
    """Tickets with an escalation warning or breach due by ``now`` (``ticket_list_escalation_next``)."""
    rows = await db.fetch(
        "select ticket_id from ticket_list where escalation_next_at <= $1 order by escalation_next_at limit $2",
        now,
        limit,
    )
    return [r["ticket_id"] for r in rows]


async def ticket_queue(db: Db, ticket_id: str) -> str | None:
    return await db.fetchval("select queue from ticket_list where ticket_id = $1", ticket_id)


async def stale_escalation_settings(db: Db, queue: str, key: str, limit: int) -> list[str]:
    """Not-closed tickets of ``queue`` that run on other escalation times than its ``key``."""
    rows = await db.fetch(
        "select ticket_id from ticket_list where queue = $1 and state <> all($2::text[])"
        " and coalesce(escalation_settings, '') <> $3 limit $4",
        queue,
        list(CLOSED_STATES),
        key,
        limit,
    )
    return [r["ticket_id"] for r in rows]


async def lock_timeouts(db: Db, now: datetime, limit: int) -> list[tuple[str, int]]:
    """Locked, not pending, not closed tickets whose queue's unlock timeout has passed."""
    rows = await db.fetch(
        "select t.ticket_id, (q.config->>'unlock_timeout_minutes')::int as minutes"
        " from ticket_list t join queues q on q.name = t.queue"
        " where t.locked_by is not null and t.state in ('new', 'open')"
        " and (q.config->>'unlock_timeout_minutes')::int > 0"
        " and t.changed_at <= $1::timestamptz - make_interval(mins => (q.config->>'unlock_timeout_minutes')::int)"
        " order by t.changed_at limit $2",
        now,
        limit,
    )
    return [(r["ticket_id"], r["minutes"]) for r in rows]


# --------------------------------------------------------------------------- rebuild and digest


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain identifier: {name!r}")
    return f'"{name}"'


_PRIMARY_KEYS = {"ticket_list": "ticket_id", "articles": "article_id", "mail_index": "mail_id", "queues": "name"}


async def create_read_model_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Empty copies of the live read-model tables in ``schema``: columns, defaults, generated
    columns and primary keys; the other indexes come with :func:`index_read_model_schema`,
    after the bulk load (building an index once is far cheaper than maintaining it per row)."""
    s = _ident(schema)
    await conn.execute(f"create schema {s}")
    for table in READ_MODEL_TABLES:
        await conn.execute(
            f"create table {s}.{table} (like public.{table} including defaults including generated"
            " including constraints)"
        )
        if table in _PRIMARY_KEYS:
            await conn.execute(f"alter table {s}.{table} add primary key ({_PRIMARY_KEYS[table]})")
    await conn.execute(
        f"create table {s}.rebuild_progress (id boolean primary key default true, txid bigint not null,"
        " global_position bigint not null, events bigint not null)"
    )


async def index_read_model_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Give ``schema``'s read-model tables every index and unique constraint the live ones have,
    by the same names (those already there are skipped, so a resumed run may call it again)."""
    s = _ident(schema)
    existing = {
        r["relname"]
        for r in await conn.fetch(
            "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = $1",
            schema,
        )
    }
    rows = await conn.fetch(
        "select t.relname as table_name, i.relname as index_name, pg_get_indexdef(i.oid) as indexdef,"
        " con.conname, pg_get_constraintdef(con.oid) as condef"
        " from pg_index x join pg_class i on i.oid = x.indexrelid join pg_class t on t.oid = x.indrelid"
        " join pg_namespace n on n.oid = t.relnamespace left join pg_constraint con on con.conindid = i.oid"
        " where n.nspname = 'public' and t.relname = any($1) and not x.indisprimary order by 1, 2",
        list(READ_MODEL_TABLES),
    )
    for r in rows:
        table = r["table_name"]
        if r["index_name"] in existing:
            continue
        if r["conname"]:
            await conn.execute(f"alter table {s}.{table} add constraint {_ident(r['conname'])} {r['condef']}")
        else:
            await conn.execute(r["indexdef"].replace(f" ON public.{table} ", f" ON {s}.{table} ", 1))


async def drop_schema(conn: Db, schema: str) -> None:
    await conn.execute(f"drop schema if exists {_ident(schema)} cascade")


async def use_schema(conn: asyncpg.Connection, schema: str) -> None:
    """Point unqualified read-model names at ``schema`` for the current transaction."""
    await conn.execute(f"set local search_path to {_ident(schema)}, public")


async def rebuild_progress(db: Db, schema: str) -> tuple[int, int, int] | None:
    row = await db.fetchrow(f"select txid, global_position, events from {_ident(schema)}.rebuild_progress")
    return (row["txid"], row["global_position"], row["events"]) if row else None


async def save_rebuild_progress(conn: Db, schema: str, txid: int, position: int, events: int) -> None:
    await conn.execute(
        f"insert into {_ident(schema)}.rebuild_progress (txid, global_position, events) values ($1, $2, $3)"
        " on conflict (id) do update set txid = excluded.txid, global_position = excluded.global_position,"
        " events = excluded.events",
        txid,
        position,
        events,
    )


_DIGEST_QUERIES = {
    "ticket_list": "select count(*) as n, {agg} as h from {s}.ticket_list t",
    "articles": "select count(*) as n, {agg} as h from {s}.articles t",
    "mail_index": "select count(*) as n, {agg} as h from {s}.mail_index t",
    "queues": "select count(*) as n, {agg} as h from {s}.queues t",
    "queue_counts": (
        "select count(*) as n, {agg} as h from (select queue, state, locked, sum(n) as n from {s}.queue_counts"
        " group by queue, state, locked having sum(n) <> 0) t"
    ),
}
_DIGEST_ORDER = {
    "ticket_list": "t.ticket_id",
    "articles": "t.article_id",
    "mail_index": "t.mail_id",
    "queues": "t.name",
    "queue_counts": "t.queue, t.state, t.locked",
}


async def table_digests(db: Db, schema: str = "public") -> dict[str, tuple[int, str]]:
    """(rows, sha256 of the rows' text in key order) for every read-model table of ``schema``."""
    result: dict[str, tuple[int, str]] = {}
    for table, query in _DIGEST_QUERIES.items():
        rows_text = f"coalesce(string_agg(md5(t::text), '' order by {_DIGEST_ORDER[table]}), '')"
        agg = f"encode(sha256(convert_to({rows_text}, 'UTF8')), 'hex')"
        row = await db.fetchrow(query.format(s=_ident(schema), agg=agg))
        result[table] = (int(row["n"]), row["h"])
    return result


async def version_differences(conn: Db, schema: str) -> list[tuple[str, int]]:
    """Streams whose live version is ahead of ``schema``'s: (stream id, version projected there)."""
    s = _ident(schema)
    rows = await conn.fetch(
        f"select l.ticket_id as stream_id, coalesce(r.version, 0) as version from public.ticket_list l"
        f" left join {s}.ticket_list r using (ticket_id) where r.version is distinct from l.version"
        f" union all select 'queue-' || l.name, coalesce(r.version, 0) from public.queues l"
        f" left join {s}.queues r using (name) where r.version is distinct from l.version"
    )
    return [(r["stream_id"], r["version"]) for r in rows]


async def swap_in(conn: asyncpg.Connection, schema: str, retired: str) -> None:
    """Move the live read-model tables to ``retired`` and ``schema``'s into ``public``.

    Call in a transaction holding :func:`lock_read_models`.
    """
    s, r = _ident(schema), _ident(retired)
    await conn.execute(f"create schema {r}")
    for table in READ_MODEL_TABLES:
        await conn.execute(f"alter table public.{table} set schema {r}")
        await conn.execute(f"alter table {s}.{table} set schema public")


async def lock_read_models(conn: asyncpg.Connection) -> None:
    """Stop every projection write until the transaction ends (commands wait, they don't fail)."""
    tables = ", ".join(f"public.{t}" for t in READ_MODEL_TABLES)
    await conn.execute(f"lock table {tables} in exclusive mode")


# --------------------------------------------------------------------------- data subjects (privacy.py)


async def ticket_subject_keys(conn: Db, ticket_id: str, *, lock: bool) -> dict[str, bytes | None]:
    """Every subject of a ticket and its key (None once erased); ``lock``: share-lock them."""
    rows = await conn.fetch(
        "select kid, key from customer_keys where kid in (select kid from ticket_keys where ticket_id = $1)"
        + (" order by kid for share" if lock else ""),
        ticket_id,
    )
    return {r["kid"]: r["key"] for r in rows}


async def current_subject(conn: Db, ticket_id: str) -> tuple[str, bytes] | None:
    """The ticket's latest subject whose key still exists."""
    row = await conn.fetchrow(
        "select ck.kid, ck.key from ticket_keys tk join customer_keys ck using (kid)"
        " where tk.ticket_id = $1 and ck.key is not null order by tk.created_at desc limit 1",
        ticket_id,
    )
    return (row["kid"], row["key"]) if row else None


async def subject_for(conn: Db, digest: str | None, kid: str, key: bytes) -> tuple[str, bytes]:
    """The subject of that email digest, made with ``kid`` and ``key`` if there is none
    (always a new one without a digest)."""
    row = await conn.fetchrow(
        "insert into customer_keys (kid, email_digest, key) values ($1, $2, $3)"
        " on conflict (email_digest) do nothing returning kid, key",
        kid,
        digest,
        key,
    )
    if row is None:
        row = await conn.fetchrow("select kid, key from customer_keys where email_digest = $1 for share", digest)
    return row["kid"], row["key"]


async def link_subject(conn: Db, ticket_id: str, kid: str) -> None:
    await conn.execute(
        "insert into ticket_keys (ticket_id, kid) values ($1, $2) on conflict do nothing", ticket_id, kid
    )


async def subject_keys(db: Db, kids: Sequence[str]) -> dict[str, bytes | None]:
    rows = await db.fetch("select kid, key from customer_keys where kid = any($1)", list(kids))
    found = {r["kid"]: r["key"] for r in rows}
    return {kid: found.get(kid) for kid in kids}


async def subject_exists(db: Db, kid: str) -> bool:
    return bool(await db.fetchval("select exists (select 1 from customer_keys where kid = $1)", kid))


async def subjects_of_email(db: Db, digest: str) -> list[str]:
    return [r["kid"] for r in await db.fetch("select kid from customer_keys where email_digest = $1", digest)]


async def erase_subjects(conn: Db, kids: Sequence[str]) -> list[str]:
    """Destroy the keys (waits for commands holding them); returns the subjects that had one."""
    rows = await conn.fetch(
        "update customer_keys set key = null, email_digest = null, erased_at = now()"
        " where kid = any($1) and key is not null returning kid",
        sorted(kids),
    )
    return [r["kid"] for r in rows]


async def tickets_of_subjects(conn: Db, kids: Sequence[str]) -> list[str]:
    rows = await conn.fetch("select distinct ticket_id from ticket_keys where kid = any($1) order by 1", list(kids))
    return [r["ticket_id"] for r in rows]


async def delete_snapshots(conn: Db, stream_ids: Sequence[str]) -> None:
    await conn.execute("delete from snapshots where stream_id = any($1)", list(stream_ids))


async def replace_outbox_payloads(conn: Db, payloads: Iterable[tuple[str, bytes]]) -> None:
    """(event_id, payload): what the relay would publish again of those events."""
    await conn.executemany("update outbox set payload = $2 where event_id = $1::uuid", list(payloads))


async def delete_ticket_rows(conn: Db, ticket_ids: Sequence[str]) -> None:
    """The ticket list and article rows of these tickets (before projecting them anew)."""
    await conn.execute("delete from articles where ticket_id = any($1)", list(ticket_ids))
    await conn.execute("delete from ticket_list where ticket_id = any($1)", list(ticket_ids))


# --------------------------------------------------------------------------- audit reads of the log

EVENT_COLUMNS = (
    "event_id, type, schema_version, stream_id, stream_version, occurred_at, recorded_at,"
    " correlation_id, causation_id, actor, data, prev_hash, hash"
)


def envelope_of(row: asyncpg.Record) -> Envelope:
    return Envelope.model_validate({**dict(row), "event_id": str(row["event_id"])})


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def event_refs(db: Db, event_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """(stream, version, type) of those events that are in the store, by event id."""
    ids = [u for u in (_uuid_or_none(i) for i in event_ids) if u is not None]
    rows = await db.fetch(
        "select event_id::text as event_id, stream_id, stream_version, type from events where event_id = any($1)",
        ids,
    )
    return {r["event_id"]: dict(r) for r in rows}


async def caused_events(db: Db, event_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Events whose causation is one of ``event_ids``: causation id → their refs, in log order."""
    rows = await db.fetch(
        "select causation_id, event_id::text as event_id, stream_id, stream_version, type from events"
        " where causation_id = any($1::text[]) order by global_position",
        list(event_ids),
    )
    caused: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        caused.setdefault(r["causation_id"], []).append(
            {k: r[k] for k in ("event_id", "stream_id", "stream_version", "type")}
        )
    return caused


async def event_stream_of(db: Db, event_id: str) -> str | None:
    found = _uuid_or_none(event_id)
    if found is None:
        return None
    return await db.fetchval("select stream_id from events where event_id = $1", found)


async def streams_ever_in_queue(db: Db, queue: str, until: datetime) -> list[str]:
    """Streams a TicketCreated or TicketMoved put into ``queue`` at or before ``until``."""
    rows = await db.fetch(
        "select distinct stream_id from events where type in ('TicketCreated', 'TicketMoved')"
        " and coalesce(data ->> 'to_queue', data ->> 'queue') = $1 and occurred_at <= $2",
        queue,
        until,
    )
    return [r["stream_id"] for r in rows]


async def read_streams(db: Db, stream_ids: Sequence[str], until: datetime) -> dict[str, list[Envelope]]:
    """The events of several streams that occurred at or before ``until``, each in stream order."""
    rows = await db.fetch(
        f"select {EVENT_COLUMNS} from events where stream_id = any($1) and occurred_at <= $2"
        " order by stream_id, stream_version",
        list(stream_ids),
        until,
    )
    streams: dict[str, list[Envelope]] = {}
    for r in rows:
        streams.setdefault(r["stream_id"], []).append(envelope_of(r))
    return streams


def range_query() -> str:
    """Events that occurred in [$1, $2), in commit order, committed ones only."""
    return (
        f"select {EVENT_COLUMNS} from events where occurred_at >= $1 and occurred_at < $2"
        " and txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint order by txid, global_position"
    )
