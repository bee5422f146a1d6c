"""Agents, sessions and login: the gateway's authentication, over ``store`` and ``security``.

A session token is both the ``firstline_session`` cookie and the bearer token; only its digest
is stored. Each request loads the session and the agent's grants in one query
(``store.session_principal``), so a revoked session, a disabled agent or a changed permission
takes effect on the next request.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from argon2 import PasswordHasher

from services.gateway import store
from services.gateway.permissions import AgentAccess, Role
from services.gateway.security import (
    LoginRateLimiter,
    hash_password,
    needs_rehash,
    new_csrf_token,
    new_session_token,
    token_digest,
    verify_password,
    verify_unknown_user,
)
from services.gateway.settings import GatewaySettings

logger = logging.getLogger(__name__)

Via = Literal["cookie", "bearer"]

# Global rights that are not about a queue. 'audit': may run /api/audit/verify.
CAPABILITIES = frozenset({"audit"})


@dataclass(frozen=True)
class Principal:
    """The agent behind one request, with the rights loaded for it."""

    agent_id: int
    username: str
    full_name: str
    is_admin: bool
    capabilities: frozenset[str]
    access: AgentAccess
    session_digest: str
    via: Via
    roles: tuple[str, ...] = ()
    groups: dict[str, list[str]] = field(default_factory=dict)

    def has(self, capability: str) -> bool:
        return self.is_admin or capability in self.capabilities


@dataclass(frozen=True)
class LoginResult:
    token: str
    csrf_token: str
    username: str
    expires_at: datetime


class LoginRefused(Exception):
    """Wrong credentials (``retry_after`` None) or too many attempts (seconds to wait)."""

    def __init__(self, retry_after: int | None = None) -> None:
        super().__init__("too many attempts" if retry_after else "wrong username or password")
        self.retry_after = retry_after


def make_hasher(settings: GatewaySettings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=settings.argon2_parallelism,
    )


def principal_from_row(row: asyncpg.Record, via: Via) -> Principal:
    groups: dict[str, list[str]] = dict(row["groups"] or {})
    roles = tuple(
        Role(r["name"], {g: frozenset(kinds) for g, kinds in (r["groups"] or {}).items()}) for r in row["roles"] or []
    )
    access = AgentAccess(
        username=row["username"],
        groups={g: frozenset(kinds) for g, kinds in groups.items()},
        roles=roles,
        is_admin=row["is_admin"],
    )
    return Principal(
        agent_id=row["agent_id"],
        username=row["username"],
        full_name=row["full_name"],
        is_admin=row["is_admin"],
        capabilities=frozenset(row["capabilities"] or ()),
        access=access,
        session_digest=row["token_digest"],
        via=via,
        roles=tuple(role.name for role in roles),
        groups=groups,
    )


class Accounts:
    """Login, sessions and the first admin. One per process (the rate limiter is in memory)."""

    def __init__(self, settings: GatewaySettings, pool: asyncpg.Pool, csrf_secret: bytes) -> None:
        self.settings = settings
        self.pool = pool
        self.csrf_secret = csrf_secret
        self.hasher = make_hasher(settings)
        self.limiter = LoginRateLimiter(
            settings.login_max_failures,
            settings.login_window_seconds,
            ip_max_failures=settings.login_ip_max_failures,
        )

    # ------------------------------------------------------------------ passwords (off the event loop)

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(hash_password, password, self.hasher)

    async def _verify(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is None:
            return await asyncio.to_thread(verify_unknown_user, password, self.hasher)
        return await asyncio.to_thread(verify_password, stored_hash, password, self.hasher)

    # ------------------------------------------------------------------ login and sessions

    async def login(self, username: str, password: str, *, ip: str, user_agent: str | None) -> LoginResult:
        """A new session for valid credentials; raises :class:`LoginRefused` otherwise."""
        wait = self.limiter.retry_after(username, ip)
        if wait:
            raise LoginRefused(wait)
        agent = await store.agent_by_username(self.pool, username)
        stored_hash = agent["password_hash"] if agent is not None and agent["valid"] else None
        ok = await self._verify(stored_hash, password)
        if not ok or agent is None:
            self.limiter.record_failure(username, ip)
            raise LoginRefused()
        self.limiter.record_success(username, ip)
        if needs_rehash(agent["password_hash"], self.hasher):
            await store.update_agent(self.pool, agent["id"], {"password_hash": await self.hash(password)})
        token = new_session_token()
        digest = token_digest(token)
        expires_at = datetime.now(UTC) + timedelta(seconds=self.settings.session_max_age_seconds)
        await store.insert_session(
            self.pool, digest=digest, agent_id=agent["id"], expires_at=expires_at, ip=ip, user_agent=user_agent
        )
        return LoginResult(token, new_csrf_token(self.csrf_secret, digest), agent["username"], expires_at)

    async def authenticate(self, token: str, via: Via) -> Principal | None:
        digest = token_digest(token)
        row = await store.session_principal(self.pool, digest, self.settings.session_idle_seconds)
        if row is None:
            return None
        idle = (datetime.now(UTC) - row["last_seen_at"]).total_seconds()
        if idle > self.settings.session_touch_seconds:
            await store.touch_session(self.pool, digest)
        return principal_from_row(row, via)

    async def still_valid(self, principal: Principal) -> Principal | None:
        """The principal reloaded (rights may have changed), or None if the session has ended."""
        row = await store.session_principal(self.pool, principal.session_digest, self.settings.session_idle_seconds)
        return principal_from_row(row, principal.via) if row else None

    async def logout(self, principal: Principal) -> None:
        await store.delete_session(self.pool, principal.session_digest)

    def csrf_token(self, principal: Principal) -> str:
        return new_csrf_token(self.csrf_secret, principal.session_digest)

    # ------------------------------------------------------------------ the first admin

    async def ensure_first_admin(self) -> None:
        """Create ``FIRSTLINE_ADMIN_USER`` as an administrator if no agent has that name.

        Without ``FIRSTLINE_ADMIN_PASSWORD`` a password is generated and logged once, at
        creation. An existing agent is left alone (its password may have been changed since).
        """
        username = self.settings.firstline_admin_user
        if await store.agent_by_username(self.pool, username) is not None:
            return
        password = self.settings.firstline_admin_password or secrets.token_urlsafe(16)
        password_hash = await self.hash(password)
        async with self.pool.acquire() as conn, conn.transaction():
            agent_id = await store.insert_agent(conn, username=username, password_hash=password_hash, is_admin=True)
            if agent_id is None:
                return  # another replica was faster
            await store.audit(
                conn,
                actor="system:gateway",
                action="agent.create",
                target=f"agent:{username}",
                detail={"is_admin": True, "first_admin": True},
                correlation_id=None,
            )
        if self.settings.firstline_admin_password:
            logger.info("first administrator %r created", username)
        else:
            logger.warning(
                "first administrator %r created with the generated password %s (set FIRSTLINE_ADMIN_PASSWORD"
                " to choose it); it is shown only this once",
                username,
                password,
            )


def session_cookie_attributes(settings: GatewaySettings, https: bool) -> dict[str, Any]:
    secure = https if settings.cookie_secure is None else settings.cookie_secure
    return {"secure": secure, "samesite": "lax", "path": "/", "max_age": settings.session_max_age_seconds}
