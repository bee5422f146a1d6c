"""The PostgreSQL event store: append with an expected version, read, snapshot, verify.

Narrow on purpose (after pyeventsourcing's ``persistence.py``): a command handler reads a
stream, decides, and appends with the version it read. Appending to a stream that moved on
raises :class:`ConcurrencyError`; nothing is ever overwritten. When ``publish_to`` is given the
same transaction writes the events to the outbox, so they reach Kafka exactly when committed.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.envelope import GENESIS_HASH, Envelope, canonical_json, chain_hash, seal
from shared.metrics import EVENTS_APPENDED
from shared.outbox import enqueue


class ConcurrencyError(Exception):
    """The stream's version is not the one the caller decided on."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream_id} is at version {actual}, expected {expected}")
        self.stream_id, self.expected, self.actual = stream_id, expected, actual


class StreamNotFound(Exception):
    def __init__(self, stream_id: str) -> None:
        super().__init__(f"no stream {stream_id}")
        self.stream_id = stream_id


@dataclass(frozen=True, order=True)
class Position:
    """A place in the whole log, in commit order: (writing transaction id, global position)."""

    txid: int = 0
    global_position: int = 0


@dataclass(frozen=True)
class BrokenLink:
    stream_id: str
    stream_version: int
    event_id: str
    reason: str


_COLUMNS = (
    "event_id, type, schema_version, stream_id, stream_version, occurred_at, recorded_at,"
    " correlation_id, causation_id, actor, data, prev_hash, hash"
)


def _row_to_envelope(row: asyncpg.Record) -> Envelope:
    values: dict[str, Any] = dict(row)
    values["event_id"] = str(values["event_id"])
    for extra in ("txid", "global_position"):
        values.pop(extra, None)
    return Envelope.model_validate(values)


class EventStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(
        self,
        stream_id: str,
        expected_version: int,
        events: Sequence[Envelope],
        *,
        publish_to: str | None = None,
        conn: asyncpg.Connection | None = None,
    ) -> list[Envelope]:
        """Append ``events`` after ``expected_version`` (0 for a new stream); returns them sealed."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self._append(own, stream_id, expected_version, events, publish_to)
        async with conn.transaction():
            return await self._append(conn, stream_id, expected_version, events, publish_to)

    async def _append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected: int,
        events: Sequence[Envelope],
        publish_to: str | None,
    ) -> list[Envelope]:
        head = await conn.fetchrow(
            "select stream_version, hash from events where stream_id = $1 order by stream_version desc limit 1",
            stream_id,
        )
        actual, prev_hash = (head["stream_version"], head["hash"]) if head else (0, GENESIS_HASH)
        if actual != expected:
            raise ConcurrencyError(stream_id, expected, actual)
        sealed: list[Envelope] = []
        for offset, envelope in enumerate(events, start=1):
            placed = envelope.model_copy(update={"stream_id": stream_id})
            sealed.append(seal(placed, stream_version=expected + offset, prev_hash=prev_hash))
            prev_hash = sealed[-1].hash or ""
        try:
            await conn.executemany(
                f"insert into events ({_COLUMNS}) values ($1,$2,$3,$4,$5,$6,now(),$7,$8,$9,$10,$11,$12)",
                [_insert_args(e) for e in sealed],
            )
        except asyncpg.UniqueViolationError as exc:
            if "event_id" in str(exc.constraint_name or ""):
                raise
            raise ConcurrencyError(stream_id, expected, expected + 1) from exc
        if publish_to:
            await enqueue(conn, publish_to, sealed)
        for e in sealed:
            EVENTS_APPENDED.labels(e.type).inc()
        return sealed

    async def read_stream(
        self, stream_id: str, *, after_version: int = 0, conn: asyncpg.Connection | None = None
    ) -> list[Envelope]:
        query = f"select {_COLUMNS} from events where stream_id = $1 and stream_version > $2 order by stream_version"
        if conn is not None:
            rows = await conn.fetch(query, stream_id, after_version)
        else:
            rows = await self.pool.fetch(query, stream_id, after_version)
        return [_row_to_envelope(r) for r in rows]

    async def stream_version(self, stream_id: str) -> int:
        version = await self.pool.fetchval("select max(stream_version) from events where stream_id = $1", stream_id)
        return int(version or 0)

    async def read_all(self, after: Position = Position(), limit: int = 1000) -> list[tuple[Position, Envelope]]:
        """Events in commit order after ``after``, never past a transaction that may still commit.

        Only events written by transactions older than the oldest running one are returned:
        those have all committed or aborted, so nothing can later appear behind the cursor.
        """
        rows = await self.pool.fetch(
            f"select txid, global_position, {_COLUMNS} from events"
            " where (txid, global_position) > ($1, $2)"
            " and txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
            " order by txid, global_position limit $3",
            after.txid,
            after.global_position,
            limit,
        )
        return [(Position(r["txid"], r["global_position"]), _row_to_envelope(r)) for r in rows]

    async def iterate_all(self, after: Position = Position(), batch: int = 1000) -> AsyncIterator[Envelope]:
        while True:
            page = await self.read_all(after, batch)
            if not page:
                return
            for position, envelope in page:
                after = position
                yield envelope

    # ------------------------------------------------------------------ snapshots

    async def save_snapshot(self, stream_id: str, version: int, state: dict[str, Any]) -> None:
        await self.pool.execute(
            "insert into snapshots (stream_id, stream_version, state) values ($1, $2, $3)"
            " on conflict (stream_id) do update set stream_version = excluded.stream_version,"
            " state = excluded.state, taken_at = now() where snapshots.stream_version < excluded.stream_version",
            stream_id,
            version,
            state,
        )

    async def load_snapshot(self, stream_id: str) -> tuple[int, dict[str, Any]] | None:
        row = await self.pool.fetchrow("select stream_version, state from snapshots where stream_id = $1", stream_id)
        return (row["stream_version"], row["state"]) if row else None

    # ------------------------------------------------------------------ integrity

    async def verify_stream(self, stream_id: str) -> BrokenLink | None:
        return first_broken_link(await self.read_stream(stream_id))

    async def verify_all(self, batch: int = 5000) -> tuple[int, BrokenLink | None]:
        """Check every stream's chain; returns (streams checked, first broken link or None).

        One ordered cursor over the whole log (stream by stream, version by version) instead
        of a query per stream; streams are checked in ``stream_id`` order.
        """
        checker = _ChainChecker()
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            query = f"select {_COLUMNS} from events order by stream_id, stream_version"
            async for row in conn.cursor(query, prefetch=batch):
                if checker.feed_row(row):
                    streams = await conn.fetchval("select count(distinct stream_id) from events")
                    return int(streams), checker.broken
        return checker.streams, None

    async def head_hashes(self) -> dict[str, tuple[int, str]]:
        rows = await self.pool.fetch(
            "select distinct on (stream_id) stream_id, stream_version, hash from events"
            " order by stream_id, stream_version desc"
        )
        return {r["stream_id"]: (r["stream_version"], r["hash"]) for r in rows}


def first_broken_link(envelopes: Sequence[Envelope]) -> BrokenLink | None:
    """Recompute a stream's chain; name the first event whose link does not hold."""
    checker = _ChainChecker()
    for envelope in envelopes:
        if checker.feed(envelope):
            return checker.broken
    return None


