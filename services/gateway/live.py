"""Live updates: ``ticket.events`` fanned out to the agents' browsers as server-sent events.

One tail per process (``shared.tail``: no consumer group, so every replica sees every event,
starting at the end) feeds every open ``/api/events`` stream of that process. Each event is
reduced to ``{type, ticket_id, ticket_number?, agent?}`` and sent only to agents who may see
the ticket's queue (for a move: the queue it left or the one it entered). Events carry a ticket
id; its queue comes from TicketCreated/TicketMoved seen by the tail, else from the
``ticket_directory`` table the gateway's consumer keeps. An event whose queue is unknown goes
to administrators only.

A slow client whose buffer fills is disconnected (its browser reconnects and reloads); a stream
re-checks its session every heartbeat, so logout and revocation end it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from services.gateway import store
from services.gateway.accounts import Accounts, Principal
from services.gateway.permissions import Queue, queue_permissions
from services.gateway.settings import GatewaySettings
from shared.envelope import Envelope
from shared.events import TOPIC_TICKET_EVENTS
from shared.tail import TopicTail

logger = logging.getLogger(__name__)

_TICKET_CACHE_SIZE = 100_000
_GROUP_RELOAD_SECONDS = 5.0


@dataclass(eq=False)
class Subscriber:
    principal: Principal
    messages: asyncio.Queue[dict[str, Any] | None]
    overflowed: bool = False
    created: float = field(default_factory=time.monotonic)

    def offer(self, message: dict[str, Any] | None) -> None:
        try:
            self.messages.put_nowait(message)
        except asyncio.QueueFull:
            self.overflowed = True
            self.messages.get_nowait()
            self.messages.put_nowait(None)


@dataclass(frozen=True)
class Described:
    message: dict[str, Any]
    queues: tuple[str, ...]


class LiveHub:
    def __init__(self, settings: GatewaySettings, pool: asyncpg.Pool) -> None:
        self.settings = settings
        self.pool = pool
        self.tail = TopicTail(
            settings, [settings.topic(TOPIC_TICKET_EVENTS)], client_id=f"{settings.service_name}.live"
        )
        self.subscribers: set[Subscriber] = set()
        self.tickets: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self.groups: dict[str, str] = {}
        self._groups_loaded = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        await self._reload_groups()
        await self.tail.run(stop, self.dispatch)

    def subscribe(self, principal: Principal) -> Subscriber:
        subscriber = Subscriber(principal, asyncio.Queue(maxsize=self.settings.sse_queue_size))
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def close(self) -> None:
        """End every open stream (at shutdown)."""
        for subscriber in list(self.subscribers):
            subscriber.offer(None)

    # ------------------------------------------------------------------ fan-out

    async def dispatch(self, envelope: Envelope) -> None:
        described = await self.describe(envelope)
        if described is None or not self.subscribers:
            return
        for subscriber in list(self.subscribers):
            if self.may_see_any(subscriber.principal, described.queues):
                subscriber.offer(described.message)

    def may_see_any(self, principal: Principal, queues: tuple[str, ...]) -> bool:
        if principal.is_admin:
            return True
        return any("ro" in queue_permissions(principal.access, Queue(q, self.groups.get(q, ""))) for q in queues)

    async def describe(self, envelope: Envelope) -> Described | None:
        """The message for the browser and the queues it concerns; updates the caches."""
        data = envelope.data
        if envelope.type == "QueueConfigured":
            self.groups[data["name"]] = data["group"]
            return Described({"type": envelope.type, "queue": data["name"]}, (data["name"],))
        ticket_id = data.get("ticket_id")
        if not isinstance(ticket_id, str):
            return None
        message: dict[str, Any] = {"type": envelope.type, "ticket_id": ticket_id}
        agent = data.get("agent") or envelope.actor
        if agent:
            message["agent"] = agent
        if envelope.type == "TicketCreated":
            self._remember(ticket_id, data["ticket_number"], data["queue"])
            message["ticket_number"] = data["ticket_number"]
            await self._know_queue(data["queue"])
            return Described(message, (data["queue"],))
        known = await self._locate(ticket_id)
        if known is not None:
            message["ticket_number"] = known[0]
        if envelope.type == "TicketMoved":
            if known is not None:
                self._remember(ticket_id, known[0], data["to_queue"])
            await self._know_queue(data["to_queue"])
            return Described(message, (data["from_queue"], data["to_queue"]))
        return Described(message, (known[1],) if known else ())

    def _remember(self, ticket_id: str, number: str, queue: str) -> None:
        self.tickets[ticket_id] = (number, queue)
        self.tickets.move_to_end(ticket_id)
        while len(self.tickets) > _TICKET_CACHE_SIZE:
            self.tickets.popitem(last=False)

    async def _locate(self, ticket_id: str) -> tuple[str, str] | None:
        if ticket_id in self.tickets:
            return self.tickets[ticket_id]
        if not self.subscribers:
            return None
        found = await store.ticket_location(self.pool, ticket_id)
        if found is not None:
            self._remember(ticket_id, *found)
        return found

    async def _know_queue(self, name: str) -> None:
        if name not in self.groups and time.monotonic() - self._groups_loaded > _GROUP_RELOAD_SECONDS:
            await self._reload_groups()

    async def _reload_groups(self) -> None:
        self.groups.update(await store.queue_groups(self.pool))
        self._groups_loaded = time.monotonic()


async def event_stream(
    hub: LiveHub, accounts: Accounts, principal: Principal, is_disconnected: Any
) -> AsyncIterator[bytes]:
    """The SSE body for one browser: events, heartbeats, and an end on logout or shutdown."""
    subscriber = hub.subscribe(principal)
    heartbeat = hub.settings.sse_heartbeat_seconds
    next_check = time.monotonic() + heartbeat
    try:
        yield b"retry: 5000\n: connected\n\n"
        while True:
            timeout = max(0.0, next_check - time.monotonic())
            try:
                message = await asyncio.wait_for(subscriber.messages.get(), timeout=timeout)
                if message is None:  # shutdown, or the client fell too far behind
                    return
                yield b"data: " + orjson.dumps(message) + b"\n\n"
            except TimeoutError:
                pass
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + heartbeat
                if await is_disconnected():
                    return
                fresh = await accounts.still_valid(subscriber.principal)
                if fresh is None:
                    yield b"event: logout\ndata: {}\n\n"
                    return
                subscriber.principal = fresh
                yield b": keep-alive\n\n"
    finally:
        hub.unsubscribe(subscriber)
