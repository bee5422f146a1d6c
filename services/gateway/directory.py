"""What the permission checks need to know about queues and tickets, kept from ``ticket.events``.

``handle_ticket_event`` runs in the gateway's consumer (a consumer group, from offset 0, so a
fresh replica rebuilds both tables): ``QueueConfigured`` gives each queue its group,
``TicketCreated``/``TicketMoved`` say which queue each ticket is in (for live updates, whose
events mostly carry only a ticket id). Both handlers are upserts, so a redelivery changes
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from services.gateway import store
from services.gateway.accounts import Principal
from services.gateway.permissions import Permission, Queue, queues_with
from shared.envelope import Envelope

DIRECTORY_EVENTS = frozenset({"QueueConfigured", "TicketCreated", "TicketMoved"})
"""The events :func:`handle_ticket_event` acts on; the consumer passes over the rest."""


async def handle_ticket_event(conn: asyncpg.Connection, envelope: Envelope) -> None:
    data = envelope.data
    if envelope.type == "QueueConfigured":
        await store.configure_queue(conn, data["name"], data["group"], data.get("parent"), data.get("valid", True))
    elif envelope.type == "TicketCreated":
        await store.note_queue(conn, data["queue"])
        await store.put_ticket(conn, data["ticket_id"], data["ticket_number"], data["queue"])
    elif envelope.type == "TicketMoved":
        await store.note_queue(conn, data["to_queue"])
        await store.move_ticket(conn, data["ticket_id"], data["to_queue"])


class QueueDirectory:
    """Queue name → group, as last configured. Read per request: it is one small query."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.groups = groups

    @classmethod
    async def load(cls, conn: asyncpg.Pool | asyncpg.Connection) -> QueueDirectory:
        return cls(await store.queue_groups(conn))

    def queue(self, name: str, fallback_group: str = "") -> Queue:
        """The queue as the permission checks see it; an unknown queue has only its per-queue group."""
        return Queue(name, self.groups.get(name) or fallback_group)

    def all(self) -> list[Queue]:
        return [Queue(name, group) for name, group in sorted(self.groups.items())]

    def names_with(
        self, principal: Principal, permission: Permission = "ro", among: Iterable[str] | None = None
    ) -> list[str]:
        """The queue names (of ``among``, else every known queue) on which the agent holds ``permission``."""
        queues = [self.queue(n) for n in among] if among is not None else self.all()
        return [q.name for q in queues_with(principal.access, permission, queues)]

    def may_see(self, principal: Principal, name: str, fallback_group: str = "") -> bool:
        return bool(queues_with(principal.access, "ro", [self.queue(name, fallback_group)]))
