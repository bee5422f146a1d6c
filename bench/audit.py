"""Audit figures (issue 8): verify, rebuild (replay of the log), time travel, export, erasure.

The log is made the way the service makes it, only faster: each ticket's events are decided by
the domain (created from a mail, locked, noted, answered, closed), personal values encrypted
under their customer's key (``privacy``), chained by ``seal`` and inserted in large batches.
Then the whole log is rebuilt into fresh tables (and swapped in), every chain verified, a
ticket with 1,000 events travelled in time, a queue looked at in the past, the log exported
and a customer erased.

Runs against DATABASE_URL when set, else a throwaway PostgreSQL cluster. Prints figures.

    python -m bench.audit [--events 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from bench.infra import local_infra
from bench.tickets import routed
from services.tickets import queries
from services.tickets.domain import (
    AddNote,
    Answer,
    CreateFromMail,
    Lock,
    SetState,
    Ticket,
    Unlock,
    apply,
    decide_add_note,
    decide_answer,
    decide_create,
    decide_lock,
    decide_set_state,
    decide_unlock,
)
from services.tickets.numbers import format_ticket_number
from services.tickets.privacy import email_digest, encrypt, new_key, new_kid
from services.tickets.rebuild import MIGRATIONS, rebuild
from shared.db import create_pool, ensure_database, migrate
from shared.envelope import GENESIS_HASH, Envelope, make_envelope, seal
from shared.events import Address, EventData, TicketRouted
from shared.eventstore import EventStore

DAY = date(2026, 11, 25)
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
TICKETS_PER_CUSTOMER = 3
BATCH = 5000
_INSERT = (
    "insert into events (event_id, type, schema_version, stream_id, stream_version, occurred_at, correlation_id,"
    " causation_id, actor, data, prev_hash, hash) values ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
)


def report(label: str, figure: str) -> None:
    print(f"{label:<52}: {figure}", flush=True)


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p99 = ordered[max(int(len(ordered) * 0.99) - 1, 0)]
    return f"p50 {statistics.median(ordered):7.2f} ms   p99 {p99:7.2f} ms  (n={len(ordered)})"


# --------------------------------------------------------------------------- the log


class Stream:
    """One ticket's events as the service would decide and store them."""

    def __init__(self, ticket_id: str) -> None:
        self.ticket_id = ticket_id
        self.ticket: Ticket | None = None
        self.envelopes: list[Envelope] = []

    def add(self, events: list[EventData], actor: str, at: datetime) -> None:
        for data in events:
            envelope = make_envelope(data, stream_id=self.ticket_id, actor=actor, occurred_at=at)
            envelope = envelope.model_copy(update={"stream_version": len(self.envelopes) + 1})
            self.envelopes.append(envelope)
            self.ticket = apply(self.ticket, envelope)

    @property
    def current(self) -> Ticket:
        assert self.ticket is not None
        return self.ticket


