"""Notify's consumer of ``ticket.events``: everything runs in the consumer's transaction.

* ``QueueConfigured`` → notify's copy of the queue's mail settings.
* ``AnswerSent`` → one outbound row with the rendered answer (the sender loop delivers it); its
  attachments are fetched from ingest first (``attachments.py``: ingest away → the batch waits).
* ``AutoReplyRequested`` → :func:`~services.notify.domain.auto_reply_decision`, then an outbound
  row, or a suppression and ``AutoReplySuppressed`` on ``delivery.events``.
* ``AgentProfileChanged`` (``agent.directory``) and the ticket events agent notices depend on →
  ``agent_notices.py``.

``QueueConfigured`` is keyed by queue and ``AnswerSent`` by ticket, so they travel on different
partitions: a mail for a queue notify has not heard of yet goes out with the default settings
(``default_queue_settings``) rather than waiting.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from pydantic import ValidationError

from services.notify import store
from services.notify.agent_notices import HANDLED, handle_agent_profile, handle_ticket_fact
from services.notify.attachments import fetch_attachments
from services.notify.domain import (
    ComposeError,
    QueueMailSettings,
    auto_reply_decision,
    compose_answer,
    compose_auto_reply,
    default_queue_settings,
    limit_window,
    sender_key,
)
from services.notify.metrics import AUTO_REPLIES_SUPPRESSED, MAILS_FAILED
from services.notify.mime import OutgoingAttachment, address_email, msgid_in_domain
from services.notify.outbound import PURPOSE_ANSWER, PURPOSE_AUTO_REPLY, NewOutbound, failure_event
from services.notify.queue_settings import settings_from_event, validate_settings
from services.notify.settings import NotifySettings
from services.notify.templates import MailTemplateError
from shared.bus import Handler
from shared.envelope import Envelope
from shared.events import (
    TOPIC_DELIVERY_EVENTS,
    AgentProfileChanged,
    AnswerSent,
    AutoReplyRequested,
    AutoReplySuppressed,
    QueueConfigured,
)
from shared.logs import log_fields

logger = logging.getLogger(__name__)

TypedHandler = Callable[[asyncpg.Connection, Envelope, NotifySettings], Awaitable[None]]


def ticket_events_handler(settings: NotifySettings) -> Handler:
    """The consumer's handler: dispatch by event type; other ticket events are not notify's."""

    async def handle(conn: asyncpg.Connection, envelope: Envelope) -> None:
        handler = HANDLERS.get(envelope.type)
        if handler is not None:
            await handler(conn, envelope, settings)
        if envelope.type in HANDLED:  # the ticket copy and agent notices (AnswerSent is both)
            await handle_ticket_fact(conn, envelope, settings)

    return handle


# --------------------------------------------------------------------------- queue settings


async def load_queue_settings(conn: asyncpg.Connection, queue: str, settings: NotifySettings) -> QueueMailSettings:
    row = await store.queue_settings(conn, queue)
    if row is None:
        return default_queue_settings(queue, domain=settings.mail_domain)
    return QueueMailSettings.model_validate(row["settings"])


async def handle_queue_configured(conn: asyncpg.Connection, envelope: Envelope, settings: NotifySettings) -> None:
    event = envelope.payload()
    assert isinstance(event, QueueConfigured)
    try:
        mail_settings = settings_from_event(event, domain=settings.mail_domain)
    except ValidationError as exc:
        logger.error("queue %s: settings not usable, keeping the previous ones: %s", event.name, exc)
        return
    for problem in validate_settings(mail_settings):
        logger.warning("queue %s: %s (its raw text will be sent)", event.name, problem)
    await store.upsert_queue_settings(
        conn,
        event.name,
        mail_settings.model_dump(mode="json"),
        valid=event.valid,
        event_id=envelope.event_id,
        configured_at=envelope.occurred_at,
    )


def _template_problem(error: MailTemplateError) -> None:
    logger.warning("template problem at send time, raw text sent: %s", error, extra=log_fields(template=error.template))


# --------------------------------------------------------------------------- answers


def _agent_name(event: AnswerSent, envelope: Envelope) -> str:
    if event.agent_name:
        return event.agent_name
    return "" if envelope.actor.startswith("system:") else envelope.actor


def _compose_answer(
    envelope: Envelope,
    event: AnswerSent,
    queue: QueueMailSettings,
    domain: str,
    attachments: list[OutgoingAttachment],
) -> NewOutbound:
    msg = compose_answer(
        event,
        queue,
        agent_name=_agent_name(event, envelope),
        domain=domain,
        attachments=attachments,
        date=envelope.occurred_at,
        title=event.title,
        on_template_error=_template_problem,
    )
    return NewOutbound.from_message(msg, envelope_from=queue.system_address.email, **_answer_fields(envelope, event))


def _answer_fields(envelope: Envelope, event: AnswerSent) -> dict[str, object]:
    return {
        "cause_event_id": envelope.event_id,
        "purpose": PURPOSE_ANSWER,
        "ticket_id": event.ticket_id,
        "article_id": event.article_id,
        "correlation_id": envelope.correlation_id,
        "requested_at": envelope.occurred_at,
    }


async def handle_answer_sent(conn: asyncpg.Connection, envelope: Envelope, settings: NotifySettings) -> None:
    event = envelope.payload()
    assert isinstance(event, AnswerSent)
    queue = await load_queue_settings(conn, event.queue, settings)
    try:
        # IngestUnavailable (an OSError) propagates: the runner retries the batch until ingest is back.
        files = await fetch_attachments(
            event.attachments, settings.ingest_url, settings.ingest_timeout_seconds, envelope.correlation_id
        )
        mail = _compose_answer(envelope, event, queue, settings.mail_domain, files)
    except ComposeError as exc:
        await _answer_not_composable(conn, envelope, event, queue, settings, f"cannot compose the answer: {exc}")
        return
    await store.insert_outbound(conn, mail)


async def _answer_not_composable(
    conn: asyncpg.Connection,
    envelope: Envelope,
    event: AnswerSent,
    queue: QueueMailSettings,
    settings: NotifySettings,
    reason: str,
) -> None:
    """Log the answer as failed at once (nothing to retry) and tell tickets why."""
    try:
        message_id = msgid_in_domain(event.message_id, settings.mail_domain)
    except ComposeError:
        message_id = event.message_id
    mail = NewOutbound(
        envelope_from=queue.system_address.email,
        recipients=[*event.to, *event.cc],
        message_id=message_id,
        message=b"",
        **_answer_fields(envelope, event),  # type: ignore[arg-type]
    )
    if await store.insert_outbound(conn, mail, state="failed", error=reason) is None:
        return
    logger.warning("answer %s not sent: %s", event.article_id, reason)
    MAILS_FAILED.labels(PURPOSE_ANSWER, "true").inc()
    failed = failure_event(mail, reason=reason, permanent=True, smtp_code=None, attempts=0)
    await store.publish(
        conn,
        settings.topic(TOPIC_DELIVERY_EVENTS),
        failed,
        ticket_id=event.ticket_id,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.event_id,
    )


# --------------------------------------------------------------------------- auto replies


async def own_addresses(conn: asyncpg.Connection, settings: NotifySettings) -> set[str]:
    return settings.configured_own_addresses() | await store.system_addresses(conn)


async def handle_auto_reply_requested(conn: asyncpg.Connection, envelope: Envelope, settings: NotifySettings) -> None:
    event = envelope.payload()
    assert isinstance(event, AutoReplyRequested)
    queue = await load_queue_settings(conn, event.queue, settings)
    recipient = sender_key(event.to)
    await store.lock_recipient(conn, recipient)
    since, until = limit_window(envelope.occurred_at)
    send, reason = auto_reply_decision(
        event,
        own_addresses=await own_addresses(conn, settings),
        sent_today_to_sender=await store.count_auto_replies(conn, recipient, since, until),
        daily_limit=settings.auto_reply_daily_limit,
        enabled=queue.auto_reply_enabled(event.kind),
    )
    if not send:
        await _suppress(conn, envelope, event, settings, reason)
        return
    try:
        mail = _compose_auto_reply(envelope, event, queue, settings, recipient)
    except ComposeError as exc:
        await _suppress(conn, envelope, event, settings, f"cannot compose the auto response: {exc}")
        return
    await store.insert_outbound(conn, mail)


def _compose_auto_reply(
    envelope: Envelope, event: AutoReplyRequested, queue: QueueMailSettings, settings: NotifySettings, recipient: str
) -> NewOutbound:
    msg = compose_auto_reply(
        event, queue, domain=settings.mail_domain, date=envelope.occurred_at, on_template_error=_template_problem
    )
    return NewOutbound.from_message(
        msg,
        envelope_from="" if settings.auto_reply_null_sender else queue.system_address.email,
        cause_event_id=envelope.event_id,
        purpose=PURPOSE_AUTO_REPLY,
        ticket_id=event.ticket_id,
        kind=event.kind,
        correlation_id=envelope.correlation_id,
        requested_at=envelope.occurred_at,
        recipient_key=recipient,
    )


async def _suppress(
    conn: asyncpg.Connection, envelope: Envelope, event: AutoReplyRequested, settings: NotifySettings, reason: str
) -> None:
    recipient = address_email(event.to) or event.to
    recorded = await store.insert_suppression(
        conn,
        cause_event_id=envelope.event_id,
        ticket_id=event.ticket_id,
        kind=event.kind,
        recipient=recipient,
        reason=reason,
        requested_at=envelope.occurred_at,
    )
    if not recorded:
        return
    logger.info("auto response %s to %s suppressed: %s", event.kind, recipient, reason)
    AUTO_REPLIES_SUPPRESSED.inc()
    suppressed = AutoReplySuppressed(ticket_id=event.ticket_id, kind=event.kind, to=recipient, reason=reason)
    await store.publish(
        conn,
        settings.topic(TOPIC_DELIVERY_EVENTS),
        suppressed,
        ticket_id=event.ticket_id,
        correlation_id=envelope.correlation_id,
        causation_id=envelope.event_id,
    )


HANDLERS: dict[str, TypedHandler] = {
    QueueConfigured.TYPE: handle_queue_configured,
    AnswerSent.TYPE: handle_answer_sent,
    AutoReplyRequested.TYPE: handle_auto_reply_requested,
    AgentProfileChanged.TYPE: handle_agent_profile,
}

HANDLED_TYPES: frozenset[str] = frozenset(HANDLERS) | frozenset(HANDLED)
"""Every event type the handler acts on; the consumer passes over the rest."""
