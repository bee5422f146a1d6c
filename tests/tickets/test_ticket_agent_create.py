"""Agent-created tickets (issue 7): phone and email tickets, decided purely and over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from services.tickets.domain import CreateByAgent, decide_create_by_agent
from services.tickets.errors import (
    InvalidInput,
    InvalidPriority,
    InvalidState,
    PendingTimeRequired,
    TicketExists,
    UnknownQueue,
)
from shared.events import AnswerSent, PhoneArticleAdded
from shared.settings import ServiceSettings

from .helpers import Stream, at, number, types
from .service_kit import ALICE, read_topic, running, tickets_settings

QUEUES = ("Raw", "Support")


def command(**overrides: Any) -> CreateByAgent:
    values: dict[str, Any] = {
        "agent": "alice",
        "kind": "phone",
        "ticket_id": "t-1",
        "ticket_number": number(1),
        "queue": "Support",
        "customer_email": "carol@example.org",
        "customer_name": "Carol",
        "subject": "Printer on fire",
        "body": "Carol called: the printer is on fire.",
        "article_id": "a-1",
        **overrides,
    }
    return CreateByAgent(**values)


def test_phone_ticket_is_created_with_the_customers_call() -> None:
    events = decide_create_by_agent(None, command(), at(0), QUEUES)
    assert types(events) == ["TicketCreated", "PhoneArticleAdded"]
    call = events[1]
    assert isinstance(call, PhoneArticleAdded) and call.direction == "inbound"
    stream = Stream("t-1")
    ticket = stream.record(events, actor="alice")
    assert (ticket.state, ticket.queue, ticket.customer_email, ticket.customer_id) == (
        "open",
        "Support",
        "carol@example.org",
        "example.org",
    )
    assert ticket.title == "Printer on fire" and ticket.update_from is not None  # the customer spoke
    assert decide_create_by_agent(ticket, command(), at(1), QUEUES) == []  # the same request again
    with pytest.raises(TicketExists):
        decide_create_by_agent(ticket, command(article_id="a-2"), at(1), QUEUES)


def test_email_ticket_sends_the_first_article_as_an_answer() -> None:
    cmd = command(kind="email", lock=True, cc=["boss@example.org"], priority=4)
    events = decide_create_by_agent(None, cmd, at(0), QUEUES)
    assert types(events) == ["TicketCreated", "OwnerChanged", "TicketLocked", "AnswerSent"]
    mail = events[-1]
    assert isinstance(mail, AnswerSent)
    assert mail.subject == f"[Ticket#{number(1)}] Printer on fire"
    assert mail.to == ["Carol <carol@example.org>"] and mail.cc == ["boss@example.org"]
    assert mail.ticket_number == number(1) and mail.queue == "Support" and mail.agent_name == "alice"
    ticket = Stream("t-1").record(events, actor="alice")
    assert (ticket.lock, ticket.owner, ticket.priority) == ("alice", "alice", 4)
    assert ticket.first_response_at is not None  # the agent wrote first: nothing to respond to


def test_next_state_owner_and_lock() -> None:
    pending = command(next_state="pending reminder", pending_until=at(60), owner="bob", lock=True)
    events = decide_create_by_agent(None, pending, at(0), QUEUES)
    assert types(events) == ["TicketCreated", "OwnerChanged", "TicketLocked", "PhoneArticleAdded", "StateChanged"]
    ticket = Stream("t-1").record(events)
    assert (ticket.state, ticket.pending_until, ticket.lock) == ("pending reminder", at(60), "bob")
    closed = decide_create_by_agent(None, command(next_state="closed successful", lock=True), at(0), QUEUES)
    assert types(closed) == ["TicketCreated", "PhoneArticleAdded", "StateChanged"]  # closed: never locked
    new = decide_create_by_agent(None, command(next_state="new", owner="bob"), at(0), QUEUES)
    assert types(new) == ["TicketCreated", "OwnerChanged", "PhoneArticleAdded"]


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"queue": "Nowhere"}, UnknownQueue, None),
        ({"customer_email": "not an address"}, InvalidInput, "customer.email"),
        ({"customer_email": "carol@"}, InvalidInput, "customer.email"),
        ({"customer_email": "a@b.org, c@d.org"}, InvalidInput, "customer.email"),
        ({"subject": "  "}, InvalidInput, "subject"),
        ({"body": ""}, InvalidInput, "body"),
        ({"priority": 9}, InvalidPriority, None),
        ({"next_state": "merged"}, InvalidState, None),
        ({"next_state": "pending auto close+"}, PendingTimeRequired, None),
    ],
)
def test_refusals(overrides: dict[str, Any], error: type[Exception], field: str | None) -> None:
    with pytest.raises(error) as refused:
        decide_create_by_agent(None, command(**overrides), at(0), QUEUES)
    if field is not None:
        assert getattr(refused.value, "field", None) == field


# --------------------------------------------------------------------------- over HTTP

HEADERS = {**ALICE, "X-Correlation-ID": "corr-create-1"}
EMAIL = {
    "kind": "email",
    "queue": "Support",
    "customer": {"email": "carol@example.org", "name": "Carol"},
    "subject": "Printer on fire",
    "body": "Dear Carol, about your printer.",
    "lock": True,
    "to": ["Carol <carol@example.org>"],
}


def body(**overrides: Any) -> dict[str, Any]:
    return {
        "kind": "phone",
        "queue": "Support",
        "customer": {"email": "carol@example.org", "name": "Carol"},
        "subject": "Printer on fire",
        "body": "Carol called.",
        **overrides,
    }


async def test_phone_and_email_tickets_over_http(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (_app, client):
        await client.put("/queues/Support", json={"group": "users", "first_response_minutes": 30}, headers=ALICE)

        phone = await client.post("/tickets", json=body(), headers=HEADERS)
        assert phone.status_code == 201, phone.text
        created = phone.json()
        assert set(created) == {"number", "ticket_id", "version", "article_id"}
        zoom = (await client.get(f"/tickets/{created['number']}")).json()
        assert (zoom["state"], zoom["queue"], zoom["customer_email"], zoom["version"]) == (
            "open",
            "Support",
            "carol@example.org",
            created["version"],
        )
        [call] = zoom["articles"]
        assert (call["article_id"], call["kind"], call["sender_type"]) == (created["article_id"], "phone", "customer")
        assert zoom["escalation_kind"] == "first_response"  # the queue's times apply from the start

        email = await client.post(
            "/tickets",
            json=EMAIL,
            headers={**HEADERS, "Idempotency-Key": "form-42"},
        )
        assert email.status_code == 201, email.text
        sent = email.json()
        zoom = (await client.get(f"/tickets/{sent['number']}")).json()
        assert (zoom["locked_by"], zoom["owner"]) == ("alice", "alice")
        [answer] = zoom["articles"]
        assert (answer["kind"], answer["delivery"]) == ("answer", "queued")
        assert answer["subject"] == f"[Ticket#{sent['number']}] Printer on fire"
        assert zoom["escalation_due_at"] is None  # the agent wrote first: first response met

        again = await client.post(
            "/tickets",
            json=EMAIL,
            headers={**HEADERS, "Idempotency-Key": "form-42"},
        )
        assert again.status_code == 201 and again.json() == sent  # a retried request: the same ticket

        history = (await client.get(f"/tickets/{sent['number']}/history")).json()["events"]
        assert all(e["actor"] == "alice" and e["correlation_id"] == "corr-create-1" for e in history)
        # On ticket.events, keyed by the ticket, for notify to send like any answer.
        published = await read_topic(settings, "ticket.events", expected=9)
        answers = [(key, e) for key, e in published if e.type == "AnswerSent"]
        assert [(key, e.data["ticket_number"]) for key, e in answers] == [(sent["ticket_id"], sent["number"])]


async def test_create_ticket_refusals_over_http(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings)) as (_app, client):
        await client.put("/queues/Support", json={"group": "users"}, headers=ALICE)
        cases = [
            (body(queue="Nowhere"), "unknown_queue", "queue"),
            (body(customer={"email": "nobody", "name": None}), "invalid_input", "customer.email"),
            (body(subject=""), "invalid_input", "subject"),
            (body(kind="fax"), "invalid_input", "kind"),
            (body(next_state="pending reminder"), "pending_time_required", None),
            (body(kind="email", to=["a@b.org, c@d.org"]), "invalid_input", "to"),
        ]
        for payload, code, field in cases:
            refused = await client.post("/tickets", json=payload, headers=ALICE)
            assert refused.status_code == 422, (payload, refused.text)
            assert refused.json()["error"] == code and refused.json().get("field") == field, refused.json()
        no_actor = await client.post("/tickets", json=body())
        assert no_actor.status_code == 422 and no_actor.json()["field"] == "X-Actor"
        assert (await client.get("/tickets")).json()["total"] == 0
