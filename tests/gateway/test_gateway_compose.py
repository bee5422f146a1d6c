"""New tickets and the answer preview, with the real tickets and notify services behind the gateway.

Tickets and notify run with uvicorn on loopback ports with their own databases on the test
broker (one topic prefix); queues are created through the gateway's admin API, so tickets
publishes ``QueueConfigured`` and notify learns each queue's salutation and signature from it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.gateway.app import create_app
from shared.settings import ServiceSettings
from tests.conftest import eventually
from tests.gateway.conftest import (
    agent_client,
    create_agent,
    csrf,
    fresh_database,
    gateway_settings,
    login,
    served,
    wide_settings,
)
from tests.gateway.test_gateway_with_tickets import NONEXISTENT, make_tickets

tickets_app = pytest.importorskip("services.tickets.app")
tickets_settings = pytest.importorskip("services.tickets.settings")
notify_app = pytest.importorskip("services.notify.app")
notify_settings = pytest.importorskip("services.notify.settings")

pytestmark = pytest.mark.timeout(300)

SALUTATION = "Dear {{ customer_name }},"
SIGNATURE = "Kind regards,\n{{ agent_name }}\n-- \nRaw desk"
QUEUES = {"Raw": "users", "Permissions": "permissions"}


@dataclass
class World:
    gateway: httpx.AsyncClient  # the admin
    settings: ServiceSettings
    tickets_url: str
    notify_url: str
    raw: str
    secret: str


@pytest.fixture(scope="module")
async def world(pg_server: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    async with (
        fresh_database(pg_server) as tickets_db,
        fresh_database(pg_server) as notify_db,
        fresh_database(pg_server) as gateway_db,
    ):
        base = wide_settings(tickets_db, kafka_bootstrap, prefix)
        t_settings = tickets_settings.TicketsSettings(
            **{**base.model_dump(), "service_name": "tickets", "timer_interval_seconds": 0}
        )
        n_settings = notify_settings.NotifySettings(
            **{**base.model_dump(), "database_url": notify_db, "service_name": "notify", "smtp_relay_port": 1}
        )
        async with (
            served(tickets_app.create_app(t_settings)) as tickets,
            served(notify_app.create_app(n_settings)) as nf,
        ):
            gw = gateway_settings(
                wide_settings(gateway_db, kafka_bootstrap, prefix), tickets_url=tickets.url, notify_url=nf.url
            )
            app = create_app(gw)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as admin:
                    await login(admin)
                    for name, group in QUEUES.items():
                        body = {"group": group, "salutation": SALUTATION, "signature": SIGNATURE}
                        put = await admin.put(f"/api/admin/queues/{name}", json=body, headers=csrf(admin))
                        assert put.status_code == 200, put.text

                    async def ready() -> bool:  # QueueConfigured → the gateway's and notify's consumers
                        known = set(QUEUES) <= set((await admin.get("/api/me")).json()["permissions"])
                        async with httpx.AsyncClient(base_url=nf.url) as http:
                            configured = (await http.get("/queues/Raw/settings")).status_code == 200
                        return known and configured

                    await eventually(ready, timeout=120)
                    raw_mail, secret_mail = f"m-raw-{prefix}", f"m-secret-{prefix}"
                    numbers = await make_tickets(
                        base, admin, {raw_mail: ("Raw", "Printer on fire"), secret_mail: ("Permissions", "Secret")}
                    )
                    yield World(admin, base, tickets.url, nf.url, numbers[raw_mail], numbers[secret_mail])


async def test_the_preview_shows_salutation_text_and_signature_as_notify_sends_them(world: World) -> None:
    admin = world.gateway
    answer = await admin.post(
        f"/api/tickets/{world.raw}/answer/preview", json={"body": "It is out now."}, headers=csrf(admin)
    )
    assert answer.status_code == 200, answer.text
    preview = answer.json()
    assert preview["subject"] == f"[Ticket#{world.raw}] Re: Printer on fire"
    assert preview["text"] == "Dear Carol,\n\nIt is out now.\n\nKind regards,\nadmin\n-- \nRaw desk\n"
    assert "Dear Carol,<br>" in preview["html"] and "It is out now." in preview["html"]
    assert preview["template_errors"] == []

    own = await admin.post(
        f"/api/tickets/{world.raw}/answer/preview",
        json={"body": "<b>x</b> {{ title }}", "subject": "Fire out"},
        headers=csrf(admin),
    )
    assert own.json()["subject"] == f"[Ticket#{world.raw}] Re: Fire out"  # as notify sends it
    assert "{{ title }}" in own.json()["text"]  # the agent's text is never a template
    assert "&lt;b&gt;x&lt;/b&gt;" in own.json()["html"]


async def test_the_preview_needs_what_answering_needs(world: World) -> None:
    admin = world.gateway
    async with agent_client(admin, "pia", {"Raw": ["ro", "note"]}) as reader:
        denied = await reader.post(f"/api/tickets/{world.raw}/answer/preview", json={"body": "x"}, headers=csrf(reader))
        assert denied.status_code == 403, denied.text
        assert denied.json()["permission"] == "rw" and denied.json()["queue"] == "Raw"
        hidden = await reader.post(
            f"/api/tickets/{world.secret}/answer/preview", json={"body": "x"}, headers=csrf(reader)
        )
        unknown = await reader.post(
            f"/api/tickets/{NONEXISTENT}/answer/preview", json={"body": "x"}, headers=csrf(reader)
        )
        assert hidden.status_code == unknown.status_code == 404
        assert hidden.json()["detail"].replace(world.secret, "<n>") == unknown.json()["detail"].replace(
            NONEXISTENT, "<n>"
        )
    async with agent_client(admin, "rita", {"Raw": ["rw"]}) as writer:
        allowed = await writer.post(
            f"/api/tickets/{world.raw}/answer/preview", json={"body": "x"}, headers=csrf(writer)
        )
        assert allowed.status_code == 200 and "Kind regards,\nrita\n" in allowed.json()["text"]


async def test_a_phone_ticket_is_created_by_the_agent_with_the_create_permission(world: World) -> None:
    async with httpx.AsyncClient(base_url=world.tickets_url) as http:
        if "post" not in (await http.get("/openapi.json")).json()["paths"].get("/tickets", {}):
            pytest.skip("tickets has no POST /tickets yet")
    admin = world.gateway
    async with agent_client(admin, "phil", {"Raw": ["create", "ro"]}) as creator:
        body = {
            "kind": "phone",
            "queue": "Raw",
            "customer": {"email": "dora@example.org", "name": "Dora"},
            "subject": "Called: cannot log in",
            "body": "Dora called, she cannot log in.",
            "priority": 4,
        }
        created = await creator.post("/api/tickets", json=body, headers=csrf(creator))
        assert created.status_code == 201, created.text
        number = created.json()["number"]
        assert {"number", "ticket_id", "version", "article_id"} <= set(created.json())
        zoom = (await creator.get(f"/api/tickets/{number}")).json()
        assert zoom["queue"] == "Raw" and zoom["priority"] == 4 and zoom["customer_email"] == "dora@example.org"
        assert zoom["articles"][0]["body"] == "Dora called, she cannot log in."
        history = (await creator.get(f"/api/tickets/{number}/history")).json()
        assert history["events"][0]["actor"] == "phil"  # X-Actor reached tickets
    async with agent_client(admin, "lena", {"Raw": ["rw"]}) as lead:
        await create_agent(admin, "otto", {"Raw": ["rw"]})
        body = {
            "kind": "email",
            "queue": "Raw",
            "customer": {"email": "emil@example.org", "name": "Emil"},
            "subject": "Your account",
            "body": "We closed the duplicate account.",
            "lock": True,
            "owner": "OTTO",
        }
        created = await lead.post("/api/tickets", json=body, headers=csrf(lead))
        assert created.status_code == 201, created.text
        zoom = (await lead.get(f"/api/tickets/{created.json()['number']}")).json()
        assert zoom["locked"] is True and zoom["owner"] == "otto"  # the owner's name as the gateway knows it
        assert zoom["articles"][0]["sender_type"] == "agent"
