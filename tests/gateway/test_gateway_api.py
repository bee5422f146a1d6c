"""The gateway's API without the tickets service: administration, permissions from
QueueConfigured, answers that do not leak, the UI, OpenAPI, errors, and live updates."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.gateway.web import CONTENT_SECURITY_POLICY
from shared.events import NoteAdded, TicketCreated, TicketLocked, TicketMoved
from tests.conftest import eventually
from tests.gateway.conftest import (
    PASSWORD,
    RunningGateway,
    agent_client,
    bearer,
    configure_queues,
    create_agent,
    csrf,
    envelope,
    login,
    other_client,
    publish,
    served,
)

pytestmark = pytest.mark.timeout(180)

QUEUE_GROUPS = {"Raw": "users", "Junk": "junk", "Info-en": "info", "Info-de": "info", "Permissions": "permissions"}


@pytest.fixture
async def admin(gateway: httpx.AsyncClient, running_gateway: RunningGateway) -> AsyncIterator[httpx.AsyncClient]:
    """The admin's browser, on a gateway that knows the demo queues (from QueueConfigured)."""
    await login(gateway)
    if not running_gateway.queues_configured:
        await configure_queues(running_gateway.settings, gateway, QUEUE_GROUPS)
        running_gateway.queues_configured = True
    yield gateway


# --------------------------------------------------------------------------- administration


async def test_admin_creates_an_agent_with_per_queue_permissions(admin: httpx.AsyncClient) -> None:
    created = await create_agent(admin, "vera", {"Raw": ["rw"], "Press": ["ro", "note"], "Junk": []})
    assert created["permissions"] == {"Raw": ["rw"], "Press": ["note", "ro"]}
    assert created["is_admin"] is False and "password" not in json.dumps(created)
    listed = (await admin.get("/api/admin/agents")).json()
    assert {"total", "items", "page", "page_size"} <= set(listed)
    assert "vera" in [a["username"] for a in listed["items"]]
    async with other_client(admin) as vera:
        await login(vera, "vera", PASSWORD)
        me = (await vera.get("/api/me")).json()
        assert me["username"] == "vera" and me["is_admin"] is False
        # Press is not configured yet; a per-queue grant applies to it by name all the same.
        assert me["permissions"] == {"Raw": list(_all_kinds()), "Press": ["ro", "note"]}
        assert me["counters"] == {"locked": None, "watched": None, "new": None}  # tickets is down


def _all_kinds() -> tuple[str, ...]:
    from services.gateway.permissions import PERMISSIONS

    return PERMISSIONS


async def test_agent_creation_errors_name_the_field(admin: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"username": "w1", "password": PASSWORD, "permissions": {"Raw": ["ro", "write"]}}, 422, "permissions.Raw[1]"),
        ({"username": "w2", "password": PASSWORD, "permissions": {"Raw": "rw"}}, 422, "permissions.Raw"),
        ({"username": "w3", "password": "short", "permissions": {}}, 422, "password"),
        ({"username": "system:x", "password": PASSWORD}, 422, "username"),
        ({"username": "w4", "password": PASSWORD, "roles": ["nope"]}, 422, "roles[0]"),
        ({"username": "w5", "password": PASSWORD, "groups": {"queue:Raw": ["rw"]}}, 422, "groups.queue:Raw"),
        ({"username": "ADMIN", "password": PASSWORD}, 409, "username"),
    ]
    for body, status, field in cases:
        response = await admin.post("/api/admin/agents", json=body, headers=csrf(admin))
        assert response.status_code == status, (body, response.text)
        assert response.json()["field"] == field and response.json()["detail"]


