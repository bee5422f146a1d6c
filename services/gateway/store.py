"""SQL for the gateway's own tables (migrations/001_accounts.sql). asyncpg, no logic."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

Conn: TypeAlias = asyncpg.Connection | asyncpg.Pool

# --------------------------------------------------------------------------- agents

AGENT_COLUMNS = "id, username, password_hash, full_name, email, is_admin, capabilities, valid, created_at, updated_at"


async def agent_by_username(conn: Conn, username: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"select {AGENT_COLUMNS} from agents where lower(username) = lower($1)", username)


async def insert_agent(
    conn: Conn,
    *,
    username: str,
    password_hash: str,
    full_name: str = "",
    email: str | None = None,
    is_admin: bool = False,
    capabilities: Iterable[str] = (),
) -> int | None:
    """The new agent's id, or None if the username (case-insensitively) is taken."""
    return await conn.fetchval(
        "insert into agents (username, password_hash, full_name, email, is_admin, capabilities)"
        " values ($1, $2, $3, $4, $5, $6) on conflict (lower(username)) do nothing returning id",
        username,
        password_hash,
        full_name,
        email,
        is_admin,
        sorted(set(capabilities)),
    )


async def update_agent(conn: Conn, agent_id: int, fields: Mapping[str, Any]) -> None:
    """Set some of: password_hash, full_name, email, is_admin, capabilities, valid."""
    allowed = {"password_hash", "full_name", "email", "is_admin", "capabilities", "valid"}
    names = [name for name in fields if name in allowed]
    if not names:
        return
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=2))
    await conn.execute(
        f"update agents set {assignments}, updated_at = now() where id = $1",
        agent_id,
        *(fields[name] for name in names),
    )


async def count_agents(conn: Conn) -> int:
    return int(await conn.fetchval("select count(*) from agents"))


async def list_agents(conn: Conn, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        f"select {AGENT_COLUMNS} from agents order by lower(username) limit $1 offset $2", limit, offset
    )


# --------------------------------------------------------------------------- groups and roles


async def ensure_groups(conn: Conn, names: Iterable[str], *, per_queue: bool = False) -> None:
    rows = [(name, per_queue) for name in sorted(set(names)) if name]
    if rows:
        await conn.executemany(
            "insert into groups (name, per_queue) values ($1, $2) on conflict (name) do nothing", rows
        )


async def insert_group(conn: Conn, name: str, comment: str) -> bool:
    inserted = await conn.fetchval(
        "insert into groups (name, comment) values ($1, $2) on conflict (name) do nothing returning true",
        name,
        comment,
    )
    return bool(inserted)


async def list_groups(conn: Conn, *, include_per_queue: bool) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select g.name, g.comment, g.per_queue, g.created_at,"
        " coalesce(array_agg(q.name order by q.name) filter (where q.name is not null), '{}') as queues"
        " from groups g left join queue_directory q on q.group_name = g.name"
        " where $1 or not g.per_queue"
        " group by g.name order by g.name",
        include_per_queue,
    )


async def agent_grants(conn: Conn, agent_id: int) -> dict[str, list[str]]:
    rows = await conn.fetch(
        "select group_name, permissions from agent_groups where agent_id = $1 order by group_name", agent_id
    )
    return {r["group_name"]: list(r["permissions"]) for r in rows}


async def replace_agent_grants(
    conn: Conn, agent_id: int, grants: Mapping[str, Iterable[str]], *, per_queue: bool
) -> None:
    """Replace the agent's per-queue grants (or its ordinary group grants) by ``grants``."""
    await conn.execute(
        "delete from agent_groups ag using groups g"
        " where ag.agent_id = $1 and g.name = ag.group_name and g.per_queue = $2",
        agent_id,
        per_queue,
    )
    await ensure_groups(conn, grants, per_queue=per_queue)
    rows = [(agent_id, group, sorted(set(kinds))) for group, kinds in grants.items() if kinds]
    if rows:
        await conn.executemany("insert into agent_groups (agent_id, group_name, permissions) values ($1, $2, $3)", rows)


async def grants_of(conn: Conn, agent_ids: list[int]) -> list[asyncpg.Record]:
    """(agent_id, group_name, per_queue, permissions) for the given agents."""
    return await conn.fetch(
        "select ag.agent_id, ag.group_name, g.per_queue, ag.permissions from agent_groups ag"
        " join groups g on g.name = ag.group_name where ag.agent_id = any($1::bigint[])"
        " order by ag.agent_id, ag.group_name",
        agent_ids,
    )


async def roles_of(conn: Conn, agent_ids: list[int]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select agent_id, role_name from agent_roles where agent_id = any($1::bigint[]) order by agent_id, role_name",
        agent_ids,
    )


async def other_valid_admins(conn: Conn, agent_id: int) -> int:
    return int(await conn.fetchval("select count(*) from agents where is_admin and valid and id <> $1", agent_id))


async def agent_roles(conn: Conn, agent_id: int) -> list[str]:
    rows = await conn.fetch("select role_name from agent_roles where agent_id = $1 order by role_name", agent_id)
    return [r["role_name"] for r in rows]


