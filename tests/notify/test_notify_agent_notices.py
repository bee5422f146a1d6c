"""Agent notices end to end: the agent directory in, ticket events in, mail out to a real SMTP
relay (aiosmtpd), ``AgentNotified`` on ``delivery.events``. Postgres and the broker are real.

``test_notices_reach_the_right_agents_and_only_them`` publishes the directory as the gateway
would; ``test_gateway_directory_reaches_notify`` runs the gateway too.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from services.gateway.app import create_app as create_gateway_app
from services.notify.app import create_app
from shared.devinfra import free_port
from shared.envelope import Envelope, make_envelope
from shared.events import (
    TOPIC_AGENT_DIRECTORY,
    AgentNotified,
    AgentProfileChanged,
    ArticleAdded,
    EscalationBreached,
    EscalationWarning,
    EventData,
    OwnerChanged,
    PendingReminderReached,
    TicketCreated,
    TicketLocked,
    TicketUnlocked,
)
from shared.settings import ServiceSettings
from tests.conftest import eventually, fresh_database, serving
from tests.gateway import conftest as gw
from tests.notify.kit import Relay, TopicReader, notify_settings, publish, reading

pytestmark = pytest.mark.timeout(300)

ALL = ["new_ticket", "follow_up", "unlocked_timeout", "pending_reminder", "escalation_warning", "escalation_breach"]
NOTICE = "X-Firstline-Notice"
TICKET = "X-Firstline-Ticket"
DUE = datetime(2025, 3, 4, 12, 0, tzinfo=UTC)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay(free_port()).start()
    yield server
    server.stop()


def profile(agent: str, revision: int = 1, **changes: Any) -> Envelope:
    fields: dict[str, Any] = {
        "agent": agent,
        "email": f"{agent}@firstline.example",
        "name": agent.title(),
        "notifications": ALL,
        "my_queues": ["Press"],
        "readable_queues": ["Press", "Raw"],
    }
    data = AgentProfileChanged(**(fields | changes))
    return make_envelope(data, stream_id=f"agent:{agent}", stream_version=revision, actor="system:gateway")


def ticket_event(data: EventData, actor: str = "system:tickets") -> Envelope:
    return make_envelope(data, stream_id=str(getattr(data, "ticket_id", "")), actor=actor)


def created(ticket_id: str, number: str, **changes: Any) -> TicketCreated:
    fields: dict[str, Any] = {
        "ticket_id": ticket_id,
        "ticket_number": number,
        "title": f"Ticket {ticket_id}",
        "queue": "Press",
        "customer_email": "jane@example.org",
    }
    return TicketCreated(**(fields | changes))


def customer_article(ticket_id: str, article_id: str) -> ArticleAdded:
    return ArticleAdded(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        ticket_id=ticket_id,
        article_id=article_id,
        from_="Jane <jane@example.org>",
        subject="About the interview",
        body=f"Message {article_id}",
    )


def sent(relay: Relay) -> set[tuple[str, str, str]]:
    """(notice kind, ticket number, recipient) of every notice the relay took."""
    out = set()
    for mail in relay.handler.received:
        msg = mail.message
        if msg[NOTICE]:
            for rcpt in mail.rcpt_tos:
                out.add((str(msg[NOTICE]), str(msg[TICKET]), rcpt.split("@")[0]))
    return out


def count(relay: Relay) -> int:
    return sum(1 for mail in relay.handler.received if mail.message[NOTICE])


async def agents_in(database_url: str) -> dict[str, asyncpg.Record]:
    conn = await asyncpg.connect(database_url)
    try:
        return {r["username"]: r for r in await conn.fetch("select * from agents")}
    finally:
        await conn.close()


async def test_notices_reach_the_right_agents_and_only_them(settings: ServiceSettings, relay: Relay) -> None:
    notify = notify_settings(settings, relay.port)
    async with serving(create_app(notify)), reading(settings) as delivery:
        directory = [
            profile("olga"),  # owns t1
            profile("wim", notifications=[k for k in ALL if k != "escalation_breach"]),
            profile("nora", notifications=[k for k in ALL if k != "new_ticket"]),  # preference off
            profile("rex", readable_queues=["Raw"]),  # watches Press, may not read it
            profile("ivan", valid=False),  # disabled
            profile("zed", 2, my_queues=["Press"]),
            profile("zed", 1, my_queues=[]),  # older than what is stored: ignored
        ]
        await gw.publish(settings, TOPIC_AGENT_DIRECTORY, directory)

        async def directory_known() -> bool:
            agents = await agents_in(notify.database_url)
            return {"olga", "wim", "nora", "rex", "ivan", "zed"} <= set(agents) and agents["zed"]["revision"] == 2

        await eventually(directory_known)
        agents = await agents_in(notify.database_url)
        assert agents["zed"]["my_queues"] == ["Press"]
        assert agents["rex"]["readable_queues"] == ["Raw"] and agents["ivan"]["valid"] is False

        t1, t2, t3, t4 = "2025030410000001", "2025030410000002", "2025030410000003", "2025030410000004"
        follow_up = ticket_event(customer_article("t1", "a2"), actor="system:router")
        events = [
            ticket_event(created("t1", t1), actor="system:router"),
            ticket_event(customer_article("t1", "a1"), actor="system:router"),  # the first article: no follow-up
            ticket_event(created("t2", t2, spam=True), actor="system:router"),
            ticket_event(created("t3", t3), actor="zed"),  # zed made it (a phone ticket): not told
            ticket_event(created("t4", t4, queue="Raw"), actor="system:router"),  # nobody watches Raw
            ticket_event(OwnerChanged(ticket_id="t1", owner="olga"), actor="olga"),
            ticket_event(TicketLocked(ticket_id="t1", agent="olga"), actor="olga"),
            follow_up,
            follow_up,  # redelivered
            ticket_event(TicketUnlocked(ticket_id="t1", agent="olga", reason="timeout"), actor="system:timer"),
            ticket_event(PendingReminderReached(ticket_id="t1", pending_until=DUE), actor="system:timer"),
            ticket_event(PendingReminderReached(ticket_id="t3", pending_until=DUE), actor="system:timer"),
            ticket_event(EscalationWarning(ticket_id="t1", kind="first_response", due_at=DUE)),
            ticket_event(EscalationBreached(ticket_id="t1", kind="first_response", due_at=DUE)),
            ticket_event(TicketUnlocked(ticket_id="t3", agent="olga", reason="manual"), actor="olga"),
        ]
        await publish(settings, *events)

        expected = {
            # new tickets: Press watchers who want them and may read Press; not the creator
            ("new_ticket", t1, "olga"),
            ("new_ticket", t1, "wim"),
            ("new_ticket", t1, "zed"),
            ("new_ticket", t3, "olga"),
            ("new_ticket", t3, "wim"),
            # owner and lock holder
            ("follow_up", t1, "olga"),
            ("unlocked_timeout", t1, "olga"),
            ("pending_reminder", t1, "olga"),
            # t3 has no owner: its queue's watchers
            ("pending_reminder", t3, "nora"),
            ("pending_reminder", t3, "olga"),
            ("pending_reminder", t3, "wim"),
            ("pending_reminder", t3, "zed"),
            # owner plus watchers; wim turned breaches off
            ("escalation_warning", t1, "nora"),
            ("escalation_warning", t1, "olga"),
            ("escalation_warning", t1, "wim"),
            ("escalation_warning", t1, "zed"),
            ("escalation_breach", t1, "nora"),
            ("escalation_breach", t1, "olga"),
            ("escalation_breach", t1, "zed"),
        }

        async def all_sent() -> bool:
            return sent(relay) >= expected

        await eventually(all_sent)
        await eventually(lambda: _async(len(delivery.of_type(AgentNotified)) >= len(expected)))
        await check_notified(delivery, relay, follow_up)
        assert sent(relay) == expected
        assert count(relay) == len(expected)  # one mail per (event, agent): the redelivery sent nothing
        assert len(delivery.of_type(AgentNotified)) == len(expected)


async def check_notified(delivery: TopicReader, relay: Relay, follow_up: Envelope) -> None:
    [event] = delivery.of_type(AgentNotified, kind="follow_up")
    assert event.data["agent"] == "olga" and event.data["ticket_id"] == "t1"
    assert event.causation_id == follow_up.event_id
    assert delivery.keys[event.event_id] == "t1"
    # a long Message-ID is folded onto its own line: compare without the folding white space
    [mail] = [r for r in relay.handler.received if r.message_id.strip() == event.data["message_id"]]
    msg = mail.message
    assert mail.rcpt_tos == ["olga@firstline.example"]
    assert mail.mail_from == "notifications@firstline.example"
    assert msg["To"] == "Olga <olga@firstline.example>"
    assert msg["Subject"] == "[Ticket#2025030410000001] Follow-up: Ticket t1"
    assert msg["Auto-Submitted"] == "auto-generated"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert "Message a2" in text and "Owner:    olga" in text and "Customer: jane@example.org" in text


async def test_gateway_directory_reaches_notify(settings: ServiceSettings, relay: Relay, pg_server: str) -> None:
    """The gateway publishes its agents (create, preferences); notify takes them and uses them."""
    notify = notify_settings(settings, relay.port)
    async with fresh_database(pg_server) as gateway_db:
        gateway = gw.gateway_settings(settings, database_url=gateway_db)
        async with serving(create_gateway_app(gateway)) as admin, serving(create_app(notify)):
            await gw.login(admin)
            await gw.create_agent(admin, "pat", {"Press": ["ro"]}, email="pat@firstline.example", full_name="Pat")
            await gw.create_agent(admin, "sam", {"Raw": ["rw"]}, email="sam@firstline.example")
            async with gw.other_client(admin) as pat:
                token = await gw.login(pat, "pat", gw.PASSWORD)
                response = await pat.put("/api/me/preferences", json={"my_queues": ["Press"]}, headers=gw.bearer(token))
                assert response.status_code == 200, response.text

            async def known() -> dict[str, asyncpg.Record] | None:
                agents = await agents_in(notify.database_url)
                ready = "admin" in agents and "sam" in agents and agents.get("pat")
                return agents if ready and agents["pat"]["my_queues"] == ["Press"] else None

            agents = await eventually(known)
            assert agents["pat"]["readable_queues"] == ["Press"] and agents["pat"]["email"] == "pat@firstline.example"
            assert agents["pat"]["notifications"] == ALL and agents["pat"]["name"] == "Pat"

            await publish(settings, ticket_event(created("t9", "2025030410000009"), actor="system:router"))
            await eventually(lambda: _async(("new_ticket", "2025030410000009", "pat") in sent(relay)))
            assert sent(relay) == {("new_ticket", "2025030410000009", "pat")}

            # turned off: the next new ticket in Press reaches nobody
            async with gw.other_client(admin) as pat:
                token = await gw.login(pat, "pat", gw.PASSWORD)
                body = {"notifications": {"new_ticket": False}}
                response = await pat.put("/api/me/preferences", json=body, headers=gw.bearer(token))
                assert response.status_code == 200, response.text

            async def off() -> bool:
                return "new_ticket" not in (await agents_in(notify.database_url))["pat"]["notifications"]

            await eventually(off)
            await publish(settings, ticket_event(created("t10", "2025030410000010"), actor="system:router"))
            await publish(
                settings, ticket_event(created("t11", "2025030410000011", queue="Raw"), actor="system:router")
            )
            conn = await asyncpg.connect(notify.database_url)
            try:

                async def folded() -> bool:
                    return bool(await conn.fetchval("select count(*) = 3 from notice_tickets"))

                await eventually(folded)
            finally:
                await conn.close()
            assert sent(relay) == {("new_ticket", "2025030410000009", "pat")}


async def _async(value: object) -> object:
    return value
