"""The agents' commands and queue configuration, as the API calls them.

Each function finds the ticket by its number, builds the domain command and runs it through
:class:`~services.tickets.commands.Tickets`; the rules are all in ``domain.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime
from email.utils import parseaddr
from typing import Any

import asyncpg

from services.tickets import store
from services.tickets.commands import Context, Decide, Outcome, Tickets
from services.tickets.domain import (
    AddNote,
    AddPhoneArticle,
    Answer,
    CreateByAgent,
    Lock,
    MarkSpam,
    Merge,
    Move,
    QueueGuard,
    SetOwner,
    SetPriority,
    SetResponsible,
    SetState,
    SetTitle,
    Split,
    Ticket,
    Unlock,
    Unmerge,
    Unwatch,
    Watch,
    answer_attachments,
    decide_add_note,
    decide_add_phone_article,
    decide_answer,
    decide_create_by_agent,
    decide_lock,
    decide_mark_spam,
    decide_merge,
    decide_move,
    decide_set_owner,
    decide_set_priority,
    decide_set_responsible,
    decide_set_state,
    decide_set_title,
    decide_split,
    decide_unlock,
    decide_unmerge,
    decide_unwatch,
    decide_watch,
    ticket_attachments,
)
from services.tickets.errors import (
    AlreadyLocked,
    InvalidInput,
    NotLocked,
    NotMerged,
    TicketError,
    TicketNotFound,
    UnknownArticle,
    UnknownQueue,
)
from services.tickets.projections import queue_stream
from services.tickets.views import absorbed_ticket_ids
from shared.envelope import make_envelope, new_id, utcnow
from shared.events import Attachment, EventData, QueueConfigured
from shared.eventstore import ConcurrencyError
from shared.outbox import enqueue


def _guarded(guard: QueueGuard, decide: Decide) -> Decide:
    def decide_if_admitted(ticket: Ticket | None, now: datetime) -> list[EventData]:
        guard.admit(ticket)
        return decide(ticket, now)

    return decide_if_admitted


def _refuse_guard(ctx: Context) -> None:
    """Commands that create or join tickets are checked by the gateway, not by a queue guard:
    a guard sent with one would otherwise be silently ignored."""
    if ctx.guard is not None:
        raise InvalidInput("X-Permitted-Queues", "a queue guard is not accepted on this command")


def _accepting(error: type[TicketError], decide: Callable[[], list[EventData]]) -> list[EventData]:
    """``decide()``, with ``error`` meaning "already so": nothing to do, and no failure."""
    try:
        return decide()
    except error:
        return []


class Actions:
    """One request's commands, all on one connection (each pool checkout costs a reset round trip)."""

    def __init__(self, tickets: Tickets, conn: asyncpg.Connection) -> None:
        self.tickets = tickets
        self.conn = conn
        self.settings = tickets.settings

    async def ticket_id(self, number: str) -> str:
        ticket_id = await store.ticket_id_by_number(self.conn, number)
        if ticket_id is None:
            raise TicketNotFound(f"no ticket {number}")
        return ticket_id

    async def _run(self, number: str, decide: Decide, ctx: Context) -> Outcome:
        guard = ctx.guard
        if guard is not None:
            decide = _guarded(guard, decide)
        return await self.tickets.execute(self.conn, await self.ticket_id(number), decide, ctx)

    # ------------------------------------------------------------------ lock and people

    async def lock(self, number: str, ctx: Context) -> Outcome:
        """Locking a ticket one already holds is a success that changes nothing."""
        cmd = Lock(agent=ctx.actor)
        return await self._run(number, lambda t, now: _accepting(AlreadyLocked, lambda: decide_lock(t, cmd, now)), ctx)

    async def unlock(self, number: str, force: bool, ctx: Context) -> Outcome:
        cmd = Unlock(agent=ctx.actor, force=force)
        return await self._run(number, lambda t, now: _accepting(NotLocked, lambda: decide_unlock(t, cmd, now)), ctx)

    async def set_owner(self, number: str, owner: str | None, ctx: Context) -> Outcome:
        cmd = SetOwner(agent=ctx.actor, owner=owner)
        return await self._run(number, lambda t, now: decide_set_owner(t, cmd, now), ctx)

    async def set_responsible(self, number: str, responsible: str | None, ctx: Context) -> Outcome:
        cmd = SetResponsible(agent=ctx.actor, responsible=responsible)
        return await self._run(number, lambda t, now: decide_set_responsible(t, cmd, now), ctx)

    async def watch(self, number: str, ctx: Context) -> Outcome:
        cmd = Watch(agent=ctx.actor)
        return await self._run(number, lambda t, now: decide_watch(t, cmd, now), ctx)

    async def unwatch(self, number: str, ctx: Context) -> Outcome:
        cmd = Unwatch(agent=ctx.actor)
        return await self._run(number, lambda t, now: decide_unwatch(t, cmd, now), ctx)

    # ------------------------------------------------------------------ fields

    async def move(self, number: str, queue: str, reason: str | None, ctx: Context) -> Outcome:
        known = await store.known_queues(self.conn)
        cmd = Move(agent=ctx.actor, queue=queue, reason=reason)
        return await self._run(number, lambda t, now: decide_move(t, cmd, now, known), ctx)

    async def set_state(self, number: str, state: str, pending_until: datetime | None, ctx: Context) -> Outcome:
        cmd = SetState(agent=ctx.actor, state=state, pending_until=pending_until)
        return await self._run(number, lambda t, now: decide_set_state(t, cmd, now), ctx)

    async def set_priority(self, number: str, priority: int, ctx: Context) -> Outcome:
        cmd = SetPriority(agent=ctx.actor, priority=priority)
        return await self._run(number, lambda t, now: decide_set_priority(t, cmd, now), ctx)

    async def set_title(self, number: str, title: str, ctx: Context) -> Outcome:
        cmd = SetTitle(agent=ctx.actor, title=title)
        return await self._run(number, lambda t, now: decide_set_title(t, cmd, now), ctx)

    async def mark_spam(self, number: str, ctx: Context) -> Outcome:
        cmd = MarkSpam(agent=ctx.actor, junk_queue=self.settings.junk_queue)
        return await self._run(number, lambda t, now: decide_mark_spam(t, cmd, now), ctx)

    # ------------------------------------------------------------------ articles

    async def note(self, number: str, body: str, subject: str, ctx: Context) -> Outcome:
        cmd = AddNote(agent=ctx.actor, body=body, subject=subject)
        return await self._run(number, lambda t, now: decide_add_note(t, cmd, now), ctx)

    async def phone(self, number: str, body: str, subject: str, direction: str, ctx: Context) -> Outcome:
        cmd = AddPhoneArticle(agent=ctx.actor, body=body, subject=subject, direction=direction)
        return await self._run(number, lambda t, now: decide_add_phone_article(t, cmd, now), ctx)

    async def answer(self, number: str, fields: dict[str, Any], ctx: Context) -> Outcome:
        """``fields``: body, to, cc, subject, template, next_state, pending_until, customer_name,
        agent_name, attachments (``[{mail_id, part}]``, each an attachment of the ticket's articles
        as its zoom shows them). The customer's name defaults to the display name of their last mail."""
        article_id = new_id()
        requested = fields.pop("attachments", None) or []
        attachments = await self._answer_attachments(number, requested) if requested else []

        def decide(t: Ticket | None, now: datetime) -> list[EventData]:
            cmd = Answer(
                agent=ctx.actor,
                article_id=article_id,
                mail_domain=self.settings.mail_domain,
                attachments=attachments,
                **{**fields, "customer_name": fields.get("customer_name") or _customer_name(t)},
            )
            return decide_answer(t, cmd, now)

        return await self._run(number, decide, ctx)

    async def _answer_attachments(self, number: str, requested: list[dict[str, Any]]) -> list[Attachment]:
        """The full entries of an answer's attachments, from the zoom's articles (merged-in tickets too)."""
        row = await store.ticket_row(self.conn, number)
        if row is None:
            raise TicketNotFound(f"no ticket {number}")
        articles = await store.articles_of(self.conn, [row["ticket_id"], *absorbed_ticket_ids(row)])
        available = ticket_attachments(dict(a) for a in articles)
        return answer_attachments(requested, available, self.settings.max_answer_attachment_bytes)

    # ------------------------------------------------------------------ new tickets

    async def create_ticket(self, fields: dict[str, Any], ctx: Context, idempotency_key: str | None = None) -> Outcome:
        """A phone or email ticket (:class:`CreateByAgent`; ``fields`` are its fields but the
        ids, number and agent). With an idempotency key the ticket and article ids derive from
        it and the actor, so a retried request lands on its ticket and decides nothing."""
        _refuse_guard(ctx)
        known = await store.known_queues(self.conn)
        if fields.get("queue") not in known:  # before a number is drawn: no gap for a typo
            raise UnknownQueue(f"there is no queue {fields.get('queue')!r}")
        ticket_id, article_id = agent_ticket_ids(ctx.actor, idempotency_key)
        cmd = CreateByAgent(
            agent=ctx.actor,
            ticket_id=ticket_id,
            ticket_number=await self.tickets.next_number(utcnow()),
            article_id=article_id,
            mail_domain=self.settings.mail_domain,
            **fields,
        )
        return await self.tickets.execute(
            self.conn,
            ticket_id,
            lambda t, now: decide_create_by_agent(t, cmd, now, known),
            ctx,
            probably_new=idempotency_key is None,
        )

    # ------------------------------------------------------------------ merge and split

    async def merge(self, number: str, into: str, ctx: Context) -> tuple[Outcome, Outcome]:
        _refuse_guard(ctx)
        source_id, target_id = await self.ticket_id(number), await self.ticket_id(into)
        cmd = Merge(agent=ctx.actor)
        return await self.tickets.execute_pair(
            self.conn, (source_id, target_id), lambda s, t, now: decide_merge(s, t, cmd, now), ctx
        )

    async def unmerge(self, number: str, ctx: Context) -> tuple[Outcome, Outcome]:
        _refuse_guard(ctx)
        row = await store.ticket_row(self.conn, number)
        if row is None:
            raise TicketNotFound(f"no ticket {number}")
        merged = row["doc"].get("merged_into")
        if merged is None:
            raise NotMerged(f"ticket {number} is not merged")
        cmd = Unmerge(agent=ctx.actor)
        ids = (row["ticket_id"], merged["into_ticket_id"])
        return await self.tickets.execute_pair(self.conn, ids, lambda s, t, now: decide_unmerge(s, t, cmd, now), ctx)

    async def split(
        self, number: str, article_id: str, title: str | None, queue: str | None, ctx: Context
    ) -> tuple[Outcome, Outcome]:
        """The aggregate keeps no bodies: the split-off article's text comes from the articles table."""
        _refuse_guard(ctx)
        source_id = await self.ticket_id(number)
        text = await store.article(self.conn, article_id)
        if text is None or text["ticket_id"] != source_id:
            raise UnknownArticle(f"ticket {number} has no article {article_id}")
        new_ticket_id, new_number = new_id(), await self.tickets.next_number(utcnow())
        cmd = Split(
            agent=ctx.actor,
            article_id=article_id,
            new_ticket_id=new_ticket_id,
            new_ticket_number=new_number,
            body=text["body"],
            body_html=text["body_html"],
            attachments=text["attachments"],
            title=title,
            queue=queue,
        )
        return await self.tickets.execute_pair(
            self.conn, (source_id, new_ticket_id), lambda s, _new, now: decide_split(s, cmd, now), ctx
        )

    # ------------------------------------------------------------------ queues

    async def configure_queue(self, config: QueueConfigured, ctx: Context) -> bool:
        """Append ``QueueConfigured`` to ``queue-<name>`` unless the queue is configured so
        already; published on ticket.events keyed ``queue:<name>``. True if it changed."""
        for attempt in range(1, self.settings.command_attempts + 1):
            try:
                async with self.conn.transaction():
                    return await self._configure(self.conn, config, ctx)
            except ConcurrencyError:
                if attempt == self.settings.command_attempts:
                    raise
        return False

    async def _configure(self, conn: asyncpg.Connection, config: QueueConfigured, ctx: Context) -> bool:
        stream = queue_stream(config.name)
        history = await self.tickets.events.read_stream(stream, conn=conn)
        data = config.model_dump(mode="json", by_alias=True)
        if history and history[-1].data == data:
            return False
        envelope = make_envelope(
            config, stream_id=stream, actor=ctx.actor, correlation_id=ctx.correlation_id, causation_id=ctx.causation_id
        )
        version = history[-1].stream_version if history else 0
        sealed = await self.tickets.events.append(stream, version, [envelope], conn=conn)
        await enqueue(conn, self.tickets.topic, sealed, key=f"queue:{config.name}")
        await self.tickets.projector.project(conn, sealed)
        return True


_AGENT_TICKETS = uuid.UUID("0b6c2a9e-5f3d-4c1e-9d7a-3e8f1a2b4c5d")


def agent_ticket_ids(actor: str, idempotency_key: str | None) -> tuple[str, str]:
    """(ticket id, first article id) of an agent-created ticket: fresh UUIDv7s, or, for an
    idempotency key, derived from it and the actor (so two agents' keys never collide)."""
    if not idempotency_key:
        return new_id(), new_id()
    seed = f"{actor}\n{idempotency_key}"
    return str(uuid.uuid5(_AGENT_TICKETS, f"ticket:{seed}")), str(uuid.uuid5(_AGENT_TICKETS, f"article:{seed}"))


def _customer_name(ticket: Ticket | None) -> str | None:
    last = ticket.last_customer_mail() if ticket else None
    if last is None or last.sender is None:
        return None
    return parseaddr(last.sender)[0] or None