async def test_non_admins_get_403_on_every_admin_endpoint(admin: httpx.AsyncClient) -> None:
    async with agent_client(admin, "walt", {"Raw": ["rw"]}) as walt:
        calls = [
            ("GET", "/api/admin/agents", None),
            ("POST", "/api/admin/agents", {"username": "x1", "password": PASSWORD}),
            ("GET", "/api/admin/agents/walt", None),
            ("PATCH", "/api/admin/agents/walt", {"is_admin": True}),
            ("DELETE", "/api/admin/agents/admin/sessions", None),
            ("GET", "/api/admin/groups", None),
            ("POST", "/api/admin/groups", {"name": "g1"}),
            ("GET", "/api/admin/roles", None),
            ("PUT", "/api/admin/roles/r1", {}),
            ("GET", "/api/admin/audit", None),
            ("GET", "/api/admin/queues", None),
            ("PUT", "/api/admin/queues/Raw", {"group": "users"}),
            ("PUT", "/api/admin/templates/t1", {"name": "t", "body": "b", "queues": []}),
            ("GET", "/api/admin/system-addresses", None),
            ("POST", "/api/admin/filters", {}),
        ]
        for method, path, body in calls:
            response = await walt.request(method, path, json=body, headers=csrf(walt))
            assert response.status_code == 403, (method, path, response.text)
            assert response.json()["error"] == "forbidden"
        me = (await walt.get("/api/me")).json()
        assert me["is_admin"] is False


async def test_roles_and_groups_grant_queues_through_queue_configured_groups(admin: httpx.AsyncClient) -> None:
    """Group grants use QueueConfigured.group: 'info' opens Info-en and Info-de; roles add up."""
    group = await admin.post("/api/admin/groups", json={"name": "press-team"}, headers=csrf(admin))
    assert group.status_code == 201
    again = await admin.post("/api/admin/groups", json={"name": "press-team"}, headers=csrf(admin))
    assert again.status_code == 409
    reserved = await admin.post("/api/admin/groups", json={"name": "queue:Raw"}, headers=csrf(admin))
    assert reserved.status_code == 422
    role = await admin.put(
        "/api/admin/roles/raw-notes",
        json={"comment": "note in Raw", "permissions": {"Raw": ["ro", "note"]}},
        headers=csrf(admin),
    )
    assert role.status_code == 200, role.text
    await create_agent(admin, "ines", {}, groups={"info": ["ro"]}, roles=["raw-notes"])
    async with other_client(admin) as ines:
        await login(ines, "ines", PASSWORD)
        permissions = (await ines.get("/api/me")).json()["permissions"]
        assert permissions == {"Info-de": ["ro"], "Info-en": ["ro"], "Raw": ["ro", "note"]}
    roles = (await admin.get("/api/admin/roles")).json()["items"]
    assert {
        "name": "raw-notes",
        "comment": "note in Raw",
        "permissions": {"Raw": ["note", "ro"]},
        "groups": {},
    } in roles
    groups = {g["name"]: g for g in (await admin.get("/api/admin/groups")).json()["items"]}
    assert groups["info"]["queues"] == ["Info-de", "Info-en"]
    assert "queue:Raw" not in groups


async def test_every_admin_change_is_audited_with_its_author(admin: httpx.AsyncClient) -> None:
    await create_agent(admin, "olga", {"Raw": ["ro"]})
    await admin.patch(
        "/api/admin/agents/olga", json={"password": "another-password", "full_name": "Olga"}, headers=csrf(admin)
    )
    await admin.put("/api/admin/roles/audited", json={"groups": {"users": ["ro"]}}, headers=csrf(admin))
    entries = (await admin.get("/api/admin/audit", params={"page_size": 500})).json()["items"]
    mine = [(e["actor"], e["action"], e["target"]) for e in entries]
    assert ("admin", "agent.create", "agent:olga") in mine
    assert ("admin", "agent.update", "agent:olga") in mine
    assert ("admin", "role.put", "role:audited") in mine
    update = next(e for e in entries if e["action"] == "agent.update" and e["target"] == "agent:olga")
    assert update["detail"]["password"] == "changed" and "another-password" not in json.dumps(entries)
    assert update["correlation_id"]


async def test_the_last_admin_stays_an_admin(admin: httpx.AsyncClient) -> None:
    response = await admin.patch("/api/admin/agents/admin", json={"is_admin": False}, headers=csrf(admin))
    assert response.status_code == 409 and response.json()["error"] == "last_admin"


# --------------------------------------------------------------------------- no leaks, no guesses


