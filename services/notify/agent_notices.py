"""Agent notices, in the consumer's transaction (the decisions are in ``recipients.py``).

* ``AgentProfileChanged`` (``agent.directory``) → notify's copy of the agent (last revision wins).
* Ticket events → notify's small copy of the ticket; an event that calls for a notice gets one
  outbound row per recipient, keyed (event id, ``notice.<agent>``): a redelivered event finds its
  rows and sends nothing more. The sender reports each delivery as ``AgentNotified``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict

import asyncpg

from services.notify import store
from services.notify.domain import ComposeError, outbound_message_id
from services.notify.notices import compose_agent_notice
from services.notify.outbound import NewOutbound, notice_purpose
from services.notify.queue_settings import SystemAddress
from services.notify.recipients import FOLDED, NOTICE_EVENTS, AgentProfile, Notice, TicketCopy, fold, notice_for
from services.notify.recipients import recipients as choose_recipients
from services.notify.settings import NotifySettings
from shared.envelope import Envelope

logger = logging.getLogger(__name__)

HANDLED = FOLDED | NOTICE_EVENTS


async def handle_agent_profile(conn: asyncpg.Connection, envelope: Envelope, settings: NotifySettings) -> None:
    await store.upsert_agent(conn, envelope.data, revision=envelope.stream_version, event_id=envelope.event_id)


async def handle_ticket_fact(conn: asyncpg.Connection, envelope: Envelope, settings: NotifySettings) -> None:
    """Fold the event into the ticket's copy and send the notices it calls for."""
    data = envelope.data
    ticket_id = data.get("ticket_id")
    if not ticket_id:
        return
    row = await store.notice_ticket(conn, ticket_id)
    before = TicketCopy(**dict(row)) if row else None
    notice = notice_for(envelope.type, data, before, junk_queue=settings.junk_queue)
    after = fold(before, envelope.type, data)
    if after is not None and after != before:
        await store.put_notice_ticket(conn, asdict(after))
    if notice is not None and after is not None:
        await send_notices(conn, envelope, notice, after, settings)


def profile_from_row(row: asyncpg.Record) -> AgentProfile:
    return AgentProfile(
        username=row["username"],
        email=row["email"],
        name=row["name"],
        valid=row["valid"],
        notifications=frozenset(row["notifications"]),
        my_queues=frozenset(row["my_queues"]),
        readable_queues=frozenset(row["readable_queues"]),
    )


async def send_notices(
    conn: asyncpg.Connection, envelope: Envelope, notice: Notice, ticket: TicketCopy, settings: NotifySettings
) -> int:
    """One outbound row per recipient; returns how many were new."""
    rows = await store.agents_for(conn, list(notice.direct), ticket.queue if notice.watchers else None)
    chosen = choose_recipients(notice, ticket.queue, map(profile_from_row, rows), actor=envelope.actor)
    sender = SystemAddress(email=settings.notices_from(), display_name="Firstline")
    summary = ticket.summary(notice.detail)
    inserted = 0
    for agent in chosen:
        assert agent.email is not None
        purpose = notice_purpose(agent.username)
        try:
            msg = compose_agent_notice(
                notice.kind,
                summary,
                agent.email,
                domain=settings.mail_domain,
                message_id=outbound_message_id(envelope.event_id, purpose, settings.mail_domain),
                agent_name=agent.name,
                sender=sender,
                date=envelope.occurred_at,
            )
        except ComposeError as exc:  # e.g. an address that is not one: skip this agent, not the event
            logger.warning("%s notice to %s not composable: %s", notice.kind, agent.username, exc)
            continue
        mail = NewOutbound.from_message(
            msg,
            envelope_from=sender.email,
            cause_event_id=envelope.event_id,
            purpose=purpose,
            ticket_id=ticket.ticket_id,
            kind=notice.kind,
            correlation_id=envelope.correlation_id,
            requested_at=envelope.occurred_at,
        )
        if await store.insert_outbound(conn, mail) is not None:
            inserted += 1
    if chosen:
        logger.info(
            "%s notice for ticket %s to %s", notice.kind, ticket.ticket_number, ", ".join(a.username for a in chosen)
        )
    return inserted
