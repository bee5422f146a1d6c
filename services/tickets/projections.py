"""Read models from the event log: the ticket list, articles, the mail index, queue counts, queues.

Design: projections are written **synchronously, in the transaction that appends the events**
(commands and consumers call :meth:`Projector.project` right after ``EventStore.append``).
So the read models are exactly as consistent as the log, an agent sees the result of a
command in the very next read, and nothing can drift. The same code rebuilds them from zero
(``services.tickets.rebuild`` reads the log in commit order and projects it into fresh tables),
so "rebuildable" and "live" are one path.

Idempotent: a ticket row records the version of its stream it reflects; an event at or below it
changes nothing (articles and mail rows come with the event, so they follow the same gate).
A ticket row is the fold of its stream by ``services.tickets.state`` without article metadata,
so the list always agrees with what commands decide on.

:func:`plan` is pure (events and current rows in, rows to write out); :class:`Projector` does
the reading and writing through :mod:`services.tickets.store`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypedDict

import asyncpg

from services.tickets import store
from services.tickets.state import Ticket, bounce_detail, evolve
from shared.envelope import Envelope
from shared.events import (
    AnswerDelivered,
    AnswerSent,
    ArticleAdded,
    DeliveryBounced,
    DeliveryFailed,
    EventData,
    NoteAdded,
    PhoneArticleAdded,
    QueueConfigured,
)

QUEUE_STREAM_PREFIX = "queue-"
CountKey = tuple[str, str, bool]


def queue_stream(name: str) -> str:
    return f"{QUEUE_STREAM_PREFIX}{name}"


@dataclass
class Plan:
    """What a run of events changes in the read models."""

    before: dict[str, Ticket | None] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    articles: list[store.ArticleRow] = field(default_factory=list)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)
    bounce_links: list[tuple[str, str]] = field(default_factory=list)  # (bounce article, answer article)
    mails: list[tuple[str, str, str]] = field(default_factory=list)
    queues: dict[str, tuple[str, str | None, bool, dict[str, Any], int]] = field(default_factory=dict)

    def count_deltas(self) -> list[tuple[str, str, bool, int]]:
        """Changes to (queue, state, locked) counts, in key order (the order rows are written)."""
        deltas: dict[CountKey, int] = {}
        for ticket_id, after in self.tickets.items():
            before = self.before.get(ticket_id)
            for key, step in ((count_key(before), -1), (count_key(after), 1)):
                if key is not None:
                    deltas[key] = deltas.get(key, 0) + step
        return [(*key, n) for key, n in sorted(deltas.items()) if n]


def count_key(ticket: Ticket | None) -> CountKey | None:
    return None if ticket is None else (ticket.queue, ticket.state, ticket.lock is not None)


def plan(envelopes: Sequence[Envelope], tickets: dict[str, Ticket], queue_versions: dict[str, int]) -> Plan:
    """The read-model changes of ``envelopes`` (in commit order), given the current rows."""
    result = Plan()
    for envelope in envelopes:
        event = envelope.payload()
        if isinstance(event, QueueConfigured):
            _plan_queue(result, envelope, event, queue_versions)
            continue
        current = result.tickets.get(envelope.stream_id, tickets.get(envelope.stream_id))
        if current is not None and envelope.stream_version <= current.version:
            continue
        result.before.setdefault(envelope.stream_id, tickets.get(envelope.stream_id))
        result.tickets[envelope.stream_id] = list_state(current, event, envelope)
        _plan_articles(result, envelope, event)
    return result


def list_state(ticket: Ticket | None, event: EventData, envelope: Envelope) -> Ticket:
    """The aggregate's fold, minus the article metadata (the articles table has the articles)."""
    after = evolve(ticket, event, actor=envelope.actor, at=envelope.occurred_at, version=envelope.stream_version)
    return _without_articles(after)


def list_row(ticket: Ticket | None) -> Ticket | None:
    """What the ticket list keeps of a ticket: all of it but the article metadata."""
    return None if ticket is None else _without_articles(ticket)


def _without_articles(ticket: Ticket) -> Ticket:
    return ticket.model_copy(update={"articles": ()}) if ticket.articles else ticket


def _plan_queue(result: Plan, envelope: Envelope, event: QueueConfigured, versions: dict[str, int]) -> None:
    known = result.queues.get(event.name, (None, None, None, None, versions.get(event.name, 0)))[4]
    if envelope.stream_version > known:
        config = event.model_dump(mode="json")
        result.queues[event.name] = (event.group, event.parent, event.valid, config, envelope.stream_version)


def _plan_articles(result: Plan, envelope: Envelope, event: EventData) -> None:
    row = article_row(envelope, event)
    if row is not None:
        result.articles.append(row)
        if row.mail_id is not None:
            result.mails.append((row.mail_id, row.ticket_id, row.article_id))
    elif isinstance(event, AnswerDelivered):
        result.deliveries.append((event.article_id, "delivered", event.relay_response))
    elif isinstance(event, DeliveryFailed) and event.article_id is not None:
        detail = f"{event.reason} (permanent)" if event.permanent else event.reason
        result.deliveries.append((event.article_id, "failed", detail))
    elif isinstance(event, DeliveryBounced):
        result.deliveries.append((event.article_id, "bounced", bounce_detail(event)))
        result.bounce_links.append((event.bounce_article_id, event.article_id))