class _ChainChecker:
    """Checks events fed in (stream, version) order, one stream after another."""

    def __init__(self) -> None:
        self.streams = 0
        self.broken: BrokenLink | None = None
        self._stream: str | None = None
        self._prev_hash = GENESIS_HASH
        self._expected = 1

    def feed_row(self, row: asyncpg.Record) -> bool:
        """:meth:`feed` for a stored row. The common case, an intact link, is proved by hashing
        the row's values directly (the same canonical JSON as ``Envelope.hashable``, without
        building a model); anything else is decided by the envelope path."""
        self._enter(row["stream_id"])
        if row["stream_version"] == self._expected and row["prev_hash"] == self._prev_hash:
            if _row_hash(self._prev_hash, row) == row["hash"]:
                self._prev_hash, self._expected = row["hash"], self._expected + 1
                return False
        return self._check(_row_to_envelope(row))

    def feed(self, envelope: Envelope) -> bool:
        """True when ``envelope`` breaks its stream's chain (then ``broken`` names it)."""
        self._enter(envelope.stream_id)
        return self._check(envelope)

    def _enter(self, stream_id: str) -> None:
        if stream_id != self._stream:
            self.streams += 1
            self._stream, self._prev_hash, self._expected = stream_id, GENESIS_HASH, 1

    def _check(self, envelope: Envelope) -> bool:
        reason = _link_problem(envelope, self._expected, self._prev_hash)
        if reason is not None:
            self.broken = BrokenLink(envelope.stream_id, envelope.stream_version, envelope.event_id, reason)
            return True
        self._prev_hash, self._expected = envelope.hash or "", self._expected + 1
        return False


_HASHED = (
    "type", "schema_version", "stream_id", "stream_version", "occurred_at", "correlation_id", "causation_id",
    "actor", "data", "prev_hash",
)  # fmt: skip


def _row_hash(prev_hash: str, row: asyncpg.Record) -> str:
    body = {name: row[name] for name in _HASHED}
    body["event_id"] = str(row["event_id"])
    return hashlib.sha256(prev_hash.encode() + canonical_json(body)).hexdigest()


def _link_problem(envelope: Envelope, expected_version: int, prev_hash: str) -> str | None:
    if envelope.stream_version != expected_version:
        return f"version {envelope.stream_version} where {expected_version} was expected"
    if envelope.prev_hash != prev_hash:
        return "prev_hash does not match the previous event's hash"
    if chain_hash(prev_hash, envelope) != envelope.hash:
        return "hash does not match the event's content"
    return None


def _insert_args(e: Envelope) -> tuple[Any, ...]:
    return (
        e.event_id,
        e.type,
        e.schema_version,
        e.stream_id,
        e.stream_version,
        e.occurred_at,
        e.correlation_id,
        e.causation_id,
        e.actor,
        e.data,
        e.prev_hash,
        e.hash,
    )
