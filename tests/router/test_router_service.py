"""The router as a running service: real PostgreSQL, a real broker, the app's own lifespan.

Each test starts the app once (consumer groups take seconds to join) and checks a scenario.
"""

from __future__ import annotations

from datetime import date

import pytest

from services.router.app import create_app
from shared.envelope import new_id
from shared.events import (
    TOPIC_MAIL_RECEIVED,
    TOPIC_TICKET_EVENTS,
    TOPIC_TICKET_ROUTED,
    AnswerSent,
    QueueConfigured,
    TicketCreated,
    TicketRouted,
)
from shared.settings import ServiceSettings
from shared.ticket_numbers import format_ticket_number
from tests.conftest import eventually, serving
from tests.router.router_mailkit import make_mail
from tests.router.router_servicekit import (
    database,
    mail_received,
    publish,
    read_topic,
    router_settings,
    ticket_event,
)

pytestmark = pytest.mark.timeout(180)

QUEUES = ("Info-en", "Info-de", "Press", "Permissions")
ADMIN = {"X-Actor": "admin-anna"}
NUMBER = format_ticket_number(date(2026, 5, 4), 10, 7)
TICKET_ID = new_id()
ANSWER_ID = "<answer-1@firstline.example>"


async def _count(conn, query: str, *args) -> int:
    return int(await conn.fetchval(query, *args))


async def test_routes_mail_explains_and_threads(settings: ServiceSettings) -> None:
    rsettings = router_settings(settings)
    async with serving(create_app(rsettings)) as client, database(settings) as db:
        queues = [ticket_event(QueueConfigured(name=q, group="users")) for q in QUEUES]
        await publish(settings, TOPIC_TICKET_EVENTS, queues)
        await eventually(lambda: _count(db, "select count(*) from router_queues"), timeout=60)
        await eventually(lambda: _queues_known(db))

        await _configure(client)
        await _check_bad_input(client)

        created = TicketCreated(
            ticket_id=TICKET_ID,
            ticket_number=NUMBER,
            title="Access",
            queue="Info-en",
            customer_email="alice@example.org",
        )
        answer = AnswerSent(
            ticket_id=TICKET_ID,
            ticket_number=NUMBER,
            article_id=new_id(),
            queue="Info-en",
            to=["Alice <alice@example.org>"],
            subject=f"Re: [Ticket#{NUMBER}] Access",
            body="Here you go.",
            message_id=ANSWER_ID,
        )
        await publish(settings, TOPIC_TICKET_EVENTS, [ticket_event(created), ticket_event(answer)])
        await eventually(lambda: _count(db, "select count(*) from router_message_ids where ticket_id = $1", TICKET_ID))

        german = mail_received(
            "m-de", make_mail("Zugang", to=("info-de@firstline.example",)), ["info-de@firstline.example"]
        )
        mails = [
            german,
            mail_received("m-spam", make_mail("Cheap", headers={"x-spam-flag": "YES"})),
            mail_received("m-press", make_mail("Interview request", sender="desk@paper.example", to=())),
            mail_received("m-hook", make_mail(f"AW: [Ticket#{NUMBER}] Access", sender="mallory@example.net")),
            mail_received("m-reply", make_mail("Re: thanks", in_reply_to=ANSWER_ID)),
        ]
        again = german.model_copy(update={"event_id": new_id()})  # ingest published it twice
        await publish(settings, TOPIC_MAIL_RECEIVED, [*mails, german, again])
        await eventually(
            lambda: _count(db, "select count(*) from processed_messages where message_id = $1", again.event_id)
        )

        records = await read_topic(settings, TOPIC_TICKET_ROUTED, expected=len(mails))
        routed = {e.payload().mail_id: (key, e) for key, e in records}
        assert len(records) == len(mails) and set(routed) == {m.payload().mail_id for m in mails}
        assert await _count(db, "select count(*) from routing_decisions") == len(mails)
        assert await _count(db, "select count(*) from outbox where topic like '%ticket.routed'") == len(mails)
        _check_envelopes(routed, mails)
        _check_decisions({mail_id: e.payload() for mail_id, (_, e) in routed.items()})
        assert routed["m-hook"][0] == routed["m-reply"][0] == TICKET_ID  # keyed by the ticket
        assert routed["m-de"][0] == "m-de"  # keyed by the mail before a ticket exists

        await _check_mail_api(client)
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["routing state"] == "ok" and ready["checks"]["consumer:mail"] == "ok"
        metrics = (await client.get("/metrics")).text
        assert 'firstline_router_decisions_total{action="new",queue="Info-de",step="system_address"}' in metrics
        await _check_audit(client, db)


async def _queues_known(db) -> bool:
    return await _count(db, "select count(*) from router_queues") == len(QUEUES)


