"""Notify as a running service: Postgres, the broker, and a real SMTP relay on a loopback port.

One app per test (a consumer group join takes seconds), several scenarios each.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from services.notify.app import create_app
from shared.devinfra import free_port
from shared.envelope import Envelope
from shared.events import (
    LOOP_HEADER,
    AnswerDelivered,
    AutoReplySent,
    AutoReplySuppressed,
    DeliveryFailed,
    MailFlags,
)
from shared.settings import ServiceSettings
from tests.conftest import eventually, serving
from tests.notify.kit import (
    NUMBER,
    Relay,
    TopicReader,
    answer_sent,
    auto_reply_requested,
    envelope_of,
    notify_settings,
    publish,
    queue_configured,
    reading,
)

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay(free_port()).start()
    yield server
    server.stop()


def plain(received: Relay, message_id: str) -> str:
    [mail] = received.handler.with_id(message_id)
    part = mail.message.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


async def configure_press(client: httpx.AsyncClient, settings: ServiceSettings) -> None:
    """Queue settings first: they travel on another partition than the tickets' events."""
    await publish(settings, envelope_of(queue_configured(), actor="admin"))

    async def configured() -> bool:
        return (await client.get("/queues/Press/settings")).status_code == 200

    await eventually(configured)


async def test_answers_and_auto_replies_go_out_exactly_as_they_should(settings: ServiceSettings, relay: Relay) -> None:
    notify = notify_settings(settings, relay.port, auto_reply_daily_limit=2)
    async with serving(create_app(notify)) as client, reading(settings) as delivery:
        await configure_press(client, settings)
        answer = envelope_of(answer_sent("ticket-1", "article-1", cc=["Boss <boss@example.org>"]))
        bad = envelope_of(answer_sent("ticket-2", "article-2", to=["not an address"]))
        await publish(settings, answer, bad, answer)  # the answer twice: a redelivery
        await check_answer(client, relay, delivery, answer)
        await check_undeliverable_answer(delivery, bad)
        await check_auto_replies(client, relay, delivery, settings)
        await check_api(client)


async def check_answer(client: httpx.AsyncClient, relay: Relay, delivery: TopicReader, answer: Envelope) -> None:
    delivered = await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-1")))
    [mail] = relay.handler.with_id("<article-1@firstline.example>")
    msg = mail.message
    assert mail.mail_from == "press@firstline.example"
    assert mail.rcpt_tos == ["jane@example.org", "boss@example.org"]
    assert msg["From"] == "Firstline Press Desk <press@firstline.example>"
    assert msg["To"] == "Jane Doe <jane@example.org>"
    assert msg["Cc"] == "Boss <boss@example.org>"
    assert msg["Subject"] == f"[Ticket#{NUMBER}] Re: Interview request"
    assert msg["In-Reply-To"] == "<customer-2@example.org>"
    assert msg["References"] == "<customer-1@example.org> <customer-2@example.org>"
    assert msg[LOOP_HEADER] == "firstline.example"
    assert msg["Auto-Submitted"] is None
    text = plain(relay, "<article-1@firstline.example>")
    assert text.startswith("Hello Jane Doe,\n\nYes, Tuesday at 10 works for us.\n\nBest,\nAlex Agent\n-- \nPress desk")
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "Tuesday at 10" in html.get_content()
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]

    [event] = delivered  # one delivery event although AnswerSent came twice
    assert event.causation_id == answer.event_id
    assert event.correlation_id == answer.correlation_id
    assert delivery.keys[event.event_id] == "ticket-1"
    assert event.data["attempts"] == 1
    assert event.data["message_id"] == "<article-1@firstline.example>"
    assert event.data["relay_response"].startswith("250 2.0.0 Ok: queued as")


async def check_undeliverable_answer(delivery: TopicReader, bad: Envelope) -> None:
    [failed] = await eventually(lambda: _async(delivery.of_type(DeliveryFailed, article_id="article-2")))
    assert failed.data["permanent"] is True
    assert failed.data["attempts"] == 0
    assert "cannot compose the answer" in failed.data["reason"]
    assert failed.causation_id == bad.event_id