async def replace_agent_roles(conn: Conn, agent_id: int, roles: Iterable[str]) -> None:
    await conn.execute("delete from agent_roles where agent_id = $1", agent_id)
    rows = [(agent_id, role) for role in sorted(set(roles))]
    if rows:
        await conn.executemany("insert into agent_roles (agent_id, role_name) values ($1, $2)", rows)


async def existing_roles(conn: Conn, names: Iterable[str]) -> set[str]:
    rows = await conn.fetch("select name from roles where name = any($1::text[])", list(names))
    return {r["name"] for r in rows}


async def upsert_role(conn: Conn, name: str, comment: str) -> None:
    await conn.execute(
        "insert into roles (name, comment) values ($1, $2) on conflict (name) do update set comment = $2",
        name,
        comment,
    )


async def replace_role_grants(conn: Conn, role: str, grants: Mapping[str, Iterable[str]]) -> None:
    await conn.execute("delete from role_groups where role_name = $1", role)
    per_queue = [g for g in grants if g.startswith("queue:")]
    await ensure_groups(conn, per_queue, per_queue=True)
    await ensure_groups(conn, [g for g in grants if g not in per_queue])
    rows = [(role, group, sorted(set(kinds))) for group, kinds in grants.items() if kinds]
    if rows:
        await conn.executemany("insert into role_groups (role_name, group_name, permissions) values ($1, $2, $3)", rows)


async def list_roles(conn: Conn) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select r.name, r.comment, r.created_at,"
        " coalesce(jsonb_object_agg(rg.group_name, rg.permissions) filter (where rg.group_name is not null),"
        " '{}'::jsonb) as groups"
        " from roles r left join role_groups rg on rg.role_name = r.name"
        " group by r.name order by r.name"
    )


# --------------------------------------------------------------------------- sessions


async def insert_session(
    conn: Conn, *, digest: str, agent_id: int, expires_at: datetime, ip: str | None, user_agent: str | None
) -> None:
    await conn.execute(
        "insert into sessions (token_digest, agent_id, expires_at, ip, user_agent) values ($1, $2, $3, $4, $5)",
        digest,
        agent_id,
        expires_at,
        ip,
        (user_agent or "")[:300] or None,
    )


async def session_principal(conn: Conn, digest: str, idle_seconds: int) -> asyncpg.Record | None:
    """A live session and its valid agent, with the agent's direct and role grants, in one query."""
    return await conn.fetchrow(
        "select s.token_digest, s.expires_at, s.last_seen_at, a.id as agent_id, a.username, a.full_name,"
        " a.is_admin, a.capabilities,"
        " coalesce((select jsonb_object_agg(ag.group_name, ag.permissions) from agent_groups ag"
        "  where ag.agent_id = a.id), '{}'::jsonb) as groups,"
        " coalesce((select jsonb_agg(jsonb_build_object('name', ar.role_name, 'groups',"
        "  coalesce((select jsonb_object_agg(rg.group_name, rg.permissions) from role_groups rg"
        "   where rg.role_name = ar.role_name), '{}'::jsonb)) order by ar.role_name)"
        "  from agent_roles ar where ar.agent_id = a.id), '[]'::jsonb) as roles"
        " from sessions s join agents a on a.id = s.agent_id"
        " where s.token_digest = $1 and a.valid and s.expires_at > now()"
        " and s.last_seen_at > now() - make_interval(secs => $2)",
        digest,
        idle_seconds,
    )


async def touch_session(conn: Conn, digest: str) -> None:
    await conn.execute("update sessions set last_seen_at = now() where token_digest = $1", digest)


async def delete_session(conn: Conn, digest: str) -> bool:
    return await conn.fetchval("delete from sessions where token_digest = $1 returning true", digest) is not None


async def delete_agent_sessions(conn: Conn, agent_id: int) -> int:
    result = await conn.execute("delete from sessions where agent_id = $1", agent_id)
    return int(result.split()[-1])


async def delete_stale_sessions(conn: Conn, idle_seconds: int) -> int:
    result = await conn.execute(
        "delete from sessions where expires_at <= now() or last_seen_at <= now() - make_interval(secs => $1)",
        idle_seconds,
    )
    return int(result.split()[-1])


# --------------------------------------------------------------------------- audit


async def audit(
    conn: Conn, *, actor: str, action: str, target: str, detail: Mapping[str, Any], correlation_id: str | None
) -> None:
    await conn.execute(
        "insert into audit_log (actor, action, target, detail, correlation_id) values ($1, $2, $3, $4, $5)",
        actor,
        action,
        target,
        dict(detail),
        correlation_id,
    )


async def count_audit(conn: Conn) -> int:
    return int(await conn.fetchval("select count(*) from audit_log"))


async def list_audit(conn: Conn, limit: int, offset: int) -> list[asyncpg.Record]:
    return await conn.fetch(
        "select id, at, actor, action, target, detail, correlation_id from audit_log"
        " order by id desc limit $1 offset $2",
        limit,
        offset,
    )