async def test_an_invisible_queue_answers_like_an_unknown_one(admin: httpx.AsyncClient) -> None:
    async with agent_client(admin, "rita", {"Raw": ["rw"]}) as rita:
        assert (await rita.get("/api/me")).json()["permissions"] == {"Raw": list(_all_kinds())}
        secret = await rita.get("/api/tickets", params={"queue": "Permissions"})
        unknown = await rita.get("/api/tickets", params={"queue": "No-such-queue"})
        assert secret.status_code == unknown.status_code == 200
        assert secret.json() == unknown.json() == {"total": 0, "items": [], "page": 1, "page_size": 25}
        secret = await rita.get("/api/templates", params={"queue": "Permissions"})
        unknown = await rita.get("/api/templates", params={"queue": "Nope"})
        assert secret.status_code == unknown.status_code == 404
        assert secret.json()["error"] == unknown.json()["error"] == "queue_not_found"
    async with agent_client(admin, "nils", {}) as nils:  # no queue at all: tickets is not even asked
        assert (await nils.get("/api/search", params={"q": "password"})).json()["total"] == 0
        assert (await nils.get("/api/tickets")).json()["total"] == 0
        assert (await nils.get("/api/me")).json()["counters"] == {"locked": 0, "watched": 0, "new": 0}


async def test_audit_verify_needs_the_audit_capability(admin: httpx.AsyncClient) -> None:
    async with agent_client(admin, "paul", {"Raw": ["rw"]}) as paul:
        denied = await paul.get("/api/audit/verify")
        assert denied.status_code == 403
    await create_agent(admin, "aude", {}, capabilities=["audit"])
    async with other_client(admin) as aude:
        await login(aude, "aude", PASSWORD)
        allowed = await aude.get("/api/audit/verify")  # allowed, then tickets is down
        assert allowed.status_code == 503 and allowed.json()["service"] == "tickets"


async def test_a_service_that_is_down_is_named(admin: httpx.AsyncClient) -> None:
    for path, service in (
        ("/api/queues", "tickets"),
        ("/api/tickets/2026112510000011", "tickets"),
        ("/api/admin/system-addresses", "router"),
        ("/api/mails/m-1", "tickets"),
    ):
        response = await admin.get(path)
        assert response.status_code == 503, path
        assert response.json() == {
            "error": "service_unavailable",
            "detail": f"{service} is unavailable",
            "service": service,
        }


# --------------------------------------------------------------------------- UI, OpenAPI, errors


