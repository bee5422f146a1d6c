"""Agent notices: short mails telling an agent that something happened on a ticket.

The texts are ours, not the admin's, so they are rendered strictly: a mistake in them is a bug
the tests catch, not something to paper over at send time. Which agents get which notice (their
preferences, the queues they watch, who owns or locks the ticket) is decided by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from email.message import EmailMessage

from pydantic import BaseModel, ConfigDict

from services.notify.domain import TICKET_HEADER, hooked_subject
from services.notify.mime import (
    base_message,
    finalise,
    join_blocks,
    mark_automatic,
    msgid_in_domain,
    parse_address,
    set_bodies,
)
from services.notify.queue_settings import SystemAddress
from services.notify.templates import render_strict
from shared.events import AgentNotificationKind

NOTICE_HEADER = "X-Firstline-Notice"

AgentNoticeKind = AgentNotificationKind  # the kinds an agent chooses among in their preferences


class TicketSummary(BaseModel):
    """The ticket fields a notice shows. ``detail``: e.g. the escalation time or a body excerpt."""

    model_config = ConfigDict(frozen=True)
    ticket_number: str
    title: str
    queue: str
    state: str = "new"
    priority: int = 3
    customer: str = ""
    owner: str | None = None
    detail: str = ""
    url: str | None = None


_SUBJECTS: Mapping[str, str] = {
    "new_ticket": "New ticket in {{ queue }}: {{ title }}",
    "follow_up": "Follow-up: {{ title }}",
    "unlocked_timeout": "Unlocked after timeout: {{ title }}",
    "pending_reminder": "Reminder reached: {{ title }}",
    "escalation_warning": "Escalation warning: {{ title }}",
    "escalation_breach": "Escalated: {{ title }}",
}
_LEADS: Mapping[str, str] = {
    "new_ticket": "a new ticket has arrived in queue {{ queue }}.",
    "follow_up": "the customer has written again on a ticket you own or have locked.",
    "unlocked_timeout": "your lock on this ticket has timed out; the ticket is unlocked again.",
    "pending_reminder": "the pending reminder on this ticket has been reached.",
    "escalation_warning": "this ticket will escalate soon.",
    "escalation_breach": "this ticket has escalated.",
}
_BODY = (
    "Hello {{ agent_name or agent_email }},\n\n{{ lead }}\n\n"
    "Ticket:   [Ticket#{{ ticket_number }}] {{ title }}\n"
    "Queue:    {{ queue }}\nState:    {{ state }}\nPriority: {{ priority }}\n"
    "{% if customer %}Customer: {{ customer }}\n{% endif %}"
    "{% if owner %}Owner:    {{ owner }}\n{% endif %}"
    "{% if detail %}\n{{ detail }}\n{% endif %}"
    "{% if url %}\n{{ url }}\n{% endif %}"
    "\n-- \nFirstline"
)


def notice_text(
    kind: AgentNoticeKind, ticket: TicketSummary, agent_email: str, agent_name: str = ""
) -> tuple[str, str]:
    """``(subject without hook, body)`` of a notice."""
    variables: dict[str, object] = {
        **ticket.model_dump(),
        "agent_email": agent_email,
        "agent_name": agent_name,
    }
    variables["lead"] = render_strict(_LEADS[kind], variables, name=f"notice.{kind}.lead")
    subject = render_strict(_SUBJECTS[kind], variables, name=f"notice.{kind}.subject")
    return subject, render_strict(_BODY, variables, name="notice.body")


def compose_agent_notice(
    kind: AgentNoticeKind,
    ticket: TicketSummary,
    agent_email: str,
    *,
    domain: str,
    message_id: str,
    agent_name: str = "",
    sender: SystemAddress | None = None,
    date: datetime | None = None,
) -> EmailMessage:
    """A notice to an agent (``Auto-Submitted: auto-generated``), threaded per ticket.

    ``message_id``: :func:`services.notify.domain.outbound_message_id` of the causing event's id
    and ``notice.<agent>``, so each (event, agent) pair has one stable id. ``sender`` defaults to
    ``notifications@domain``, which must then count among the own addresses.
    """
    sender = sender or SystemAddress(email=f"notifications@{domain}", display_name="Firstline")
    subject, body = notice_text(kind, ticket, agent_email, agent_name)
    msg = base_message(
        sender.header(),
        [parse_address(agent_email, display_name=agent_name)],
        hooked_subject(ticket.ticket_number, subject),
        msgid_in_domain(message_id, domain),
        date,
    )
    msg["References"] = msgid_in_domain(f"ticket.{ticket.ticket_number}", domain)
    msg[TICKET_HEADER] = ticket.ticket_number
    msg[NOTICE_HEADER] = kind
    mark_automatic(msg, auto_submitted="auto-generated", loop_address=sender.email, domain=domain)
    set_bodies(msg, join_blocks(body))
    return finalise(msg)
