"""Time-driven behaviour, as events so a replay reproduces it: the queues' unlock timeout, pending
reminders and pending auto close, escalation warnings and breaches. Also folds the queue count
deltas now and then.

Escalation: each round decides on the tickets whose next warning or breach is due (the list's
indexed ``escalation_next_at``), with their queue's current times. When a queue's times change,
the open tickets still running on the old ones get the new ones, a batch per round, so their due
times (and the list's) follow; each replica remembers which queue times it has caught up with.

One loop per service replica; an advisory lock makes only one of them act at a time, and the
decisions are idempotent anyway (a due ticket is decided on its current state).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import asyncpg

from services.tickets import store
from services.tickets.commands import Context, Decide, Tickets
from services.tickets.domain import (
    decide_escalations,
    decide_pending_due,
    decide_unlock_timeout,
    escalation_settings_of,
)
from services.tickets.errors import TicketError
from services.tickets.state import EscalationSettings
from shared.envelope import utcnow
from shared.eventstore import ConcurrencyError

logger = logging.getLogger(__name__)

TIMER_ACTOR = "system:timer"
_TIMER_LOCK = 0x46_4C_54_4D  # "FLTM"


async def run_timers(tickets: Tickets, stop: asyncio.Event) -> None:
    """Every ``timer_interval_seconds`` until ``stop`` is set."""
    while not stop.is_set():
        try:
            await tick(tickets, utcnow())
        except Exception:  # a failed round is logged; the next one tries again
            logger.exception("timers: round failed")
        try:
            await asyncio.wait_for(stop.wait(), timeout=tickets.settings.timer_interval_seconds)
        except TimeoutError:
            pass


async def tick(tickets: Tickets, now: datetime) -> int:
    """One round as of ``now`` (the decisions' clock; a test may pass a later one): returns how
    many tickets changed."""
    async with tickets.pool.acquire() as conn:
        if not await conn.fetchval("select pg_try_advisory_lock($1)", _TIMER_LOCK):
            return 0
        try:
            limit = tickets.settings.timer_batch_size
            changed = 0
            for ticket_id in await store.due_tickets(conn, now, limit):
                changed += await _decide(tickets, ticket_id, _pending_due(now))
            for ticket_id, minutes in await store.lock_timeouts(conn, now, limit):
                changed += await _decide(tickets, ticket_id, _unlock_timeout(now, timedelta(minutes=minutes)))
            changed += await _escalations(tickets, conn, now, limit)
            await store.compact_counts(conn)
            return changed
        finally:
            await conn.execute("select pg_advisory_unlock($1)", _TIMER_LOCK)


async def _escalations(tickets: Tickets, conn: asyncpg.Connection, now: datetime, limit: int) -> int:
    """Bring open tickets of queues whose times changed over to them, then decide the due ones."""
    queues = {q.name: escalation_settings_of(q) for q in await store.all_queue_settings(conn)}
    changed = 0
    for name, settings in queues.items():
        key = settings.key if settings else ""
        if tickets.escalation_keys_seen.get(name) == key:
            continue
        stale = await store.stale_escalation_settings(conn, name, key, limit)
        for ticket_id in stale:
            changed += await _decide(tickets, ticket_id, _escalate(now, settings))
        if not stale:  # caught up (a ticket skipped after a conflict is found again next round)
            tickets.escalation_keys_seen[name] = key
    for ticket_id in await store.due_escalations(conn, now, limit):
        queue = await store.ticket_queue(conn, ticket_id)
        changed += await _decide(tickets, ticket_id, _escalate(now, queues.get(queue or "")))
    return changed


def _escalate(now: datetime, settings: EscalationSettings | None) -> Decide:
    return lambda ticket, _: decide_escalations(ticket, settings, now)


def _pending_due(now: datetime) -> Decide:
    return lambda ticket, _: decide_pending_due(ticket, now)


def _unlock_timeout(now: datetime, timeout: timedelta) -> Decide:
    return lambda ticket, _: decide_unlock_timeout(ticket, now, timeout)


async def _decide(tickets: Tickets, ticket_id: str, decide: Decide) -> int:
    try:
        outcome = await tickets.run(ticket_id, decide, Context.of(TIMER_ACTOR))
    except (TicketError, ConcurrencyError) as exc:  # changed meanwhile: the next round looks again
        logger.info("timers: ticket %s skipped: %s", ticket_id, exc)
        return 0
    return 1 if outcome.events else 0
