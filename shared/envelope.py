"""The event envelope: metadata around every event, canonical JSON, hash chain, upcasting.

The envelope is the unit stored in an event store, written to the outbox and published on
Kafka. ``hash`` chains an event to the previous event of its stream:
``sha256(prev_hash + canonical_json(envelope without hash))``, so editing any stored event
breaks every later link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from uuid6 import uuid7

from shared.events import EventData, event_class

GENESIS_HASH = "0" * 64


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON: sorted keys, UTC datetimes, no whitespace. Used for hashing and wire."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS | orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def new_id() -> str:
    """A UUIDv7: time-ordered, so ids sort by creation."""
    return str(uuid7())


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: str
    type: str
    schema_version: int
    stream_id: str
    stream_version: int
    occurred_at: datetime
    recorded_at: datetime | None = None
    correlation_id: str
    causation_id: str | None = None
    actor: str
    data: dict[str, Any]
    prev_hash: str | None = None
    hash: str | None = None

    def payload(self) -> EventData:
        """The typed event, upcast to the current schema version."""
        current = upcast(self)
        return event_class(current.type).model_validate(current.data)

    def hashable(self) -> dict[str, Any]:
        """The fields the chain hash covers (everything the writer decided, not the store)."""
        return self.model_dump(mode="json", exclude={"hash", "recorded_at"})

    def to_json(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))

    @classmethod
    def from_json(cls, raw: bytes | str) -> Envelope:
        return cls.model_validate(orjson.loads(raw))


def make_envelope(
    data: EventData,
    *,
    stream_id: str,
    actor: str,
    correlation_id: str | None = None,
    causation_id: str | None = None,
    stream_version: int = 0,
    occurred_at: datetime | None = None,
    event_id: str | None = None,
) -> Envelope:
    """Wrap an event payload. ``stream_version`` and hashes are set by the event store on append."""
    eid = event_id or new_id()
    return Envelope(
        event_id=eid,
        type=data.TYPE,
        schema_version=data.SCHEMA_VERSION,
        stream_id=stream_id,
        stream_version=stream_version,
        occurred_at=occurred_at or utcnow(),
        correlation_id=correlation_id or eid,
        causation_id=causation_id,
        actor=actor,
        data=data.model_dump(mode="json", by_alias=True),
    )


def chain_hash(prev_hash: str, envelope: Envelope) -> str:
    body = canonical_json(envelope.hashable())
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


def seal(envelope: Envelope, *, stream_version: int, prev_hash: str) -> Envelope:
    """Give an envelope its place in its stream and its link in the hash chain."""
    placed = envelope.model_copy(
        update={
            "stream_version": stream_version,
            "prev_hash": prev_hash,
            "occurred_at": envelope.occurred_at.astimezone(UTC),
        }
    )
    return placed.model_copy(update={"hash": chain_hash(prev_hash, placed)})


# --------------------------------------------------------------------------- upcasting

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register_upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register a function turning ``data`` of ``type_name`` v``from_version`` into v+1."""

    def decorator(fn: Upcaster) -> Upcaster:
        _UPCASTERS[(type_name, from_version)] = fn
        return fn

    return decorator


def upcast(envelope: Envelope) -> Envelope:
    """Apply registered upcasters until the event reaches its current schema version."""
    target = event_class(envelope.type).SCHEMA_VERSION
    data, version = envelope.data, envelope.schema_version
    while version < target:
        step = _UPCASTERS.get((envelope.type, version))
        if step is None:
            raise ValueError(f"no upcaster for {envelope.type} v{version} -> v{version + 1}")
        data, version = step(data), version + 1
    if version == envelope.schema_version:
        return envelope
    return envelope.model_copy(update={"data": data, "schema_version": version})