async def check_auto_replies(
    client: httpx.AsyncClient, relay: Relay, delivery: TopicReader, settings: ServiceSettings
) -> None:
    normal = envelope_of(auto_reply_requested("ticket-3", "Carl <carl@example.org>", customer_name="Carl"))
    robot = envelope_of(auto_reply_requested("ticket-4", "robot@example.org", flags=MailFlags(auto_submitted=True)))
    flood = [envelope_of(auto_reply_requested(f"ticket-flood-{i}", "dora@example.org")) for i in range(3)]
    await publish(settings, normal, robot, *flood)

    [sent] = await eventually(lambda: _async(delivery.of_type(AutoReplySent, ticket_id="ticket-3")))
    [mail] = relay.handler.with_id(sent.data["message_id"])
    assert mail.mail_from == "<>"  # null reverse-path, RFC 3834 3.3: bounces of auto replies go nowhere
    assert mail.rcpt_tos == ["carl@example.org"]
    assert mail.message["Auto-Submitted"] == "auto-replied"
    assert mail.message["In-Reply-To"] == "<ticket-3.mail@example.org>"
    assert mail.message["Subject"] == f"[Ticket#{NUMBER}] Re: Interview request"
    assert "Dear Carl," in plain(relay, sent.data["message_id"])

    [suppressed] = await eventually(lambda: _async(delivery.of_type(AutoReplySuppressed, ticket_id="ticket-4")))
    assert suppressed.data["reason"] == "sender flagged auto-submitted"
    assert suppressed.causation_id == robot.event_id
    assert not [r for r in relay.handler.received if "robot@example.org" in r.rcpt_tos]

    limited = await eventually(lambda: _async(delivery.of_type(AutoReplySuppressed, to="dora@example.org")))
    assert [e.data["reason"] for e in limited] == ["daily limit 2 reached for dora@example.org"]
    await eventually(lambda: _async(len(delivery.of_type(AutoReplySent, to="dora@example.org")) == 2))
    assert len([r for r in relay.handler.received if r.rcpt_tos == ["dora@example.org"]]) == 2

    listed = (await client.get("/auto-reply-suppressions", params={"ticket_id": "ticket-4"})).json()
    assert listed["total"] == 1 and listed["items"][0]["reason"] == "sender flagged auto-submitted"


async def check_api(client: httpx.AsyncClient) -> None:
    rows = (await client.get("/outbound", params={"ticket_id": "ticket-1"})).json()
    assert rows["total"] == 1
    [row] = rows["items"]
    assert (row["state"], row["attempts"], row["purpose"]) == ("sent", 1, "answer")
    assert row["message_id"] == "<article-1@firstline.example>"
    raw = await client.get(f"/outbound/{row['id']}/raw")
    assert raw.headers["content-type"] == "message/rfc822" and b"Interview request" in raw.content

    failed = (await client.get("/outbound", params={"state": "failed"})).json()
    assert [item["ticket_id"] for item in failed["items"]] == ["ticket-2"]

    bad = await client.get("/outbound", params={"state": "lost"})
    assert bad.status_code == 422 and bad.json()["field"] == "state"
    missing = await client.get("/queues/Nowhere/settings")
    assert missing.status_code == 404 and missing.json()["error"] == "queue_not_found"

    press = (await client.get("/queues/Press/settings")).json()
    assert press["system_address"] == {"email": "press@firstline.example", "display_name": "Firstline Press Desk"}
    assert press["auto_responses"]["new_ticket"]["enabled"] is True

    metrics = (await client.get("/metrics")).text
    assert 'firstline_notify_mails_sent_total{purpose="answer"}' in metrics
    assert "firstline_notify_auto_replies_suppressed_total" in metrics
    assert (await client.get("/readyz")).status_code == 200


async def _async(value: object) -> object:
    return value
