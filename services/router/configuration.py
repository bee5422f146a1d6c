"""Changing the routing configuration: filters and system addresses.

A change is validated, appended as an event to its own stream (``filter-<id>``,
``address-<email>``) in the router's event store and published on ``router.config``; in the same
transaction the current-state table is updated and the ``config`` version bumped, so every
replica reloads it (:mod:`services.router.state`). The event records who made the change.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
import httpx

from services.router import store
from services.router.domain import normalize_address
from services.router.errors import RouterError
from services.router.filters import filter_problems
from services.router.settings import RouterSettings
from services.router.state import RouterState
from shared.envelope import make_envelope, new_id
from shared.events import TOPIC_ROUTER_CONFIG, EventData, FilterChanged, SystemAddressChanged
from shared.logs import correlation_id
from shared.service import Service

logger = logging.getLogger(__name__)

Save = Callable[[asyncpg.Connection, int], Awaitable[None]]


class Configurator:
    def __init__(self, service: Service, state: RouterState, settings: RouterSettings) -> None:
        self.service = service
        self.state = state
        self.settings = settings

    # ------------------------------------------------------------------ system addresses

    async def put_address(
        self, email: str, queue: str, display_name: str, language_queues: Mapping[str, str], actor: str
    ) -> dict[str, Any]:
        address = _address_or_422(email)
        await self._check_queue(queue, "queue")
        for language, language_queue in language_queues.items():
            await self._check_queue(language_queue, f"language_queues.{language}")
        event = SystemAddressChanged(
            email=address, queue=queue, display_name=display_name, language_queues=dict(language_queues)
        )
        current = await store.get_address(self.service.db, address)
        if current is not None and _same(current, event, ("queue", "display_name", "language_queues")):
            return current  # nothing changes, so nothing is recorded
        await self._record(f"address-{address}", event, actor, lambda c, v: store.save_address(c, event, v, actor))
        return await self._found(store.get_address(self.service.db, address), "address")

    async def delete_address(self, email: str, actor: str) -> dict[str, Any]:
        address = _address_or_422(email)
        current = await self._found(store.get_address(self.service.db, address), "address")
        event = SystemAddressChanged(email=address, queue=current["queue"], deleted=True)
        await self._record(f"address-{address}", event, actor, lambda c, v: store.save_address(c, event, v, actor))
        return {**current, "deleted": True}

    # ------------------------------------------------------------------ filters

    async def save_filter(self, filter_id: str | None, spec: Mapping[str, Any], actor: str) -> dict[str, Any]:
        """Create (``filter_id`` None) or replace a filter."""
        current = None
        if filter_id is not None:
            current = await self._found(store.get_filter(self.service.db, filter_id), "filter")
        await self._check_filter(spec["match"], spec["actions"])
        event = FilterChanged(filter_id=filter_id or new_id(), **spec)
        if current is not None and _same(current, event, ("name", "position", "match", "actions", "enabled")):
            return current
        stream = f"filter-{event.filter_id}"
        await self._record(stream, event, actor, lambda c, v: store.save_filter(c, event, v, actor))
        return await self._found(store.get_filter(self.service.db, event.filter_id), "filter")

    async def delete_filter(self, filter_id: str, actor: str) -> dict[str, Any]:
        current = await self._found(store.get_filter(self.service.db, filter_id), "filter")
        fields = {k: current[k] for k in ("name", "position", "match", "actions", "enabled")}
        event = FilterChanged(filter_id=filter_id, deleted=True, **fields)
        await self._record(f"filter-{filter_id}", event, actor, lambda c, v: store.save_filter(c, event, v, actor))
        return {**current, "deleted": True}

    # ------------------------------------------------------------------ internals

    async def _record(self, stream_id: str, event: EventData, actor: str, save: Save) -> None:
        db, event_store = self.service.db, self.service.store
        assert event_store is not None
        async with db.acquire() as conn, conn.transaction():
            version = await store.stream_version(conn, stream_id)
            envelope = make_envelope(event, stream_id=stream_id, actor=actor, correlation_id=correlation_id.get())
            topic = self.settings.topic(TOPIC_ROUTER_CONFIG)
            sealed = await event_store.append(stream_id, version, [envelope], publish_to=topic, conn=conn)
            await save(conn, sealed[-1].stream_version)
            await store.bump_version(conn, "config")
        await self.state.refresh(db, force=True)

    async def _check_filter(self, match: Mapping[str, str], actions: Mapping[str, Any]) -> None:
        problems = filter_problems(match, actions)
        if problems:
            first = problems[0]
            raise RouterError(422, first.code, first.detail, first.field)
        if isinstance(actions.get("set_queue"), str):
            await self._check_queue(actions["set_queue"], "actions.set_queue")

    async def _check_queue(self, queue: str, field: str) -> None:
        """A queue is known if tickets announced it, or (not seen yet) if tickets confirms it."""
        if queue in (self.settings.default_queue, self.settings.junk_queue):
            return
        if await store.queue_known(self.service.db, queue) or queue in await self._tickets_queues():
            return
        raise RouterError(422, "unknown_queue", f"there is no queue {queue!r}", field)

    async def _tickets_queues(self) -> set[str]:
        if not self.settings.tickets_url:
            return set()
        try:
            async with httpx.AsyncClient(base_url=self.settings.tickets_url, timeout=3.0) as client:
                response = await client.get("/queues", headers={"X-Actor": "system:router"})
                response.raise_for_status()
                return {item["name"] for item in response.json()["items"] if item.get("valid", True)}
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            logger.warning("could not ask tickets for its queues: %r", exc)
            return set()

    @staticmethod
    async def _found(lookup: Awaitable[dict[str, Any] | None], what: str) -> dict[str, Any]:
        found = await lookup
        if found is None:
            raise RouterError(404, f"{what}_not_found", f"no such {what}")
        return found


def _same(current: Mapping[str, Any], event: EventData, fields: tuple[str, ...]) -> bool:
    return all(current[f] == getattr(event, f) for f in fields)


def _address_or_422(email: str) -> str:
    address = normalize_address(email)
    if address is None:
        raise RouterError(422, "invalid_email", f"{email!r} is not an e-mail address", "email")
    return address
