"""The sender loop: workers claim due outbound rows, send them through the relay, and record
the outcome together with the event that reports it.

Each worker holds one relay connection and, per round:

1. claims up to ``sender_batch_size`` due rows in one transaction (``for update skip locked``,
   so replicas and workers never take the same row): the rows become ``sending`` with a lease
   (``due_at = now() + sending_lease_seconds``) and their attempt is counted, *before* any SMTP;
2. sends them one after another, each only if the lease still covers a worst-case attempt
   (:func:`~services.notify.delivery.attempt_budget`); rows it cannot start in time, or at
   shutdown, are released;
3. in one transaction marks each row ``sent`` / ``pending`` (with backoff) / ``failed`` and
   enqueues ``AnswerDelivered`` / ``AutoReplySent`` / ``AgentNotified`` or ``DeliveryFailed`` to
   ``delivery.events`` (keyed by ticket, caused by the event that asked for the mail).

A worker that dies between the relay's 250 and step 3 leaves rows in ``sending``: when the lease
ends they are due again and resent with the same bytes and Message-ID (at least once; see
``services.notify.delivery``). A worker whose lease ran out while it was still busy finds its
claim token gone in step 3 and reports nothing: the worker that took the row over reports.

Workers wake on ``LISTEN notify_outbound`` (a trigger fires on insert), on the next row's due
time, or every ``sender_poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from services.notify import store
from services.notify.delivery import after_attempt, attempt_budget, next_action, retry_delay
from services.notify.metrics import MAILS_FAILED, MAILS_SENT, RESENDS, SEND_ATTEMPTS
from services.notify.outbound import (
    ClaimedRow,
    SendResult,
    failure_event,
    failure_reason,
    purpose_kind,
    success_event,
)
from services.notify.relay import RelayConnection
from services.notify.settings import NotifySettings
from shared.envelope import new_id
from shared.events import TOPIC_DELIVERY_EVENTS, EventData

logger = logging.getLogger(__name__)

_DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
_MIN_WAIT = 0.01
_RECORD_TRIES = 5

Outcome = tuple[ClaimedRow, SendResult]
Finished = tuple[str, str, bool]  # (purpose kind, state, permanent) for the metrics, counted after commit


class Sender:
    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: NotifySettings,
        connection_factory: Callable[[NotifySettings], RelayConnection] = RelayConnection,
    ) -> None:
        self.pool = pool
        self.settings = settings
        self.topic = settings.topic(TOPIC_DELIVERY_EVENTS)
        self._connection_factory = connection_factory
        self._wakes: list[asyncio.Event] = []

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set; each worker finishes the mail in hand and records it."""
        self._wakes = [asyncio.Event() for _ in range(self.settings.smtp_connections)]
        helpers = [asyncio.create_task(self._listen(stop)), asyncio.create_task(self._wake_on(stop))]
        try:
            await asyncio.gather(*(self._worker(wake, stop) for wake in self._wakes))
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)

    def wake(self) -> None:
        for event in self._wakes:
            event.set()

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake()

    # ----------------------------------------------------------------------- one worker

    async def _worker(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        relay = self._connection_factory(self.settings)
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    busy = await self.run_once(relay, stop)
                except _DB_ERRORS as exc:
                    logger.warning("sender: database unavailable, retrying: %r", exc)
                    await _wait(wake, 1.0)
                    continue
                except Exception:  # a bug must not stop delivery; the rows' leases bring them back
                    logger.exception("sender: round failed")
                    await _wait(wake, 1.0)
                    continue
                if not busy:
                    await _wait(wake, await self._idle_seconds())
        finally:
            await relay.close()

    async def _idle_seconds(self) -> float:
        next_due = await store.seconds_until_next_due(self.pool)
        if next_due is None:
            return self.settings.sender_poll_seconds
        return max(min(next_due, self.settings.sender_poll_seconds), _MIN_WAIT)

    async def run_once(self, relay: RelayConnection, stop: asyncio.Event) -> int:
        """One round: claim, send, record. Returns how many rows were claimed."""
        token = new_id()
        started = asyncio.get_running_loop().time()
        batch = await self._claim(token)
        if not batch:
            return 0
        outcomes, unsent = await self._send(relay, batch, stop, started)
        await self._record(outcomes, unsent, token)
        return len(batch)

    # ----------------------------------------------------------------------- claim

    async def _claim(self, token: str) -> list[ClaimedRow]:
        s = self.settings
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await store.lock_due(conn, s.sender_batch_size)
            batch: list[ClaimedRow] = []
            for row in rows:
                action = next_action(row["state"], row["attempts"], row["last_error_kind"], s.smtp_max_attempts)
                if action.kind in ("send", "resend"):
                    batch.append(store.as_claimed(row, attempts=row["attempts"] + 1))
                if action.kind == "resend":
                    RESENDS.inc()
                    logger.warning("sender: row %s: %s (%s)", row["id"], action.reason, row["message_id"])
                if action.kind == "fail":
                    await self._give_up(conn, row, action.reason)
            if batch:
                await store.claim(conn, [row.id for row in batch], token, s.sending_lease_seconds)
        return batch

    async def _give_up(self, conn: asyncpg.Connection, row: asyncpg.Record, reason: str) -> None:
        """A row found due that may not be tried again (its last attempt was interrupted)."""
        error = f"{reason}; last error: {row['last_error']}" if row["last_error"] else reason
        finished = await store.finish(
            conn,
            row["id"],
            row["claim_token"],
            state="failed",
            error=error,
            error_kind=row["last_error_kind"] or "retry",
            smtp_code=row["smtp_code"],
        )
        if finished:
            claimed = store.as_claimed(row, attempts=row["attempts"])
            permanent = row["last_error_kind"] == "permanent"
            event = failure_event(
                claimed, reason=error, permanent=permanent, smtp_code=row["smtp_code"], attempts=row["attempts"]
            )
            await self._publish(conn, claimed, event)
            MAILS_FAILED.labels(purpose_kind(claimed.purpose), str(permanent).lower()).inc()

    # ----------------------------------------------------------------------- send

    async def _send(
        self, relay: RelayConnection, batch: list[ClaimedRow], stop: asyncio.Event, started: float
    ) -> tuple[list[Outcome], list[ClaimedRow]]:
        """Send in order while the lease allows; returns the outcomes and the rows not tried.

        The first row is always tried (the settings guarantee a lease longer than an attempt to
        one recipient), so a row with very many recipients is slow to report, never stuck.
        """
        loop = asyncio.get_running_loop()
        outcomes: list[Outcome] = []
        for index, row in enumerate(batch):
            left = self.settings.sending_lease_seconds - (loop.time() - started)
            budget = attempt_budget(self.settings.smtp_timeout_seconds, len(row.recipients))
            if stop.is_set() or (index > 0 and left <= budget):
                return outcomes, batch[index:]
            result = await relay.send(row.envelope_from, row.recipients, row.message, smtputf8=row.smtputf8)
            SEND_ATTEMPTS.labels("sent" if result.accepted else result.error_kind or "retry").inc()
            outcomes.append((row, result))
        return outcomes, []

    # ----------------------------------------------------------------------- record

    async def _record(self, outcomes: list[Outcome], unsent: list[ClaimedRow], token: str) -> None:
        """Record outcomes (and release unsent rows) in one transaction, retried while the database
        is away: giving up leaves the rows 'sending', to be resent after the lease."""
        delay = 0.2
        for attempt in range(1, _RECORD_TRIES + 1):
            try:
                finished = await self._record_once(outcomes, unsent, token)
            except _DB_ERRORS as exc:
                if attempt == _RECORD_TRIES:
                    logger.error("sender: could not record %d outcomes; they will be resent: %r", len(outcomes), exc)
                    return
                await asyncio.sleep(delay)
                delay *= 2
                continue
            _count(finished)
            return

    async def _record_once(self, outcomes: list[Outcome], unsent: list[ClaimedRow], token: str) -> list[Finished]:
        finished: list[Finished] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for row, result in outcomes:
                outcome = await self._finish(conn, row, result, token)
                if outcome is not None:
                    finished.append(outcome)
            if unsent:
                await store.release(conn, [row.id for row in unsent], token)
        return finished

    async def _finish(
        self, conn: asyncpg.Connection, row: ClaimedRow, result: SendResult, token: str
    ) -> Finished | None:
        state = after_attempt(row.attempts, result.error_kind, self.settings.smtp_max_attempts)
        mine = await store.finish(
            conn,
            row.id,
            token,
            state=state,
            due_in_seconds=self._backoff(row) if state == "pending" else 0.0,
            error=result.error,
            error_kind=result.error_kind,
            smtp_code=result.smtp_code,
            relay_response=result.response,
            refused=result.refused,
        )
        if not mine:
            logger.warning("sender: row %s was taken over after its lease ran out; not reporting it", row.id)
            return None
        if state == "sent":
            await self._publish(conn, row, success_event(row, result))
        elif state == "failed":
            await self._publish(conn, row, _final_failure(row, result))
        return purpose_kind(row.purpose), state, result.error_kind == "permanent"

    def _backoff(self, row: ClaimedRow) -> float:
        s = self.settings
        return retry_delay(
            row.attempts,
            base=s.smtp_backoff_seconds,
            cap=s.smtp_backoff_max_seconds,
            jitter=s.smtp_backoff_jitter,
            seed=row.id,
        )

    async def _publish(self, conn: asyncpg.Connection, row: ClaimedRow, event: EventData) -> None:
        await store.publish(
            conn,
            self.topic,
            event,
            ticket_id=row.ticket_id,
            correlation_id=row.correlation_id,
            causation_id=row.cause_event_id,
        )

    # ----------------------------------------------------------------------- wake-ups

    async def _listen(self, stop: asyncio.Event) -> None:
        """Wake the workers when rows are inserted; reconnect if the connection drops."""
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(self.settings.database_url)
            except _DB_ERRORS as exc:
                logger.warning("sender: cannot listen for new rows (polling meanwhile): %r", exc)
                await _wait(stop, 1.0)
                continue
            try:
                await self._listen_on(conn, stop)
            finally:
                with contextlib.suppress(*_DB_ERRORS):
                    await conn.close(timeout=2)

    async def _listen_on(self, conn: asyncpg.Connection, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        await conn.add_listener(store.WAKE_CHANNEL, lambda *_args: self.wake())
        await _first(stop, lost)


def _final_failure(row: ClaimedRow, result: SendResult) -> EventData:
    return failure_event(
        row,
        reason=failure_reason(result, attempts=row.attempts),
        permanent=result.error_kind == "permanent",
        smtp_code=result.smtp_code,
        attempts=row.attempts,
    )


def _count(finished: list[Finished]) -> None:
    for purpose, state, permanent in finished:
        if state == "sent":
            MAILS_SENT.labels(purpose).inc()
        elif state == "failed":
            MAILS_FAILED.labels(purpose, str(permanent).lower()).inc()


async def _wait(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


async def _first(*events: asyncio.Event) -> None:
    tasks = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