async def test_the_ui_is_served_with_a_strict_csp(gateway: httpx.AsyncClient) -> None:
    index = await gateway.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script src="/static/app.js"' in index.text
    assert index.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert index.headers["x-content-type-options"] == "nosniff"
    assert index.headers["x-frame-options"] == "DENY"
    script = await gateway.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    style = await gateway.get("/static/app.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    api = await gateway.get("/api/me")
    assert api.headers["cache-control"] == "no-store" and "content-security-policy" in api.headers


async def test_openapi_documents_the_public_api(gateway: httpx.AsyncClient) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    for path in (
        "/api/login",
        "/api/logout",
        "/api/me",
        "/api/queues",
        "/api/tickets",
        "/api/tickets/{number}",
        "/api/tickets/{number}/lock",
        "/api/tickets/{number}/unlock",
        "/api/tickets/{number}/answer",
        "/api/tickets/{number}/note",
        "/api/tickets/{number}/move",
        "/api/tickets/{number}/state",
        "/api/tickets/{number}/priority",
        "/api/tickets/{number}/merge",
        "/api/tickets/{number}/spam",
        "/api/tickets/{number}/watch",
        "/api/tickets/{number}/unwatch",
        "/api/tickets/{number}/history",
        "/api/mails/{mail_id}",
        "/api/mails/{mail_id}/raw",
        "/api/mails/{mail_id}/parts/{part}",
        "/api/search",
        "/api/audit/verify",
        "/api/admin/agents",
        "/api/templates",
        "/api/events",
    ):
        assert path in spec["paths"], path
    answer = spec["paths"]["/api/tickets/{number}/answer"]["post"]
    assert answer["requestBody"]["required"] is True


async def test_errors_are_json_naming_the_problem(gateway: httpx.AsyncClient) -> None:
    missing = await gateway.get("/api/nope")
    assert missing.status_code == 404 and set(missing.json()) == {"error", "detail"}
    invalid = await gateway.post("/api/login", json={"username": "x"})
    assert invalid.status_code == 422
    assert invalid.json()["error"] == "invalid_request" and invalid.json()["field"] == "password"
    wrong_method = await gateway.delete("/api/login")
    assert wrong_method.status_code == 405 and wrong_method.json()["error"] == "method_not_allowed"
    await login(gateway)
    bad_body = await gateway.post("/api/tickets/1/move", json={}, headers=csrf(gateway))
    assert bad_body.status_code == 422 and bad_body.json()["field"] == "queue"
    bad_page = await gateway.get("/api/tickets", params={"page": 0})
    assert bad_page.status_code == 422 and bad_page.json()["field"] == "page"


# --------------------------------------------------------------------------- live updates


async def _collect(client: httpx.AsyncClient, url: str, token: str, into: list[dict[str, Any]]) -> list[str]:
    """Read one event stream until it ends; data lines go to ``into``, event names are returned."""
    names: list[str] = []
    async with client.stream("GET", url, headers=bearer(token)) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                into.append(json.loads(line[6:]))
            elif line.startswith("event: "):
                names.append(line[7:])
    return names


async def test_live_events_reach_only_agents_who_see_the_queue(
    admin: httpx.AsyncClient, running_gateway: RunningGateway
) -> None:
    await create_agent(admin, "lena", {"Raw": ["ro"]})
    async with other_client(admin) as browser:
        lena_token = await login(browser, "lena", PASSWORD)
        admin_token = await login(browser)
    hub = running_gateway.app.state.gateway.live
    await asyncio.wait_for(hub.tail.ready.wait(), 30)
    seen_by_lena: list[dict[str, Any]] = []
    seen_by_admin: list[dict[str, Any]] = []
    async with served(running_gateway.app, lifespan=False) as server, httpx.AsyncClient(timeout=30) as http:
        url = f"{server.url}/api/events"
        lena_stream = asyncio.create_task(_collect(http, url, lena_token, seen_by_lena))
        admin_stream = asyncio.create_task(_collect(http, url, admin_token, seen_by_admin))
        await eventually(lambda: _subscribed(hub, 2), timeout=10)
        raw, secret = "t-raw-1", "t-perm-1"
        await publish(
            running_gateway.settings,
            "ticket.events",
            [
                envelope(TicketCreated(ticket_id=raw, ticket_number="1001", title="hello", queue="Raw"), raw),
                envelope(
                    TicketCreated(ticket_id=secret, ticket_number="1002", title="secret", queue="Permissions"), secret
                ),
                envelope(TicketLocked(ticket_id=secret, agent="admin"), secret, actor="admin"),
                envelope(TicketLocked(ticket_id=raw, agent="admin"), raw, actor="admin"),
                envelope(TicketMoved(ticket_id=raw, from_queue="Raw", to_queue="Permissions"), raw, actor="admin"),
                envelope(NoteAdded(ticket_id=raw, article_id="a1", body="now secret"), raw, actor="admin"),
            ],
        )
        await eventually(lambda: _count(seen_by_admin, 6), timeout=30)
        by_lena = [(e["type"], e["ticket_id"]) for e in seen_by_lena]
        assert by_lena == [("TicketCreated", raw), ("TicketLocked", raw), ("TicketMoved", raw)]
        assert seen_by_lena[0] == {
            "type": "TicketCreated",
            "ticket_id": raw,
            "ticket_number": "1001",
            "agent": "tester",
        }
        assert seen_by_lena[1]["agent"] == "admin" and seen_by_lena[1]["ticket_number"] == "1001"
        assert "secret" not in json.dumps(seen_by_lena) and "Permissions" not in json.dumps(seen_by_lena)
        # Logging out ends the stream at the next heartbeat.
        out = await http.post(f"{server.url}/api/logout", headers=bearer(lena_token))
        assert out.status_code == 204
        assert await asyncio.wait_for(lena_stream, 10) == ["logout"]
        admin_stream.cancel()
        await asyncio.gather(admin_stream, return_exceptions=True)
        await eventually(lambda: _subscribed(hub, 0), timeout=10)


async def _subscribed(hub: Any, n: int) -> bool:
    return len(hub.subscribers) == n


async def _count(items: list[Any], n: int) -> bool:
    return len(items) >= n


async def test_live_events_need_a_session(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/api/events")
    assert response.status_code == 401 and response.json()["error"] == "unauthenticated"