# --------------------------------------------------------------------------- secrets


async def shared_secret(conn: Conn, name: str, candidate: bytes) -> bytes:
    """The secret called ``name``; ``candidate`` becomes it if there is none yet (first replica wins)."""
    await conn.execute(
        "insert into gateway_secrets (name, value) values ($1, $2) on conflict (name) do nothing", name, candidate
    )
    return bytes(await conn.fetchval("select value from gateway_secrets where name = $1", name))


# --------------------------------------------------------------------------- directories (from ticket.events)


async def configure_queue(conn: Conn, name: str, group: str, parent: str | None, valid: bool) -> None:
    await conn.execute(
        "insert into queue_directory (name, group_name, parent, valid) values ($1, $2, $3, $4)"
        " on conflict (name) do update set group_name = $2, parent = $3, valid = $4, updated_at = now()",
        name,
        group,
        parent,
        valid,
    )
    await ensure_groups(conn, [group])


async def note_queue(conn: Conn, name: str) -> None:
    """A queue seen on a ticket before (or without) its QueueConfigured: known, group unknown."""
    await conn.execute("insert into queue_directory (name) values ($1) on conflict (name) do nothing", name)


async def queue_groups(conn: Conn) -> dict[str, str]:
    rows = await conn.fetch("select name, group_name from queue_directory")
    return {r["name"]: r["group_name"] for r in rows}


async def put_ticket(conn: Conn, ticket_id: str, number: str, queue: str) -> None:
    await conn.execute(
        "insert into ticket_directory (ticket_id, ticket_number, queue) values ($1, $2, $3)"
        " on conflict (ticket_id) do update set ticket_number = $2, queue = $3, updated_at = now()",
        ticket_id,
        number,
        queue,
    )


async def move_ticket(conn: Conn, ticket_id: str, queue: str) -> None:
    await conn.execute(
        "update ticket_directory set queue = $2, updated_at = now() where ticket_id = $1", ticket_id, queue
    )


async def ticket_location(conn: Conn, ticket_id: str) -> tuple[str, str] | None:
    row = await conn.fetchrow("select ticket_number, queue from ticket_directory where ticket_id = $1", ticket_id)
    return (row["ticket_number"], row["queue"]) if row else None


# --------------------------------------------------------------------------- preferences and the agent directory


async def agent_preferences(conn: Conn, agent_id: int) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "select language, notifications, my_queues from agent_preferences where agent_id = $1", agent_id
    )


async def put_agent_preferences(
    conn: Conn, agent_id: int, *, language: str, notifications: Mapping[str, bool], my_queues: list[str]
) -> None:
    await conn.execute(
        "insert into agent_preferences (agent_id, language, notifications, my_queues) values ($1, $2, $3, $4)"
        " on conflict (agent_id) do update set language = $2, notifications = $3, my_queues = $4, updated_at = now()",
        agent_id,
        language,
        dict(notifications),
        my_queues,
    )


async def directory_sources(conn: Conn) -> dict[str, list[asyncpg.Record]]:
    """Everything agent profiles are computed from, read in one snapshot (call in a transaction)."""
    return {
        "agents": await conn.fetch(
            "select a.id, a.username, a.full_name, a.email, a.is_admin, a.valid,"
            " p.language, p.notifications, p.my_queues"
            " from agents a left join agent_preferences p on p.agent_id = a.id order by a.id"
        ),
        "agent_groups": await conn.fetch("select agent_id, group_name, permissions from agent_groups"),
        "agent_roles": await conn.fetch("select agent_id, role_name from agent_roles"),
        "role_groups": await conn.fetch("select role_name, group_name, permissions from role_groups"),
        "queues": await conn.fetch("select name, group_name from queue_directory"),
        "per_queue_groups": await conn.fetch("select name from groups where per_queue"),
    }


async def directory_generation(conn: Conn, *, lock: bool = False) -> tuple[int, int]:
    """(generation, published_generation) of the agent directory; ``lock``: until the transaction ends."""
    row = await conn.fetchrow(
        "select generation, published_generation from agent_directory_state" + (" for no key update" if lock else "")
    )
    assert row is not None
    return int(row["generation"]), int(row["published_generation"])


async def mark_directory_published(conn: Conn, generation: int) -> None:
    await conn.execute("update agent_directory_state set published_generation = $1", generation)


async def published_profiles(conn: Conn) -> dict[str, tuple[dict[str, Any], int]]:
    rows = await conn.fetch("select username, profile, revision from agent_directory_published")
    return {r["username"]: (dict(r["profile"]), int(r["revision"])) for r in rows}


async def put_published_profiles(conn: Conn, rows: list[tuple[str, dict[str, Any], int]]) -> None:
    if rows:
        await conn.executemany(
            "insert into agent_directory_published (username, profile, revision) values ($1, $2, $3)"
            " on conflict (username) do update set profile = $2, revision = $3, published_at = now()",
            rows,
        )