def ticket_life(i: int, queue: str | None = None) -> Stream:
    """Created from a mail, locked, noted, answered and closed: about ten events."""
    decision = routed(i).payload()
    assert isinstance(decision, TicketRouted)
    customer = Address(
        name=f"Customer {i // TICKETS_PER_CUSTOMER}", email=f"customer{i // TICKETS_PER_CUSTOMER}@example.org"
    )
    mail = decision.mail.model_copy(update={"from_": customer})
    decision = decision.model_copy(update={"mail": mail, "queue": queue or decision.queue})
    stream = Stream(str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-ticket-{i}")))
    at = T0 + timedelta(milliseconds=i)
    number = format_ticket_number(DAY, 10, i + 1)
    create = CreateFromMail(routed=decision, ticket_id=stream.ticket_id, ticket_number=number)
    stream.add(decide_create(None, create, at), "system:router", at)
    agent = f"agent{i % 50}"
    steps: list[tuple[Callable[[Ticket, datetime], list[EventData]], int]] = [  # (decision, minutes later)
        (lambda t, now: decide_lock(t, Lock(agent=agent), now), 1),
        (lambda t, now: decide_add_note(t, AddNote(agent=agent, body=f"Checked account {i}."), now), 2),
        (lambda t, now: decide_answer(t, Answer(agent=agent, body=f"Dear customer, fixed ({i})."), now), 3),
        (lambda t, now: decide_set_state(t, SetState(agent=agent, state="closed successful"), now), 4),
    ]
    for decide, minutes in steps:
        when = at + timedelta(minutes=minutes)
        stream.add(decide(stream.current, when), agent, when)
    return stream


def long_life(i: int, events: int) -> Stream:
    """A ticket locked and unlocked over and over until it has ``events`` events."""
    stream = ticket_life(i)
    at = T0 + timedelta(hours=1)
    reopen = SetState(agent="historian", state="open")
    stream.add(decide_set_state(stream.current, reopen, at), "historian", at)
    n = 0
    while len(stream.envelopes) < events:
        n += 1
        when = at + timedelta(seconds=n)
        decide = decide_unlock if stream.current.lock else decide_lock
        command = Unlock(agent="historian") if stream.current.lock else Lock(agent="historian")
        stream.add(decide(stream.current, command, when), "historian", when)  # type: ignore[arg-type]
    return stream


class Subjects:
    """Customer keys, one customer per few tickets, as ``privacy.Vault`` would make them."""

    def __init__(self) -> None:
        self.by_email: dict[str, tuple[str, bytes]] = {}
        self.links: list[tuple[str, str]] = []

    def seal(self, stream: Stream) -> list[Envelope]:
        email = stream.current.customer_email or ""
        if email not in self.by_email:
            self.by_email[email] = (new_kid(), new_key())
        kid, key = self.by_email[email]
        self.links.append((stream.ticket_id, kid))
        prev, sealed = GENESIS_HASH, []
        for envelope in stream.envelopes:
            stored = seal(encrypt(envelope, kid, key), stream_version=envelope.stream_version, prev_hash=prev)
            sealed.append(stored)
            prev = stored.hash or ""
        return sealed


def _row(e: Envelope) -> tuple[Any, ...]:
    return (
        e.event_id, e.type, e.schema_version, e.stream_id, e.stream_version, e.occurred_at, e.correlation_id,
        e.causation_id, e.actor, e.data, e.prev_hash, e.hash,
    )  # fmt: skip


async def write_log(pool: asyncpg.Pool, streams: list[Stream], subjects: Subjects) -> int:
    rows: list[tuple[Any, ...]] = []
    written = 0
    for stream in streams:
        rows += [_row(e) for e in subjects.seal(stream)]
        if len(rows) >= BATCH:
            await pool.executemany(_INSERT, rows)
            written, rows = written + len(rows), []
    if rows:
        await pool.executemany(_INSERT, rows)
        written += len(rows)
    return written


async def write_subjects(pool: asyncpg.Pool, subjects: Subjects) -> None:
    await pool.executemany(
        "insert into customer_keys (kid, email_digest, key) values ($1, $2, $3)",
        [(kid, email_digest(email) if email else None, key) for email, (kid, key) in subjects.by_email.items()],
    )
    await pool.executemany("insert into ticket_keys (ticket_id, kid) values ($1, $2)", subjects.links)


async def make_log(pool: asyncpg.Pool, events: int) -> tuple[Subjects, str]:
    """About ``events`` events in tickets of ten, 200 of them in queue Audit, plus one ticket of
    1,000 events; returns the subjects and that ticket's number."""
    subjects, written, started, i = Subjects(), 0, time.perf_counter(), 0
    while written < events - 1000:
        chunk = [ticket_life(n, "Audit" if n < 200 else None) for n in range(i, i + 1000)]
        i += len(chunk)
        written += await write_log(pool, chunk, subjects)
    long = long_life(i, 1000)
    written += await write_log(pool, [long], subjects)
    await write_subjects(pool, subjects)
    elapsed = time.perf_counter() - started
    report("log written (decide, encrypt, seal, insert)", f"{written} events, {i + 1} tickets in {elapsed:.0f} s")
    return subjects, long.current.number


# --------------------------------------------------------------------------- figures


async def timed(call: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


async def bench_rebuild(pool: asyncpg.Pool) -> None:
    result = await rebuild(pool, swap=True, force=True)
    report(
        "rebuild: replaying the log into fresh tables",
        f"{result.events / result.bulk_seconds:8.0f} events/s  ({result.events} events in {result.bulk_seconds:.1f} s)",
    )
    report("rebuild: all (+ indexes, catch-up, digests, swap)", f"{result.events_per_second:8.0f} events/s")


async def bench_verify(pool: asyncpg.Pool, events: int) -> None:
    started = time.perf_counter()
    checked, broken = await EventStore(pool).verify_all()
    elapsed = time.perf_counter() - started
    report("verify every hash chain", f"{events / elapsed:8.0f} events/s  ({checked} streams, ok: {broken is None})")


async def bench_time_travel(pool: asyncpg.Pool, number: str) -> None:
    store_ = EventStore(pool)
    at = T0 + timedelta(hours=1, seconds=500)
    samples = await timed(lambda: queries.history(pool, store_, number, at), 20)
    report("time travel, ticket with 1,000 events", percentiles(samples))
    samples = await timed(lambda: queries.queue_at(pool, "Audit", T0 + timedelta(hours=2)), 10)
    report("queue at an instant (200 tickets ever in it)", percentiles(samples))


async def bench_export(pool: asyncpg.Pool) -> None:
    started, lines, size = time.perf_counter(), 0, 0
    async for chunk in queries.export_range(pool, T0 - timedelta(days=1), T0 + timedelta(days=30)):
        lines, size = lines + chunk.count(b"\n"), size + len(chunk)
    elapsed = time.perf_counter() - started
    report(
        "export of the whole log (JSON Lines)", f"{lines / elapsed:8.0f} events/s  ({size / elapsed / 1e6:.1f} MB/s)"
    )


async def bench_erasure(pool: asyncpg.Pool) -> None:
    from services.tickets.commands import Tickets
    from services.tickets.erasure import erase
    from services.tickets.settings import TicketsSettings

    tickets = Tickets(TicketsSettings(), lambda: pool, lambda: EventStore(pool))
    started = time.perf_counter()
    result = await erase(tickets, "customer1@example.org")
    elapsed = (time.perf_counter() - started) * 1000
    report("erase a customer", f"{elapsed:7.1f} ms  ({len(result['tickets'])} tickets, {result['events']} events)")


async def main(events: int) -> None:
    with local_infra() as infra:
        dsn = infra.database("audit")
        await ensure_database(dsn)
        pool = await create_pool(dsn, max_size=8)
        try:
            await migrate(pool, [MIGRATIONS])
            _, long_number = await make_log(pool, events)
            total = int(await pool.fetchval("select count(*) from events"))
            await pool.execute("vacuum analyze events")
            await bench_rebuild(pool)
            await bench_verify(pool, total)
            await bench_time_travel(pool, long_number)
            await bench_export(pool)
            await bench_erasure(pool)
        finally:
            await pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args().events))