async def _configure(client) -> None:
    for email, queue in (("info-de@firstline.example", "Info-de"), ("Info@Firstline.example", "Info-en")):
        response = await client.put(f"/system-addresses/{email}", json={"queue": queue}, headers=ADMIN)
        assert response.status_code == 200, response.text
    assert response.json()["email"] == "info@firstline.example" and response.json()["changed_by"] == "admin-anna"
    spam = {"name": "spam flag", "position": 1, "match": {"X-Spam-Flag": "^yes"}, "actions": {"mark_spam": True}}
    press = {"name": "press", "position": 2, "match": {"Subject": "interview"}, "actions": {"set_queue": "Press"}}
    for rule in (spam, press):
        response = await client.post("/filters", json=rule, headers=ADMIN)
        assert response.status_code == 201, response.text
    press_id = response.json()["filter_id"]
    press["actions"] = {"set_queue": "Press", "set_priority": 4}
    for _ in range(2):  # the second time changes nothing, and records nothing
        response = await client.put(f"/filters/{press_id}", json=press, headers=ADMIN)
        assert response.status_code == 200 and response.json()["version"] == 2
    same = await client.put("/system-addresses/info@firstline.example", json={"queue": "Info-en"}, headers=ADMIN)
    assert same.json()["version"] == 1
    assert (await client.get(f"/filters/{press_id}")).json()["actions"] == press["actions"]
    assert (await client.get("/system-addresses/INFO-DE@firstline.example")).json()["queue"] == "Info-de"
    listed = (await client.get("/filters")).json()
    assert listed["total"] == 2 and [f["name"] for f in listed["items"]] == ["spam flag", "press"]


async def _check_bad_input(client) -> None:
    rule = {"name": "r", "match": {"Subject": "x"}, "actions": {}}
    cases = [
        ("put", "/system-addresses/x@firstline.example", {"queue": "Nowhere"}, "queue", "unknown_queue"),
        ("put", "/system-addresses/not-an-address", {"queue": "Press"}, "email", "invalid_email"),
        ("put", "/system-addresses/x@firstline.example", {"queue": "Press", "language_queues": {"de": "Nope"}},
         "language_queues.de", "unknown_queue"),
        ("put", "/system-addresses/x@firstline.example", {}, "queue", "invalid_request"),
        ("post", "/filters", {**rule, "match": {"Subject": "(unclosed"}}, "match.Subject", "invalid_regex"),
        ("post", "/filters", {**rule, "actions": {"set_priority": 9}}, "actions.set_priority", "invalid_priority"),
        ("post", "/filters", {**rule, "actions": {"set_queue": "Nope"}}, "actions.set_queue", "unknown_queue"),
        ("post", "/filters", {**rule, "actions": {"explode": True}}, "actions.explode", "unknown_action"),
        ("post", "/filters", {"name": "r", "actions": {}}, "match", "invalid_request"),
    ]  # fmt: skip
    for method, path, body, field, error in cases:
        response = await client.request(method, path, json=body, headers=ADMIN)
        assert response.status_code == 422, (path, body, response.text)
        assert (response.json()["field"], response.json()["error"]) == (field, error), response.text
    anonymous = await client.post("/filters", json=rule)
    assert anonymous.status_code == 422 and anonymous.json()["field"] == "X-Actor"
    missing = await client.put(f"/filters/{new_id()}", json=rule, headers=ADMIN)
    assert missing.status_code == 404 and missing.json()["error"] == "filter_not_found"


def _check_envelopes(routed: dict, mails: list) -> None:
    for sent in mails:
        _, out = routed[sent.payload().mail_id]
        assert (out.type, out.causation_id, out.correlation_id) == ("TicketRouted", sent.event_id, sent.correlation_id)


def _check_decisions(d: dict[str, TicketRouted]) -> None:
    de = d["m-de"]
    assert (de.action, de.queue, de.title) == ("new", "Info-de", "Zugang")
    assert any(r.step == "system_address" and "info-de@firstline.example" in r.detail for r in de.reasons)
    assert (d["m-spam"].queue, d["m-spam"].spam, d["m-spam"].spam_score) == ("Junk", True, 1.0)
    assert d["m-spam"].reasons[0].detail.startswith("filter 'spam flag' matched")
    assert (d["m-press"].queue, d["m-press"].priority) == ("Press", 4)
    hook = d["m-hook"]
    assert (hook.action, hook.ticket_number, hook.queue, hook.sender_not_on_ticket) == (
        "follow_up",
        NUMBER,
        "Info-en",
        True,
    )
    reply = d["m-reply"]
    assert (reply.action, reply.ticket_number, reply.sender_not_on_ticket) == ("follow_up", NUMBER, False)
    assert any("In-Reply-To" in r.detail for r in reply.reasons)


async def _check_mail_api(client) -> None:
    found = (await client.get("/mails/m-de")).json()
    assert (found["status"], found["action"], found["queue"], found["ticket_number"]) == (
        "routed",
        "new",
        "Info-de",
        None,
    )
    assert found["reasons"][-1]["step"] == "system_address" and found["spam"] is False
    hook = (await client.get("/mails/m-hook")).json()
    assert (hook["action"], hook["ticket_number"]) == ("follow_up", NUMBER)
    missing = await client.get("/mails/no-such-mail")
    assert missing.status_code == 404 and missing.json()["error"] == "mail_not_found"


async def _check_audit(client, db) -> None:
    """Every configuration change is an event with its actor, published on router.config."""
    rows = await db.fetch("select type, stream_id, actor from events order by global_position")
    assert {r["actor"] for r in rows} == {"admin-anna"}
    assert [r["type"] for r in rows].count("FilterChanged") == 3
    assert ("SystemAddressChanged", "address-info@firstline.example") in {(r["type"], r["stream_id"]) for r in rows}
    published = await _count(db, "select count(*) from outbox where topic like '%router.config'")
    assert published == len(rows)
    deleted = await client.delete("/system-addresses/info@firstline.example", headers=ADMIN)
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    listed = (await client.get("/system-addresses")).json()
    assert [a["email"] for a in listed["items"]] == ["info-de@firstline.example"]
    again = await client.delete("/system-addresses/info@firstline.example", headers=ADMIN)
    assert again.status_code == 404