def article_row(envelope: Envelope, event: EventData) -> store.ArticleRow | None:
    """The article an event adds, with its text; None for events that add none."""
    common = _Origin(
        ticket_id=envelope.stream_id,
        stream_version=envelope.stream_version,
        created_at=envelope.occurred_at,
        created_by=envelope.actor,
    )
    if isinstance(event, ArticleAdded):
        kind = {"email": "email", "phone": "phone", "internal": "note"}[event.channel]
        return store.ArticleRow(
            **common,
            article_id=event.article_id,
            kind=kind,
            channel=event.channel,
            sender_type=event.sender_type,
            visible_to_customer=event.visible_to_customer,
            from_addr=event.from_,
            to_addrs=list(event.to),
            cc_addrs=list(event.cc),
            subject=event.subject,
            body=event.body,
            body_html=event.body_html,
            mail_id=event.mail_id,
            message_id=event.message_id,
            in_reply_to=event.in_reply_to,
            attachments=[a.model_dump(mode="json") for a in event.attachments],
            delivery=None,
        )
    if isinstance(event, NoteAdded | PhoneArticleAdded):
        return _agent_article(common, event, envelope.actor)
    if isinstance(event, AnswerSent):
        return store.ArticleRow(
            **common,
            article_id=event.article_id,
            kind="answer",
            channel="email",
            sender_type="agent",
            visible_to_customer=True,
            from_addr=envelope.actor,
            to_addrs=list(event.to),
            cc_addrs=list(event.cc),
            subject=event.subject,
            body=event.body,
            body_html=None,
            mail_id=None,
            message_id=event.message_id,
            in_reply_to=event.in_reply_to,
            attachments=[a.model_dump(mode="json") for a in event.attachments],
            delivery="queued",
        )
    return None


class _Origin(TypedDict):
    """Where an article comes from: the event that added it."""

    ticket_id: str
    stream_version: int
    created_at: datetime
    created_by: str


def _agent_article(common: _Origin, event: NoteAdded | PhoneArticleAdded, actor: str) -> store.ArticleRow:
    phone = isinstance(event, PhoneArticleAdded)
    inbound = isinstance(event, PhoneArticleAdded) and event.direction == "inbound"
    return store.ArticleRow(
        **common,
        article_id=event.article_id,
        kind="phone" if phone else "note",
        channel="phone" if phone else "internal",
        sender_type="customer" if inbound else "agent",
        visible_to_customer=phone,
        from_addr=actor,
        to_addrs=[],
        cc_addrs=[],
        subject=event.subject,
        body=event.body,
        body_html=None,
        mail_id=None,
        message_id=None,
        in_reply_to=None,
        attachments=[],
        delivery=None,
    )


def ticket_row(ticket: Ticket) -> store.TicketRow:
    due = ticket.escalation_due
    return store.TicketRow(
        ticket_id=ticket.ticket_id,
        number=ticket.number,
        title=ticket.title,
        state=ticket.state,
        locked_by=ticket.lock,
        owner=ticket.owner,
        responsible=ticket.responsible,
        queue=ticket.queue,
        priority=ticket.priority,
        customer_email=ticket.customer_email,
        customer_id=ticket.customer_id,
        created_at=ticket.created_at,
        changed_at=ticket.changed_at,
        pending_until=ticket.pending_until,
        due_at=ticket.timer_due_at,
        watchers=list(ticket.watchers),
        merged_into=ticket.merged_into.into_number if ticket.merged_into else None,
        spam=ticket.spam,
        version=ticket.version,
        doc=ticket.model_dump(mode="json", exclude={"articles"}),
        escalation_due_at=due.due_at if due else None,
        escalation_kind=due.kind if due else None,
        escalation_next_at=ticket.escalation_next_at,
        escalation_settings=ticket.escalation_settings_key,
    )


class Projector:
    """Reads the rows a run of events touches, plans, and writes the changes (one statement
    per table)."""

    async def project(
        self, conn: asyncpg.Connection, envelopes: Sequence[Envelope], known: dict[str, Ticket | None] | None = None
    ) -> Plan:
        """``known``: list rows the caller already has (a command's ticket before its events is
        exactly its row: both are the fold of the same committed events), saving the read."""
        known = known or {}
        ticket_ids = {e.stream_id for e in envelopes if e.type != QueueConfigured.TYPE} - known.keys()
        queue_names = {e.data["name"] for e in envelopes if e.type == QueueConfigured.TYPE}
        docs = await store.ticket_docs(conn, sorted(ticket_ids)) if ticket_ids else {}
        tickets = {tid: t for tid, t in known.items() if t is not None}
        tickets.update({tid: Ticket.model_validate(doc) for tid, doc in docs.items()})
        versions = await store.queue_versions(conn, sorted(queue_names)) if queue_names else {}
        result = plan(envelopes, tickets, versions)
        await self.write(conn, result)
        return result

    async def replace(self, conn: asyncpg.Connection, streams: dict[str, list[Envelope]]) -> Plan:
        """Project whole ticket streams anew over their rows (erasure: the same events now
        read differently). Queue, state and lock don't change, so the counts stay."""
        await store.delete_ticket_rows(conn, sorted(streams))
        result = plan([e for ticket_id in sorted(streams) for e in streams[ticket_id]], {}, {})
        await self.write(conn, result, counts=False)
        return result

    async def write(self, conn: asyncpg.Connection, result: Plan, *, counts: bool = True) -> None:
        if result.tickets:
            await store.upsert_tickets(conn, [ticket_row(t) for _, t in sorted(result.tickets.items())])
        if result.articles:
            await store.insert_articles(conn, result.articles)
        if result.deliveries:
            await store.set_deliveries(conn, result.deliveries)
        if result.bounce_links:
            await store.set_bounce_links(conn, result.bounce_links)
        if result.mails:
            await store.insert_mails(conn, result.mails)
        deltas = result.count_deltas() if counts else []
        if deltas:
            await store.add_count_deltas(conn, deltas)
        if result.queues:
            await store.upsert_queues(conn, [(name, *row) for name, row in sorted(result.queues.items())])
