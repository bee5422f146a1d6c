"""The gateway in front of the real tickets service (and ingest, when importable).

Tickets runs with uvicorn on a loopback port with its own database; the gateway with another;
both on the test broker with one topic prefix. Tickets are made the way production makes
them: a ``TicketRouted`` on ``ticket.routed`` (what router publishes), consumed by tickets.
Queues and templates are created through the gateway's admin API.

The heart of it: an agent without rights on the Permissions queue never sees that queue, its
tickets, their counts, search hits or mails, through any read endpoint; and asking about a
hidden ticket answers exactly like asking about one that does not exist.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from services.gateway.app import create_app
from shared.envelope import Envelope
from shared.events import Address, Attachment, ParsedMail, TicketRouted
from shared.settings import ServiceSettings
from tests.conftest import eventually
from tests.gateway.conftest import (
    PASSWORD,
    agent_client,
    bearer,
    create_agent,
    csrf,
    envelope,
    fresh_database,
    gateway_settings,
    login,
    other_client,
    publish,
    served,
    wide_settings,
)

tickets_app = pytest.importorskip("services.tickets.app")
tickets_settings = pytest.importorskip("services.tickets.settings")

pytestmark = pytest.mark.timeout(300)

QUEUES = {"Raw": "users", "Junk": "junk", "Permissions": "permissions"}
NONEXISTENT = "2001010110999999"


@dataclass
class World:
    gateway: httpx.AsyncClient  # logged in as the admin
    settings: ServiceSettings
    tickets_url: str
    raw: str  # ticket numbers
    secret: str
    raw_mail: str
    secret_mail: str


def routed(mail_id: str, queue: str, subject: str) -> TicketRouted:
    mail = ParsedMail(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        from_=Address(name="Carol", email="carol@example.org"),
        to=[Address(email="info@firstline.example")],
        subject=subject,
        message_id=f"<{mail_id}@example.org>",
        body_text=f"{subject}. Please help.",
    )
    return TicketRouted(mail_id=mail_id, action="new", queue=queue, mail=mail)


async def make_tickets(
    world_settings: ServiceSettings, admin: httpx.AsyncClient, mails: dict[str, tuple[str, str]]
) -> dict[str, str]:
    """Publish one TicketRouted per mail ({mail_id: (queue, subject)}); the ticket numbers by mail."""
    await publish(
        world_settings, "ticket.routed", [envelope(routed(m, q, s), m, actor="router") for m, (q, s) in mails.items()]
    )
    numbers: dict[str, str] = {}

    async def ticketed() -> bool:
        for mail_id in mails:
            if mail_id not in numbers:
                found = await admin.get(f"/api/mails/{mail_id}")
                if found.status_code == 200 and found.json().get("ticket_number"):
                    numbers[mail_id] = found.json()["ticket_number"]
        return len(numbers) == len(mails)

    await eventually(ticketed, timeout=120, interval=0.3)
    return numbers


@pytest.fixture(scope="module")
async def world(pg_server: str, kafka_bootstrap: str) -> AsyncIterator[World]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    async with fresh_database(pg_server) as tickets_db, fresh_database(pg_server) as gateway_db:
        base = wide_settings(tickets_db, kafka_bootstrap, prefix)
        settings = tickets_settings.TicketsSettings(
            **{**base.model_dump(), "service_name": "tickets", "timer_interval_seconds": 0}
        )
        async with served(tickets_app.create_app(settings)) as tickets:
            gw = gateway_settings(wide_settings(gateway_db, kafka_bootstrap, prefix), tickets_url=tickets.url)
            app = create_app(gw)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as admin:
                    await login(admin)
                    for name, group in QUEUES.items():
                        put = await admin.put(f"/api/admin/queues/{name}", json={"group": group}, headers=csrf(admin))
                        assert put.status_code == 200, put.text
                    for template_id, queue in (("raw-thanks", "Raw"), ("perm-secret", "Permissions")):
                        put = await admin.put(
                            f"/api/admin/templates/{template_id}",
                            json={"name": f"{template_id} template", "body": f"Text for {queue}", "queues": [queue]},
                            headers=csrf(admin),
                        )
                        assert put.status_code == 200, put.text

                    async def directory_ready() -> bool:  # QueueConfigured → the gateway's consumer
                        return set(QUEUES) <= set((await admin.get("/api/me")).json()["permissions"])

                    await eventually(directory_ready, timeout=120)
                    raw_mail, secret_mail = f"m-raw-{prefix}", f"m-secret-{prefix}"
                    numbers = await make_tickets(
                        base,
                        admin,
                        {
                            raw_mail: ("Raw", "Printer zebra on fire"),
                            secret_mail: ("Permissions", "Zebra licence secret"),
                        },
                    )
                    yield World(
                        admin, base, tickets.url, numbers[raw_mail], numbers[secret_mail], raw_mail, secret_mail
                    )


# --------------------------------------------------------------------------- nothing leaks


async def test_an_agent_never_sees_a_queue_without_rights_through_any_read_endpoint(world: World) -> None:
    admin = world.gateway
    assert {q["name"] for q in (await admin.get("/api/queues")).json()["items"]} >= set(QUEUES)
    assert (await admin.get("/api/tickets")).json()["total"] == 2

    async with agent_client(admin, "vol", {"Raw": ["rw"]}) as vol:
        queues = (await vol.get("/api/queues")).json()
        assert [q["name"] for q in queues["items"]] == ["Raw"] and queues["total"] == 1
        raw_queue = queues["items"][0]
        assert raw_queue["counts"] and "open" in raw_queue
        targets = (await vol.get("/api/queues", params={"permission": "move_into"})).json()
        assert [q["name"] for q in targets["items"]] == ["Raw"]

        listed = (await vol.get("/api/tickets")).json()
        assert [t["number"] for t in listed["items"]] == [world.raw] and listed["total"] == 1
        for params in ({"queue": "Permissions"}, {"queue": "Raw,Permissions"}, {"state": "new"}, {"sort": "queue"}):
            answer = (await vol.get("/api/tickets", params=params)).json()
            assert world.secret not in str(answer) and "Permissions" not in str(answer), params

        hidden, unknown = await _same_answers(
            vol, world.secret, NONEXISTENT, "/api/tickets/{}", "/api/tickets/{}/history"
        )
        assert hidden == unknown == 404

        async def search_ready() -> bool:
            hits = (await admin.get("/api/search", params={"q": "zebra"})).json()
            return hits["total"] == 2

        await eventually(search_ready, timeout=60)
        hits = (await vol.get("/api/search", params={"q": "zebra"})).json()
        assert [h["number"] for h in hits["items"]] == [world.raw] and hits["total"] == 1
        assert (await vol.get("/api/search", params={"q": "licence"})).json()["total"] == 0

        me = (await vol.get("/api/me")).json()
        admin_me = (await admin.get("/api/me")).json()
        assert me["counters"]["new"] == 1 and admin_me["counters"]["new"] == 2
        assert set(me["permissions"]) == {"Raw"}

        for path in ("/api/mails/{}", "/api/mails/{}/raw", "/api/mails/{}/parts/1"):
            hidden_mail = await vol.get(path.format(world.secret_mail))
            unknown_mail = await vol.get(path.format("m-never-seen"))
            assert hidden_mail.status_code == unknown_mail.status_code, path
            assert _without_ids(hidden_mail.json(), world.secret_mail) == _without_ids(
                unknown_mail.json(), "m-never-seen"
            )
        mine = await vol.get(f"/api/mails/{world.raw_mail}")
        assert mine.status_code == 200, mine.text
        assert mine.json()["status"] == "ticketed" and mine.json()["queue"] == "Raw"
        assert mine.json()["ticket_number"] == world.raw

        templates = (await vol.get("/api/templates")).json()
        assert [t["id"] for t in templates["items"]] == ["raw-thanks"]
        assert (await vol.get("/api/templates", params={"queue": "Permissions"})).status_code == 404
        assert (await vol.get("/api/templates", params={"ticket": world.secret})).status_code == 404
        for_raw = (await vol.get("/api/templates", params={"ticket": world.raw})).json()
        assert [t["id"] for t in for_raw["items"]] == ["raw-thanks"]

        zoom = (await vol.get(f"/api/tickets/{world.raw}")).json()
        assert zoom["queue"] == "Raw" and zoom["articles"] and zoom["watched"] is False
        assert zoom["articles"][0]["mail_id"] == world.raw_mail


async def test_actions_on_a_hidden_ticket_answer_like_a_missing_one(world: World) -> None:
    async with agent_client(world.gateway, "vic", {"Raw": ["rw"]}) as vic:
        for command, body in (
            ("lock", {}),
            ("unlock", {}),
            ("note", {"body": "x"}),
            ("answer", {"body": "x"}),
            ("move", {"queue": "Raw"}),
            ("state", {"state": "open"}),
            ("priority", {"priority": 4}),
            ("merge", {"into": world.raw}),
            ("spam", {}),
            ("watch", {}),
            ("unwatch", {}),
        ):
            hidden = await vic.post(f"/api/tickets/{world.secret}/{command}", json=body, headers=csrf(vic))
            unknown = await vic.post(f"/api/tickets/{NONEXISTENT}/{command}", json=body, headers=csrf(vic))
            assert hidden.status_code == unknown.status_code == 404, (command, hidden.text)
            assert _without_ids(hidden.json(), world.secret) == _without_ids(unknown.json(), NONEXISTENT)
        into_hidden = await vic.post(f"/api/tickets/{world.raw}/merge", json={"into": world.secret}, headers=csrf(vic))
        assert into_hidden.status_code == 404 and into_hidden.json()["field"] == "into"


async def test_a_denied_command_names_the_permission_and_queue_it_lacks(world: World) -> None:
    admin = world.gateway
    async with agent_client(admin, "rory", {"Raw": ["ro"]}) as rory:
        for command, body, needed in (
            ("lock", {}, "rw"),
            ("note", {"body": "hi"}, "note"),
            ("priority", {"priority": 5}, "priority"),
            ("state", {"state": "open"}, "rw"),
            ("answer", {"body": "hi"}, "rw"),
        ):
            denied = await rory.post(f"/api/tickets/{world.raw}/{command}", json=body, headers=csrf(rory))
            assert denied.status_code == 403, (command, denied.text)
            assert denied.json()["permission"] == needed and denied.json()["queue"] == "Raw"
        assert (await rory.post(f"/api/tickets/{world.raw}/watch", json={}, headers=csrf(rory))).status_code == 200
        assert (await rory.get(f"/api/tickets/{world.raw}")).json()["watched"] is True
        assert (await rory.get("/api/tickets", params={"watched": "true"})).json()["total"] == 1
        assert (await rory.post(f"/api/tickets/{world.raw}/unwatch", json={}, headers=csrf(rory))).status_code == 200
    async with agent_client(admin, "nora", {"Raw": ["ro", "note"]}) as nora:
        noted = await nora.post(f"/api/tickets/{world.raw}/note", json={"body": "a note"}, headers=csrf(nora))
        assert noted.status_code == 200, noted.text
    async with agent_client(admin, "moe", {"Raw": ["rw"]}) as moe:
        moved = await moe.post(f"/api/tickets/{world.raw}/move", json={"queue": "Permissions"}, headers=csrf(moe))
        assert moved.status_code == 403
        assert moved.json()["queue"] == "Permissions" and moved.json()["permission"] == "move_into"
        spam = await moe.post(f"/api/tickets/{world.raw}/spam", json={}, headers=csrf(moe))
        assert spam.status_code == 403 and spam.json()["queue"] == "Junk"


async def test_a_lock_race_has_one_winner_and_the_loser_learns_who(world: World) -> None:
    admin = world.gateway
    await create_agent(admin, "ann", {"Raw": ["rw"]})
    await create_agent(admin, "ben", {"Raw": ["rw"]})
    async with other_client(admin) as browser:
        ann, ben = await login(browser, "ann", PASSWORD), await login(browser, "ben", PASSWORD)
        path = f"/api/tickets/{world.raw}/lock"
        results = await asyncio.gather(*(browser.post(path, json={}, headers=bearer(t)) for t in (ann, ben)))
        assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
        winner = "ann" if results[0].status_code == 200 else "ben"
        loser = next(r for r in results if r.status_code == 409).json()
        assert loser["error"] == "locked_by_other" and loser["locked_by"] == winner
        zoom = (await browser.get(f"/api/tickets/{world.raw}", headers=bearer(ann))).json()
        assert zoom["locked"] is True and zoom["owner"] == winner  # X-Actor reached tickets
        mine = (
            await browser.get(
                "/api/tickets",
                params={"owner": "me", "locked": "true"},
                headers=bearer(ann if winner == "ann" else ben),
            )
        ).json()
        assert [t["number"] for t in mine["items"]] == [world.raw]
        token = ann if winner == "ann" else ben
        unlocked = await browser.post(f"/api/tickets/{world.raw}/unlock", json={}, headers=bearer(token))
        assert unlocked.status_code == 200, unlocked.text


async def test_lists_history_and_audit(world: World) -> None:
    admin = world.gateway
    raw_only = (await admin.get("/api/tickets", params={"queue": "Raw"})).json()
    assert [t["number"] for t in raw_only["items"]] == [world.raw]
    assert {"total", "items", "page", "page_size"} <= set(raw_only)
    history = (await admin.get(f"/api/tickets/{world.raw}/history")).json()
    assert history["events"] and history["events"][0]["type"] == "TicketCreated"
    verify = await admin.get("/api/audit/verify")
    assert verify.status_code == 200 and verify.json()["ok"] is True
    audit = (await admin.get("/api/admin/audit", params={"page_size": 500})).json()["items"]
    assert {("admin", "queue.put", "queues/Permissions"), ("admin", "template.put", "templates/perm-secret")} <= {
        (e["actor"], e["action"], e["target"]) for e in audit
    }


async def test_raw_mail_and_parts_from_ingest(world: World, pg_server: str) -> None:
    """With ingest too: the bytes exactly as received, for an agent who sees the ticket."""
    ingest_app = pytest.importorskip("services.ingest.app")
    ingest_settings = pytest.importorskip("services.ingest.settings")
    raw_bytes = (
        b"From: Dan <dan@example.org>\r\nTo: info@firstline.example\r\nSubject: Raw bytes please\r\n"
        b"Message-ID: <raw-1@example.org>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n'
        b'--b\r\nContent-Type: text/html; name="x.html"\r\nContent-Disposition: attachment; filename="x.html"\r\n\r\n'
        b"<script>alert(1)</script>\r\n--b--\r\n"
    )
    async with fresh_database(pg_server) as ingest_db:
        settings = ingest_settings.IngestSettings(
            **{
                **world.settings.model_dump(),
                "database_url": ingest_db,
                "service_name": "ingest",
                "smtp_enabled": False,
            }
        )
        async with served(ingest_app.create_app(settings)) as ingest:
            async with httpx.AsyncClient() as http:
                accepted = await http.post(f"{ingest.url}/mail", content=raw_bytes)
                assert accepted.status_code == 202, accepted.text
                mail_id = accepted.json()["mail_id"]
            received = await read_event(world.settings, "mail.received", mail_id)
            route = TicketRouted(mail_id=mail_id, action="new", queue="Raw", mail=received.payload().mail)  # type: ignore[attr-defined]
            await publish(world.settings, "ticket.routed", [envelope(route, mail_id, actor="router")])
            number = await _ticket_of(world.gateway, mail_id)
            gateway_app = world.gateway._transport.app  # type: ignore[attr-defined]
            upstream = gateway_app.state.gateway.upstream
            with _pointing(upstream, "ingest", ingest.url):
                async with (
                    agent_client(world.gateway, "ivy", {"Raw": ["ro"]}) as ivy,
                    agent_client(world.gateway, "ola", {"Junk": ["rw"]}) as ola,
                ):
                    raw = await ivy.get(f"/api/mails/{mail_id}/raw")
                    assert raw.status_code == 200 and raw.content == raw_bytes
                    assert "sandbox" in raw.headers["content-security-policy"]
                    zoom = (await ivy.get(f"/api/tickets/{number}")).json()
                    part = next(a for art in zoom["articles"] for a in art.get("attachments", []))["part"]
                    attachment = await ivy.get(f"/api/mails/{mail_id}/parts/{part}")
                    assert attachment.status_code == 200 and b"<script>" in attachment.content
                    assert attachment.headers["content-disposition"].startswith("attachment")
                    assert attachment.headers["x-content-type-options"] == "nosniff"
                    for path in (f"/api/mails/{mail_id}/raw", f"/api/mails/{mail_id}/parts/{part}"):
                        assert (await ola.get(path)).status_code in (404, 503)


async def read_event(settings: ServiceSettings, topic: str, stream_id: str) -> Envelope:
    """The first event of ``stream_id`` on a topic, read from the beginning (ingest publishes
    through its outbox relay, so it arrives a little after the 202)."""
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    found = Envelope.from_json(record.value)
                    if found.stream_id == stream_id:
                        return found
        raise AssertionError(f"no event of {stream_id} on {topic}")
    finally:
        await consumer.stop()


async def _ticket_of(admin: httpx.AsyncClient, mail_id: str) -> str:
    async def number() -> str | None:
        found = await admin.get(f"/api/mails/{mail_id}")
        return found.json().get("ticket_number") if found.status_code == 200 else None

    return str(await eventually(number, timeout=60, interval=0.2))


@contextlib.contextmanager
def _pointing(upstream: Any, service: str, url: str) -> Any:
    """Point the running gateway at a service started after it (the URL is only read per call)."""
    before = upstream.urls[service]
    upstream.urls[service] = url
    try:
        yield
    finally:
        upstream.urls[service] = before


async def _same_answers(client: httpx.AsyncClient, hidden: str, unknown: str, *paths: str) -> tuple[int, int]:
    statuses: set[tuple[int, int]] = set()
    for path in paths:
        a, b = await client.get(path.format(hidden)), await client.get(path.format(unknown))
        assert _without_ids(a.json(), hidden) == _without_ids(b.json(), unknown), path
        statuses.add((a.status_code, b.status_code))
    assert len(statuses) == 1
    return statuses.pop()


def _without_ids(body: Any, ident: str) -> Any:
    return str(body).replace(ident, "<id>")


# --------------------------------------------------------------------------- answers with attachments


async def test_answer_with_attachments_is_forwarded(world: World) -> None:
    admin = world.gateway
    mail_id = f"m-attach-{uuid.uuid4().hex[:8]}"
    pdf = Attachment(filename="invoice.pdf", content_type="application/pdf", size=1200, sha256="a" * 64, part="2")
    mail = routed(mail_id, "Raw", "Wrong invoice").mail.model_copy(update={"attachments": [pdf]})
    routed_mail = TicketRouted(mail_id=mail_id, action="new", queue="Raw", mail=mail)
    await publish(world.settings, "ticket.routed", [envelope(routed_mail, mail_id, actor="router")])
    number = await _ticket_of(admin, mail_id)
    zoom = (await admin.get(f"/api/tickets/{number}")).json()
    assert [(a["filename"], a["part"]) for a in zoom["articles"][0]["attachments"]] == [("invoice.pdf", "2")]
    path = f"/api/tickets/{number}/answer"

    extra = await admin.post(
        path, json={"body": "x", "attachments": [{"mail_id": mail_id, "part": "2", "x": 1}]}, headers=csrf(admin)
    )
    assert extra.status_code == 422
    foreign = await admin.post(
        path, json={"body": "x", "attachments": [{"mail_id": world.raw_mail, "part": "2"}]}, headers=csrf(admin)
    )
    assert foreign.status_code == 422 and foreign.json()["field"] == "attachments[0]"
    answered = await admin.post(
        path, json={"body": "Corrected.", "attachments": [{"mail_id": mail_id, "part": "2"}]}, headers=csrf(admin)
    )
    assert answered.status_code == 200, answered.text
    answer = answered.json()["ticket"]["articles"][-1]
    assert [(a["filename"], a["mail_id"], a["part"]) for a in answer["attachments"]] == [("invoice.pdf", mail_id, "2")]
