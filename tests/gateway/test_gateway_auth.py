"""Login, sessions, bearer tokens, CSRF, revocation and the first admin, on the real app."""

from __future__ import annotations

import logging
import re

import httpx
import pytest

from services.gateway.accounts import Accounts
from services.gateway.app import MIGRATIONS
from services.gateway.settings import GatewaySettings
from shared.db import create_pool, migrate
from shared.settings import ServiceSettings
from tests.gateway.conftest import (
    ADMIN,
    ADMIN_PASSWORD,
    PASSWORD,
    bearer,
    create_agent,
    csrf,
    gateway_settings,
    login,
    other_client,
)

pytestmark = pytest.mark.timeout(120)


def set_cookies(response: httpx.Response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


async def test_login_sets_session_and_csrf_cookies_and_returns_a_token(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post("/api/login", json={"username": ADMIN, "password": ADMIN_PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == ADMIN and len(body["token"]) >= 43 and body["csrf_token"]
    cookies = set_cookies(response)
    session, token = cookies["firstline_session"].lower(), cookies["firstline_csrf"].lower()
    assert "httponly" in session and "samesite=lax" in session and "path=/" in session
    assert "httponly" not in token and "samesite=lax" in token
    assert gateway.cookies.get("firstline_session") == body["token"]
    me = await gateway.get("/api/me")
    assert me.status_code == 200
    assert me.json()["username"] == ADMIN and me.json()["is_admin"] is True


async def test_usernames_are_case_insensitive(gateway: httpx.AsyncClient) -> None:
    assert await login(gateway, ADMIN.upper(), ADMIN_PASSWORD)


@pytest.mark.parametrize("username", [ADMIN, "nobody"])
async def test_wrong_credentials_are_one_answer(gateway: httpx.AsyncClient, username: str) -> None:
    response = await gateway.post("/api/login", json={"username": username, "password": "wrong-password"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials", "detail": "wrong username or password"}
    assert "set-cookie" not in response.headers


async def test_login_is_rate_limited_with_retry_after(gateway: httpx.AsyncClient) -> None:
    await login(gateway)
    await create_agent(gateway, "frank", {})
    for _ in range(5):
        response = await gateway.post("/api/login", json={"username": "frank", "password": "guess"})
        assert response.status_code == 401
    for password in ("guess", PASSWORD):  # even the right password waits
        response = await gateway.post("/api/login", json={"username": "frank", "password": password})
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) > 0
        assert response.json()["error"] == "too_many_attempts"
    assert await login(gateway)  # other usernames from the same address are not locked out


async def test_login_checks_origin(gateway: httpx.AsyncClient) -> None:
    body = {"username": ADMIN, "password": ADMIN_PASSWORD}
    evil = await gateway.post("/api/login", json=body, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"] == "bad_origin"
    same = await gateway.post("/api/login", json=body, headers={"Origin": "http://testserver"})
    assert same.status_code == 200


async def test_bearer_token_without_cookies(gateway: httpx.AsyncClient) -> None:
    token = await login(gateway)
    async with other_client(gateway) as api:
        assert (await api.get("/api/me")).status_code == 401
        me = await api.get("/api/me", headers=bearer(token))
        assert me.status_code == 200 and me.json()["username"] == ADMIN
        # A bearer request needs no CSRF header: browsers never send one by themselves.
        created = await api.post(
            "/api/admin/agents",
            json={"username": "bob", "password": PASSWORD, "permissions": {}},
            headers=bearer(token),
        )
        assert created.status_code == 201


async def test_cookie_requests_need_the_csrf_header(gateway: httpx.AsyncClient) -> None:
    await login(gateway)
    body = {"username": "carol", "password": PASSWORD, "permissions": {}}
    missing = await gateway.post("/api/admin/agents", json=body)
    assert missing.status_code == 403 and missing.json()["error"] == "csrf_failed"
    wrong = await gateway.post("/api/admin/agents", json=body, headers={"X-CSRF-Token": "abc.def"})
    assert wrong.status_code == 403
    async with other_client(gateway) as other:  # a token of another session is no good either
        await login(other)
        stolen = await gateway.post("/api/admin/agents", json=body, headers=csrf(other))
        assert stolen.status_code == 403
    assert (await gateway.get("/api/admin/agents")).status_code == 200  # safe methods need none
    ok = await gateway.post("/api/admin/agents", json=body, headers=csrf(gateway))
    assert ok.status_code == 201


async def test_forged_credentials_are_401(gateway: httpx.AsyncClient) -> None:
    gateway.cookies.set("firstline_session", "forged-session-token-forged-session-token-0")
    response = await gateway.get("/api/me")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert (await gateway.get("/api/me", headers=bearer("not-a-token"))).status_code == 401
    assert (await gateway.get("/api/queues", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})).status_code == 401


async def test_logout_revokes_the_session_for_cookie_and_bearer(gateway: httpx.AsyncClient) -> None:
    token = await login(gateway)
    response = await gateway.post("/api/logout", headers=csrf(gateway))
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert "max-age=0" in cleared["firstline_session"].lower()
    async with other_client(gateway) as api:
        assert (await api.get("/api/me", headers=bearer(token))).status_code == 401
        api.cookies.set("firstline_session", token)
        assert (await api.get("/api/me")).status_code == 401


async def test_expired_and_idle_sessions_end(gateway: httpx.AsyncClient, gw_settings: GatewaySettings) -> None:
    import asyncpg

    expired, idle = await login(gateway), await login(gateway)
    conn = await asyncpg.connect(gw_settings.database_url)
    try:
        from services.gateway.security import token_digest

        await conn.execute(
            "update sessions set expires_at = now() - interval '1 second' where token_digest = $1",
            token_digest(expired),
        )
        await conn.execute(
            "update sessions set last_seen_at = now() - interval '3 hours' where token_digest = $1",
            token_digest(idle),
        )
    finally:
        await conn.close()
    async with other_client(gateway) as api:
        assert (await api.get("/api/me", headers=bearer(expired))).status_code == 401
        assert (await api.get("/api/me", headers=bearer(idle))).status_code == 401


async def test_disabling_an_agent_or_changing_its_password_ends_its_sessions(gateway: httpx.AsyncClient) -> None:
    await login(gateway)
    await create_agent(gateway, "dora", {"Raw": ["ro"]})
    async with other_client(gateway) as dora:
        token = await login(dora, "dora", PASSWORD)
        change = await gateway.patch(
            "/api/admin/agents/dora", json={"password": "a-new-password"}, headers=csrf(gateway)
        )
        assert change.status_code == 200
        assert (await dora.get("/api/me", headers=bearer(token))).status_code == 401
        token = await login(dora, "dora", "a-new-password")
        change = await gateway.patch("/api/admin/agents/dora", json={"valid": False}, headers=csrf(gateway))
        assert change.status_code == 200 and change.json()["valid"] is False
        assert (await dora.get("/api/me", headers=bearer(token))).status_code == 401
        refused = await dora.post("/api/login", json={"username": "dora", "password": "a-new-password"})
        assert refused.status_code == 401


async def test_admin_can_revoke_every_session_of_an_agent(gateway: httpx.AsyncClient) -> None:
    await login(gateway)
    await create_agent(gateway, "eve", {})
    async with other_client(gateway) as eve:
        tokens = [await login(eve, "eve", PASSWORD) for _ in range(2)]
        revoked = await gateway.delete("/api/admin/agents/eve/sessions", headers=csrf(gateway))
        assert revoked.json() == {"revoked": 2}
        for token in tokens:
            assert (await eve.get("/api/me", headers=bearer(token))).status_code == 401


class Records(logging.Handler):
    """Collects one logger's records (create_app reconfigures the root logger, so not caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


async def test_first_admin_with_a_generated_password(settings: ServiceSettings) -> None:
    """What the service does at start (every other test logs in as the admin it made from
    FIRSTLINE_ADMIN_PASSWORD); here without a password, on a bare pool."""
    gw = gateway_settings(settings, firstline_admin_user="root", firstline_admin_password=None)
    pool = await create_pool(gw.database_url)
    records = Records()
    logger = logging.getLogger("services.gateway.accounts")
    logger.addHandler(records)
    try:
        await migrate(pool, [MIGRATIONS])
        accounts = Accounts(gw, pool, b"x" * 32)
        await accounts.ensure_first_admin()
        logged = [m for m in records.messages if "first administrator" in m]
        assert len(logged) == 1
        password = re.search(r"generated password (\S+)", logged[0])
        assert password
        session = await accounts.login("root", password.group(1), ip="127.0.0.1", user_agent=None)
        principal = await accounts.authenticate(session.token, "bearer")
        assert principal is not None and principal.is_admin
        records.messages.clear()
        await Accounts(gw, pool, b"x" * 32).ensure_first_admin()  # a restart: kept, nothing logged
        assert not [m for m in records.messages if "first administrator" in m]
        assert await pool.fetchval("select count(*) from agents") == 1
        assert await pool.fetchval("select actor from audit_log") == "system:gateway"
    finally:
        logger.removeHandler(records)
        await pool.close()
