"""Administration of agents, groups and roles; every change is audited with who made it.

The audit row is written in the same transaction as the change. Passwords never reach the
audit log (only the fact that one was set). Changing an agent's password or disabling an agent
ends its sessions.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from services.gateway import store
from services.gateway.accounts import Accounts, Principal
from services.gateway.desk import page_of
from services.gateway.errors import ApiError
from services.gateway.permissions import (
    InvalidPermissions,
    group_grants_from_request,
    permissions_from_request,
    queue_of_group,
)
from shared.logs import correlation_id

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
# Group and role names: no ':' (reserved for per-queue groups) and nothing that breaks a URL.
NAME_PATTERN = r"^[^\s:/?#%\\][^:/?#%\\]{0,99}$"
# Queue names, template and filter ids as URL segments towards tickets and router.
SEGMENT_PATTERN = r"^[^\s/?#%\\][^/?#%\\]{0,199}$"

Grants = dict[str, list[str]]


class AgentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=USERNAME_PATTERN, description="letters, digits and . _ @ + -")
    password: str = Field(min_length=8, max_length=1024)
    full_name: str = Field("", max_length=200)
    email: str | None = Field(None, max_length=320)
    is_admin: bool = False
    capabilities: list[Literal["audit"]] = []
    permissions: Grants = Field(
        default_factory=dict,
        description="{queue: [ro, move_into, create, note, owner, priority, rw]}, stored on per-queue groups",
    )
    groups: Grants = Field(default_factory=dict, description="{group: [permissions]} on ordinary groups")
    roles: list[str] = []


class AgentUpdate(BaseModel):
    """Fields to change; ``permissions``, ``groups`` and ``roles`` replace the current ones."""

    model_config = ConfigDict(extra="forbid")

    password: str | None = Field(None, min_length=8, max_length=1024)
    full_name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=320)
    is_admin: bool | None = None
    valid: bool | None = None
    capabilities: list[Literal["audit"]] | None = None
    permissions: Grants | None = None
    groups: Grants | None = None
    roles: list[str] | None = None


class AgentOut(BaseModel):
    username: str
    full_name: str
    email: str | None
    is_admin: bool
    valid: bool
    capabilities: list[str]
    permissions: Grants
    groups: Grants
    roles: list[str]
    created_at: datetime
    updated_at: datetime


class GroupCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_PATTERN, description="no ':' (names with 'queue:' are per-queue groups)")
    comment: str = Field("", max_length=500)


class RoleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field("", max_length=500)
    permissions: Grants = Field(default_factory=dict, description="{queue: [permissions]}")
    groups: Grants = Field(default_factory=dict, description="{group: [permissions]}")


def _grants(permissions: Grants | None, groups: Grants | None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """Validated per-queue grants and ordinary group grants, as stored (group → sorted kinds)."""
    try:
        per_queue = permissions_from_request(permissions or {})
        ordinary = group_grants_from_request(groups or {})
    except InvalidPermissions as exc:
        raise ApiError(422, "invalid_permissions", str(exc), field=exc.field) from None
    return (
        {g: sorted(k) for g, k in per_queue.items()},
        {g: sorted(k) for g, k in ordinary.items()},
    )


def _as_queue_map(grants: dict[str, list[str]]) -> Grants:
    return {queue_of_group(g) or g: kinds for g, kinds in grants.items()}


async def _check_roles(conn: asyncpg.Connection, roles: Iterable[str]) -> None:
    wanted = list(roles)
    known = await store.existing_roles(conn, wanted)
    for index, role in enumerate(wanted):
        if role not in known:
            raise ApiError(422, "unknown_role", f"no role {role!r}", field=f"roles[{index}]")


async def _audit(conn: asyncpg.Connection, actor: Principal, action: str, target: str, detail: dict[str, Any]) -> None:
    await store.audit(
        conn, actor=actor.username, action=action, target=target, detail=detail, correlation_id=correlation_id.get()
    )


async def record(pool: asyncpg.Pool, actor: Principal, action: str, target: str, detail: dict[str, Any]) -> None:
    """Audit a change made elsewhere (queues and templates in tickets, addresses and filters in router)."""
    async with pool.acquire() as conn:
        await _audit(conn, actor, action, target, detail)


# --------------------------------------------------------------------------- agents


async def agents_out(conn: asyncpg.Connection | asyncpg.Pool, rows: list[asyncpg.Record]) -> list[AgentOut]:
    ids = [r["id"] for r in rows]
    per_queue: dict[int, Grants] = defaultdict(dict)
    ordinary: dict[int, Grants] = defaultdict(dict)
    for grant in await store.grants_of(conn, ids):
        kinds = list(grant["permissions"])
        if grant["per_queue"]:
            per_queue[grant["agent_id"]][queue_of_group(grant["group_name"]) or grant["group_name"]] = kinds
        else:
            ordinary[grant["agent_id"]][grant["group_name"]] = kinds
    roles: dict[int, list[str]] = defaultdict(list)
    for role in await store.roles_of(conn, ids):
        roles[role["agent_id"]].append(role["role_name"])
    return [
        AgentOut(
            username=r["username"],
            full_name=r["full_name"],
            email=r["email"],
            is_admin=r["is_admin"],
            valid=r["valid"],
            capabilities=list(r["capabilities"]),
            permissions=per_queue[r["id"]],
            groups=ordinary[r["id"]],
            roles=roles[r["id"]],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


MAX_PAGE = 1_000_000


def _offset(page: int, page_size: int) -> int:
    """The rows to skip; a page past MAX_PAGE is a 422 (its OFFSET would overflow a bigint: a 500)."""
    if page > MAX_PAGE:
        raise ApiError(422, "invalid_request", f"page: must be at most {MAX_PAGE}", field="page")
    return (page - 1) * page_size


async def list_agents(pool: asyncpg.Pool, page: int, page_size: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        total = await store.count_agents(conn)
        rows = await store.list_agents(conn, page_size, _offset(page, page_size))
        items = await agents_out(conn, rows)
    return {"total": total, "items": [i.model_dump(mode="json") for i in items], "page": page, "page_size": page_size}


async def get_agent(pool: asyncpg.Pool, username: str) -> AgentOut:
    row = await store.agent_by_username(pool, username)
    if row is None:
        raise ApiError(404, "agent_not_found", f"no agent {username!r}")
    return (await agents_out(pool, [row]))[0]


async def create_agent(pool: asyncpg.Pool, accounts: Accounts, actor: Principal, spec: AgentCreate) -> AgentOut:
    per_queue, ordinary = _grants(spec.permissions, spec.groups)
    password_hash = await accounts.hash(spec.password)
    async with pool.acquire() as conn, conn.transaction():
        await _check_roles(conn, spec.roles)
        agent_id = await store.insert_agent(
            conn,
            username=spec.username,
            password_hash=password_hash,
            full_name=spec.full_name,
            email=spec.email,
            is_admin=spec.is_admin,
            capabilities=spec.capabilities,
        )
        if agent_id is None:
            raise ApiError(409, "agent_exists", f"an agent called {spec.username!r} exists", field="username")
        await store.replace_agent_grants(conn, agent_id, per_queue, per_queue=True)
        await store.replace_agent_grants(conn, agent_id, ordinary, per_queue=False)
        await store.replace_agent_roles(conn, agent_id, spec.roles)
        detail = {
            "is_admin": spec.is_admin,
            "capabilities": sorted(spec.capabilities),
            "permissions": _as_queue_map(per_queue),
            "groups": ordinary,
            "roles": sorted(spec.roles),
        }
        await _audit(conn, actor, "agent.create", f"agent:{spec.username}", detail)
        row = await store.agent_by_username(conn, spec.username)
        assert row is not None
        return (await agents_out(conn, [row]))[0]


async def update_agent(
    pool: asyncpg.Pool, accounts: Accounts, actor: Principal, username: str, change: AgentUpdate
) -> AgentOut:
    fields: dict[str, Any] = change.model_dump(
        exclude_unset=True, include={"full_name", "email", "is_admin", "valid", "capabilities"}
    )
    # null leaves a field that can't be null as it is (it was a 500: a NOT NULL violation).
    fields = {k: v for k, v in fields.items() if v is not None or k in ("email", "capabilities")}
    if "capabilities" in fields:
        fields["capabilities"] = sorted(set(fields["capabilities"] or []))
    per_queue = ordinary = None
    if change.permissions is not None or change.groups is not None:
        per_queue, ordinary = _grants(change.permissions, change.groups)
    if change.password is not None:
        fields["password_hash"] = await accounts.hash(change.password)
    async with pool.acquire() as conn, conn.transaction():
        row = await store.agent_by_username(conn, username)
        if row is None:
            raise ApiError(404, "agent_not_found", f"no agent {username!r}")
        agent_id = row["id"]
        demoted = fields.get("is_admin") is False or fields.get("valid") is False
        if demoted and row["is_admin"] and row["valid"] and await store.other_valid_admins(conn, agent_id) == 0:
            raise ApiError(409, "last_admin", "this would leave no valid administrator")
        if change.roles is not None:
            await _check_roles(conn, change.roles)
            await store.replace_agent_roles(conn, agent_id, change.roles)
        await store.update_agent(conn, agent_id, fields)
        if change.permissions is not None and per_queue is not None:
            await store.replace_agent_grants(conn, agent_id, per_queue, per_queue=True)
        if change.groups is not None and ordinary is not None:
            await store.replace_agent_grants(conn, agent_id, ordinary, per_queue=False)
        revoked = 0
        if change.password is not None or fields.get("valid") is False:
            revoked = await store.delete_agent_sessions(conn, agent_id)
        detail: dict[str, Any] = {k: v for k, v in fields.items() if k != "password_hash"}
        if change.password is not None:
            detail["password"] = "changed"
        if per_queue is not None and change.permissions is not None:
            detail["permissions"] = _as_queue_map(per_queue)
        if ordinary is not None and change.groups is not None:
            detail["groups"] = ordinary
        if change.roles is not None:
            detail["roles"] = sorted(change.roles)
        if revoked:
            detail["sessions_revoked"] = revoked
        await _audit(conn, actor, "agent.update", f"agent:{row['username']}", detail)
        fresh = await store.agent_by_username(conn, username)
        assert fresh is not None
        return (await agents_out(conn, [fresh]))[0]


async def revoke_sessions(pool: asyncpg.Pool, actor: Principal, username: str) -> int:
    async with pool.acquire() as conn, conn.transaction():
        row = await store.agent_by_username(conn, username)
        if row is None:
            raise ApiError(404, "agent_not_found", f"no agent {username!r}")
        revoked = await store.delete_agent_sessions(conn, row["id"])
        await _audit(conn, actor, "agent.sessions_revoked", f"agent:{row['username']}", {"sessions": revoked})
        return revoked


# --------------------------------------------------------------------------- groups and roles


async def list_groups(pool: asyncpg.Pool, include_per_queue: bool) -> dict[str, Any]:
    rows = await store.list_groups(pool, include_per_queue=include_per_queue)
    items = [
        {
            "name": r["name"],
            "comment": r["comment"],
            "per_queue": r["per_queue"],
            "queues": [queue_of_group(r["name"])] if r["per_queue"] else list(r["queues"]),
            "created_at": r["created_at"].isoformat(),
        }
        for r in rows
    ]
    return page_of(items)


async def create_group(pool: asyncpg.Pool, actor: Principal, spec: GroupCreate) -> dict[str, Any]:
    async with pool.acquire() as conn, conn.transaction():
        if not await store.insert_group(conn, spec.name, spec.comment):
            raise ApiError(409, "group_exists", f"a group called {spec.name!r} exists", field="name")
        await _audit(conn, actor, "group.create", f"group:{spec.name}", {"comment": spec.comment})
    return {"name": spec.name, "comment": spec.comment, "per_queue": False}


async def list_roles(pool: asyncpg.Pool) -> dict[str, Any]:
    items = []
    for r in await store.list_roles(pool):
        groups = dict(r["groups"])
        items.append(
            {
                "name": r["name"],
                "comment": r["comment"],
                "permissions": {queue_of_group(g): k for g, k in groups.items() if queue_of_group(g)},
                "groups": {g: k for g, k in groups.items() if not queue_of_group(g)},
            }
        )
    return page_of(items)


async def put_role(pool: asyncpg.Pool, actor: Principal, name: str, spec: RoleIn) -> dict[str, Any]:
    per_queue, ordinary = _grants(spec.permissions, spec.groups)
    async with pool.acquire() as conn, conn.transaction():
        await store.upsert_role(conn, name, spec.comment)
        await store.replace_role_grants(conn, name, {**per_queue, **ordinary})
        detail = {"comment": spec.comment, "permissions": _as_queue_map(per_queue), "groups": ordinary}
        await _audit(conn, actor, "role.put", f"role:{name}", detail)
    return {"name": name, "comment": spec.comment, "permissions": _as_queue_map(per_queue), "groups": ordinary}


async def list_audit(pool: asyncpg.Pool, page: int, page_size: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        total = await store.count_audit(conn)
        rows = await store.list_audit(conn, page_size, _offset(page, page_size))
    items = [
        {
            "id": r["id"],
            "at": r["at"].isoformat(),
            "actor": r["actor"],
            "action": r["action"],
            "target": r["target"],
            "detail": r["detail"],
            "correlation_id": r["correlation_id"],
        }
        for r in rows
    ]
    return {"total": total, "items": items, "page": page, "page_size": page_size}
