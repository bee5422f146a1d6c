"""Running ticket commands: load, decide, append with the expected version, project, publish.

Every command, from an agent over HTTP, from the router's decision or from a timer, goes through
:meth:`Tickets.execute` (one stream) or :meth:`Tickets.execute_pair` (merge, unmerge, split:
both streams in one transaction). An attempt runs in a transaction of its own (a savepoint when
the caller already holds one, as a consumer does): the ticket is loaded (snapshot plus tail),
the pure ``decide_*`` function decides, the events are appended after the version that was
read (the outbox row for ``ticket.events`` commits with them) and projected into the read
models. A version conflict means someone else changed the ticket meanwhile: the command is
decided again on the new state, so it is retried only if it is still valid (a second lock then
fails with ``locked_by_other``), and after ``command_attempts`` tries the conflict is reported.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from services.tickets import store
from services.tickets.domain import (
    CreateFromMail,
    FollowUpFromMail,
    QueueGuard,
    Ticket,
    decide_create,
    decide_escalation_settings,
    decide_follow_up,
    escalation_settings_of,
    from_snapshot,
    to_snapshot,
)
from services.tickets.errors import FollowUpMakesNewTicket, TicketIsMerged, TicketIsRemoved, TicketNotFound
from services.tickets.numbers import DateChecksumGenerator
from services.tickets.privacy import Vault, decrypt_all, kids_of
from services.tickets.projections import Projector, list_row
from services.tickets.settings import TicketsSettings
from services.tickets.state import evolve, fold
from shared.db import create_pool
from shared.envelope import Envelope, make_envelope, utcnow
from shared.events import TOPIC_TICKET_EVENTS, EventData, TicketRouted
from shared.eventstore import ConcurrencyError, EventStore
from shared.logs import correlation_id
from shared.outbox import enqueue

# Ticket ids of mail-born tickets are derived from the mail id, so a decision about the same
# mail always lands on the same stream (redelivery finds the ticket and changes nothing).
_MAIL_NAMESPACE = uuid.UUID("6f1c8a52-3d4e-4b7a-9a51-f1257c0d3e11")

Decide = Callable[[Ticket | None, datetime], list[EventData]]
DecidePair = Callable[[Ticket | None, Ticket | None, datetime], tuple[list[EventData], list[EventData]]]


def ticket_id_for_mail(mail_id: str) -> str:
    return str(uuid.uuid5(_MAIL_NAMESPACE, f"ticket:{mail_id}"))


def article_id_for_mail(mail_id: str) -> str:
    return str(uuid.uuid5(_MAIL_NAMESPACE, f"article:{mail_id}"))


@dataclass(frozen=True, slots=True)
class Context:
    """Who acts and why: copied onto every envelope a command writes."""

    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None
    guard: QueueGuard | None = None  # an agent's command: the queues it is permitted in

    @classmethod
    def of(cls, actor: str, causation_id: str | None = None, guard: QueueGuard | None = None) -> Context:
        """For the request or message in hand (its correlation id is in the logging context)."""
        return cls(actor=actor, correlation_id=correlation_id.get(), causation_id=causation_id, guard=guard)

    @classmethod
    def caused_by(cls, envelope: Envelope, actor: str | None = None) -> Context:
        return cls(
            actor=actor or envelope.actor,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )


@dataclass(frozen=True, slots=True)
class Outcome:
    ticket: Ticket | None
    events: list[Envelope]

    @property
    def version(self) -> int:
        return self.ticket.version if self.ticket else 0


class PostgresDayCounter:
    """The :class:`~services.tickets.numbers.DayCounter` of the service: the ``ticket_counters``
    table, reserving ``block`` values at a time so most numbers cost no round trip.

    Reservations are disjoint and the table only grows, so numbers are unique across
    concurrent writers, replicas and restarts; values reserved and not used (a restart, a
    rolled-back ticket) leave gaps, as OTRS's counter can.

    The counter has a pool of its own: a reservation is asked for inside a caller's
    transaction, and if it waited for the service's pool, whose connections may all be held by
    commands waiting for that very transaction's row locks, nothing would ever move.
    """

    def __init__(self, dsn: str, block: int = 1) -> None:
        self._dsn = dsn
        self._block = max(block, 1)
        self._pool: asyncpg.Pool | None = None
        self._day: date | None = None
        self._next = self._last = 0
        self._lock = asyncio.Lock()

    async def next_value(self, day: date) -> int:
        async with self._lock:
            if day != self._day or self._next > self._last:
                self._last = await store.next_day_counter(await self._own_pool(), day, self._block)
                self._day, self._next = day, self._last - self._block + 1
            value, self._next = self._next, self._next + 1
            return value

    async def _own_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            self._pool = await create_pool(self._dsn, min_size=0, max_size=1)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class Tickets:
    """The tickets service's command side (the event store is the service's)."""

    def __init__(self, settings: TicketsSettings, pool: Callable[[], asyncpg.Pool], events: Callable[[], EventStore]):
        self.settings = settings
        self._pool = pool
        self._events = events
        self.projector = Projector()
        self.vault = Vault()
        self.counter = PostgresDayCounter(settings.database_url, settings.ticket_number_block)
        self.numbers = DateChecksumGenerator(self.counter, settings.ticket_system_id)
        self.topic = settings.topic(TOPIC_TICKET_EVENTS)
        # Queue escalation times the timers have brought every open ticket up to (per replica).
        self.escalation_keys_seen: dict[str, str] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    @property
    def events(self) -> EventStore:
        return self._events()

    async def next_number(self, now: datetime) -> str:
        return await self.numbers.next_number(now.date())

    # ------------------------------------------------------------------ loading

    async def load(self, conn: asyncpg.Connection, stream_id: str) -> Ticket | None:
        """The ticket from its latest snapshot and the events after it, decrypted.

        The ticket's subject keys are share-locked first (``privacy``): an erasure waits for
        this command, or this command reads the keys as erased.
        """
        keys = await self.vault.lock(conn, stream_id)
        start: Ticket | None = None
        snapshot = await store.load_snapshot(conn, stream_id)
        if snapshot is not None:
            try:
                start = from_snapshot(snapshot[1])
            except ValueError:
                start = None  # a snapshot of an older format: fold the whole stream
        after = start.version if start else 0
        tail = await self.events.read_stream(stream_id, after_version=after, conn=conn)
        if kids_of(tail) - keys.keys():
            return fold(await self.vault.open(conn, tail), start)
        return fold(decrypt_all(tail, keys), start)

    # ------------------------------------------------------------------ writing

    async def write(
        self, conn: asyncpg.Connection, stream_id: str, ticket: Ticket | None, events: Sequence[EventData],
        ctx: Context, now: datetime,
    ) -> tuple[Ticket | None, list[Envelope]]:  # fmt: skip
        """Append ``events`` after ``ticket``'s version, project them, snapshot when due.

        Every write also brings the ticket's escalation times up to date with its queue's (see
        :func:`~services.tickets.domain.decide_escalation_settings`), in the same append.
        """
        if not events:
            return ticket, []
        events = [*events, *await self._escalation_settings(conn, ticket, events, ctx, now)]
        envelopes = [
            make_envelope(
                e,
                stream_id=stream_id,
                actor=ctx.actor,
                correlation_id=ctx.correlation_id,
                causation_id=ctx.causation_id,
                occurred_at=now,
            )
            for e in events
        ]
        expected = ticket.version if ticket else 0
        stored = await self.events.append(
            stream_id, expected, await self.vault.seal(conn, stream_id, envelopes), conn=conn
        )
        # The chain covers the stored (encrypted) data; Kafka and the read models get plaintext.
        sealed = [s.model_copy(update={"data": e.data}) for s, e in zip(stored, envelopes, strict=True)]
        await enqueue(conn, self.topic, sealed)
        await self.projector.project(conn, sealed, known={stream_id: list_row(ticket)})
        after = fold(sealed, ticket)
        await self._snapshot_if_due(conn, expected, after)
        return after, sealed

    async def _escalation_settings(
        self, conn: asyncpg.Connection, ticket: Ticket | None, events: Sequence[EventData], ctx: Context, now: datetime
    ) -> list[EventData]:
        after = ticket
        for i, event in enumerate(events, start=1):
            after = evolve(after, event, actor=ctx.actor, at=now, version=(ticket.version if ticket else 0) + i)
        if after is None or after.is_closed:
            return []
        return decide_escalation_settings(after, escalation_settings_of(await store.queue_settings(conn, after.queue)))

    async def _snapshot_if_due(self, conn: asyncpg.Connection, before: int, ticket: Ticket | None) -> None:
        every = self.settings.snapshot_every
        if ticket is not None and every > 0 and ticket.version // every > before // every:
            await store.save_snapshot(conn, ticket.ticket_id, ticket.version, to_snapshot(ticket))

    # ------------------------------------------------------------------ commands

    async def execute(
        self, conn: asyncpg.Connection, stream_id: str, decide: Decide, ctx: Context, *, probably_new: bool = False
    ) -> Outcome:
        """Decide and append on one stream, deciding again after a version conflict.

        In a caller's transaction no savepoint is needed: nothing is written before the append,
        whose own savepoint undoes a conflicting insert. ``probably_new``: decide the first
        attempt on no ticket without reading the stream (a new mail's ticket); if the stream
        exists after all, the append conflicts and the next attempt reads it.
        """
        for attempt in range(1, self.settings.command_attempts + 1):
            now = utcnow()
            try:
                async with _attempt(conn):
                    ticket = None if probably_new and attempt == 1 else await self.load(conn, stream_id)
                    after, sealed = await self.write(conn, stream_id, ticket, decide(ticket, now), ctx, now)
                    return Outcome(after, sealed)
            except (ConcurrencyError, asyncpg.DeadlockDetectedError) as exc:
                if attempt == self.settings.command_attempts:
                    raise _conflict(stream_id, exc) from exc
        raise AssertionError("unreachable")

    async def execute_pair(
        self, conn: asyncpg.Connection, ids: tuple[str, str], decide: DecidePair, ctx: Context
    ) -> tuple[Outcome, Outcome]:
        """Decide on two streams and append to both in one transaction."""
        first_id, second_id = ids
        for attempt in range(1, self.settings.command_attempts + 1):
            now = utcnow()
            try:
                async with conn.transaction():
                    first = await self.load(conn, first_id)
                    second = await self.load(conn, second_id)
                    first_events, second_events = decide(first, second, now)
                    first_after, first_sealed = await self.write(conn, first_id, first, first_events, ctx, now)
                    second_after, second_sealed = await self.write(conn, second_id, second, second_events, ctx, now)
                    return Outcome(first_after, first_sealed), Outcome(second_after, second_sealed)
            except (ConcurrencyError, asyncpg.DeadlockDetectedError) as exc:
                if attempt == self.settings.command_attempts:
                    raise _conflict(first_id, exc) from exc
        raise AssertionError("unreachable")

    async def run(self, stream_id: str, decide: Decide, ctx: Context) -> Outcome:
        """:meth:`execute` on a connection of its own (HTTP commands, timers)."""
        async with self.pool.acquire() as conn:
            return await self.execute(conn, stream_id, decide, ctx)

    async def run_pair(self, ids: tuple[str, str], decide: DecidePair, ctx: Context) -> tuple[Outcome, Outcome]:
        async with self.pool.acquire() as conn:
            return await self.execute_pair(conn, ids, decide, ctx)

    # ------------------------------------------------------------------ mail from the router

    async def receive(self, conn: asyncpg.Connection, routed: TicketRouted, ctx: Context) -> Outcome | None:
        """Apply the router's decision about one mail (inside the consumer's transaction)."""
        if routed.action == "ignore":
            return None
        if routed.action == "new" or routed.ticket_number is None:
            return await self.create_from_mail(conn, routed, ctx)
        ticket_id = await store.ticket_id_by_number(conn, routed.ticket_number)
        if ticket_id is None:  # a number we don't know (another system's, or never ours): keep the mail
            return await self.create_from_mail(conn, routed, ctx)
        return await self.follow_up(conn, ticket_id, routed, ctx)

    async def create_from_mail(self, conn: asyncpg.Connection, routed: TicketRouted, ctx: Context) -> Outcome:
        ticket_id = ticket_id_for_mail(routed.mail_id)
        as_new = routed.model_copy(update={"action": "new", "ticket_number": None})
        number = await self.next_number(utcnow())  # wasted (a gap) if the mail was seen before
        cmd = CreateFromMail(
            routed=as_new, ticket_id=ticket_id, ticket_number=number, article_id=article_id_for_mail(routed.mail_id)
        )
        return await self.execute(conn, ticket_id, lambda t, now: decide_create(t, cmd, now), ctx, probably_new=True)

    async def follow_up(self, conn: asyncpg.Connection, ticket_id: str, routed: TicketRouted, ctx: Context) -> Outcome:
        """Add the mail to the ticket; a merged ticket passes it on to the one it was merged into;
        a removed one, or a closed one whose queue says so, makes it a new ticket."""
        for _ in range(self.settings.max_merge_hops):
            cmd = FollowUpFromMail(
                routed=routed,
                article_id=article_id_for_mail(routed.mail_id),
                follow_up_policy=await store.follow_up_policy(conn, ticket_id),
            )
            try:
                return await self.execute(conn, ticket_id, _following_up(cmd), ctx)
            except TicketIsMerged as merged:
                ticket_id = merged.into_ticket_id
                routed = routed.model_copy(update={"ticket_number": merged.into_number})
            except (TicketIsRemoved, TicketNotFound, FollowUpMakesNewTicket):
                break
        return await self.create_from_mail(conn, routed, ctx)


def _following_up(cmd: FollowUpFromMail) -> Decide:
    return lambda ticket, now: decide_follow_up(ticket, cmd, now)


def _attempt(conn: asyncpg.Connection) -> AbstractAsyncContextManager[object]:
    """A transaction for one attempt, unless the caller already holds one."""
    return nullcontext() if conn.is_in_transaction() else conn.transaction()


def _conflict(stream_id: str, exc: Exception) -> ConcurrencyError:
    """What the caller sees (409 ``conflict``) when every attempt met a concurrent change."""
    return exc if isinstance(exc, ConcurrencyError) else ConcurrencyError(stream_id, -1, -1)
