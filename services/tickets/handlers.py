"""Kafka consumers: the router's decisions (``ticket.routed``) and notify's results
(``delivery.events``). Each handler runs inside the consumer's batch transaction; the runner
has already made sure the message was not handled before (``processed_messages``).

A decision the ticket's rules refuse can never succeed, so it is a :class:`PoisonMessage`: the
runner parks it in the topic's ``.dlq`` instead of retrying it.
"""

from __future__ import annotations

import logging

import asyncpg

from services.tickets.commands import Context, Decide, Tickets
from services.tickets.domain import RecordDelivery, decide_record_delivery, decide_record_notice
from services.tickets.errors import TicketError
from shared.bus import Handler, PoisonMessage
from shared.envelope import Envelope
from shared.events import (
    AgentNotified,
    AnswerDelivered,
    AutoReplySent,
    AutoReplySuppressed,
    DeliveryFailed,
    EventData,
    TicketRouted,
)
from shared.logs import log_fields

logger = logging.getLogger(__name__)

ROUTER_ACTOR = "system:router"
NOTIFY_ACTOR = "system:notify"


def _system_actor(envelope: Envelope, default: str) -> str:
    return envelope.actor if envelope.actor.startswith("system:") else default


def routed_handler(tickets: Tickets) -> Handler:
    async def handle_routed(conn: asyncpg.Connection, envelope: Envelope) -> None:
        routed = envelope.payload()
        if not isinstance(routed, TicketRouted):
            return
        ctx = Context.caused_by(envelope, _system_actor(envelope, ROUTER_ACTOR))
        try:
            outcome = await tickets.receive(conn, routed, ctx)
        except TicketError as exc:
            raise PoisonMessage(f"{exc.code}: {exc.message}") from exc
        if outcome is not None and outcome.ticket is not None:
            number = outcome.ticket.number
            what = "recorded" if outcome.events else "already recorded"
            logger.info("mail %s %s on ticket %s", routed.mail_id, what, number, extra=log_fields(ticket_number=number))

    return handle_routed


def delivery_decision(event: EventData) -> Decide | None:
    """How a result from notify is kept on its ticket; None for events tickets doesn't keep."""
    if isinstance(event, AnswerDelivered) or (isinstance(event, DeliveryFailed) and event.purpose == "answer"):
        cmd = RecordDelivery(result=event)
        return lambda t, now: decide_record_delivery(t, cmd, now)
    if isinstance(event, AutoReplySent | AutoReplySuppressed | AgentNotified | DeliveryFailed):
        return lambda t, now: decide_record_notice(t, event, now)
    return None


def delivery_handler(tickets: Tickets) -> Handler:
    """Notify's results, kept in the ticket's own stream so its history shows them."""

    async def handle_delivery(conn: asyncpg.Connection, envelope: Envelope) -> None:
        event = envelope.payload()
        decide = delivery_decision(event)
        if decide is None:
            return
        ctx = Context.caused_by(envelope, _system_actor(envelope, NOTIFY_ACTOR))
        try:
            await tickets.execute(conn, event.ticket_id, decide, ctx)  # type: ignore[attr-defined]
        except TicketError as exc:
            raise PoisonMessage(f"{exc.code}: {exc.message}") from exc

    return handle_delivery
