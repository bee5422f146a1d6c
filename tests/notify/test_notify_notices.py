"""Agent notices: one mail per (event, agent), marked auto-generated, threaded per ticket."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, get_args

import pytest

from services.notify.domain import outbound_message_id, render_message_bytes
from services.notify.notices import AgentNoticeKind, TicketSummary, compose_agent_notice
from services.notify.queue_settings import SystemAddress

DOMAIN = "firstline.example"
TICKET = TicketSummary(
    ticket_number="2009070610061359",
    title="Question about the logo",
    queue="Permissions",
    state="open",
    priority=4,
    customer="Jane Doe <jane@example.org>",
    owner="alex",
    detail="Escalation at 2025-03-04 12:00 UTC",
    url="http://127.0.0.1:8080/tickets/2009070610061359",
)


def notice(kind: AgentNoticeKind = "new_ticket", **kwargs: Any) -> EmailMessage:
    kwargs.setdefault("domain", DOMAIN)
    kwargs.setdefault("message_id", outbound_message_id("0190-e1", "notice.alex", DOMAIN))
    kwargs.setdefault("date", datetime(2025, 3, 4, 10, 0, tzinfo=UTC))
    msg = compose_agent_notice(kind, TICKET, "alex@firstline.example", agent_name="Alex Agent", **kwargs)
    parsed = message_from_bytes(render_message_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


def test_headers() -> None:
    msg = notice()
    assert msg["From"] == "Firstline <notifications@firstline.example>"
    assert msg["To"] == "Alex Agent <alex@firstline.example>"
    assert msg["Subject"] == "[Ticket#2009070610061359] New ticket in Permissions: Question about the logo"
    assert msg["Message-ID"] == "<0190-e1.notice.alex@firstline.example>"
    assert msg["References"] == "<ticket.2009070610061359@firstline.example>"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["X-Firstline-Loop"] == DOMAIN
    assert msg["X-Firstline-Notice"] == "new_ticket"
    assert msg["X-Firstline-Ticket"] == "2009070610061359"


@pytest.mark.parametrize("kind", get_args(AgentNoticeKind))
def test_every_kind_renders_the_ticket(kind: AgentNoticeKind) -> None:
    msg = notice(kind)
    text = text_of(msg)
    assert text.startswith("Hello Alex Agent,\n")
    for expected in (
        "[Ticket#2009070610061359] Question about the logo",
        "Queue:    Permissions",
        "Priority: 4",
    ):
        assert expected in text
    assert "Customer: Jane Doe <jane@example.org>" in text
    assert TICKET.detail in text and str(TICKET.url) in text
    assert msg["X-Firstline-Notice"] == kind


def test_custom_sender() -> None:
    sender = SystemAddress(email="otrs@firstline.example", display_name="Helpdesk")
    assert notice(sender=sender)["From"] == "Helpdesk <otrs@firstline.example>"


def test_minimal_ticket_omits_empty_lines() -> None:
    minimal = TicketSummary(ticket_number="1", title="Hi", queue="Raw")
    msg = compose_agent_notice("follow_up", minimal, "a@firstline.example", domain=DOMAIN, message_id="x")
    parsed = message_from_bytes(render_message_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text = text_of(parsed)
    assert text.startswith("Hello a@firstline.example,\n")
    assert "Customer:" not in text and "Owner:" not in text
