"""The PostgreSQL event store: append with an expected version, read, snapshot, verify.

Narrow on purpose (after pyeventsourcing's ``persistence.py``): a command handler reads a
stream, decides, and appends with the version it read. Appending to a stream that moved on
raises :class:`ConcurrencyError`; nothing is ever overwritten. When ``publish_to`` is given the
same transaction writes the events to the outbox, so they reach Kafka exactly when committed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from shared.envelope import GENESIS_HASH, Envelope, chain_hash, seal
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

    async def verify_all(self) -> tuple[int, BrokenLink | None]:
        """Check every stream's chain; returns (streams checked, first broken link or None)."""
        streams = [r["stream_id"] for r in await self.pool.fetch("select distinct stream_id from events order by 1")]
        for stream_id in streams:
            broken = await self.verify_stream(stream_id)
            if broken:
                return len(streams), broken
        return len(streams), None

    async def head_hashes(self) -> dict[str, tuple[int, str]]:
        rows = await self.pool.fetch(
            "select distinct on (stream_id) stream_id, stream_version, hash from events"
            " order by stream_id, stream_version desc"
        )
        return {r["stream_id"]: (r["stream_version"], r["hash"]) for r in rows}


def first_broken_link(envelopes: Sequence[Envelope]) -> BrokenLink | None:
    """Recompute a stream's chain; name the first event whose link does not hold."""
    prev_hash = GENESIS_HASH
    for expected_version, envelope in enumerate(envelopes, start=1):

        def broken(reason: str, e: Envelope = envelope) -> BrokenLink:
            return BrokenLink(e.stream_id, e.stream_version, e.event_id, reason)

        if envelope.stream_version != expected_version:
            return broken(f"version {envelope.stream_version} where {expected_version} was expected")
        if envelope.prev_hash != prev_hash:
            return broken("prev_hash does not match the previous event's hash")
        if chain_hash(prev_hash, envelope) != envelope.hash:
            return broken("hash does not match the event's content")
        prev_hash = envelope.hash
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
