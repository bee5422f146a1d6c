"""Agent preferences and the agent directory (``AgentProfileChanged`` on ``agent.directory``).

Preferences: ``language``, which notices an agent wants (``notifications``) and the queues they
watch (``my_queues``, OTRS's "My Queues"); a missing value is the default.

The directory: every agent's profile (address, name, valid, preferences and ``readable_queues``,
the queues the agent holds at least ``ro`` on through direct grants, roles or admin rights).
Database triggers (migrations/002_preferences.sql) bump a generation counter whenever anything a
profile is computed from changes (agents, grants, roles, queues, preferences), whoever changed
it; :func:`publish_changed_profiles` then recomputes every profile and, in one transaction,
enqueues an ``AgentProfileChanged`` in the outbox for each profile that differs from the last
one published. The first run publishes them all (seeded and demo agents exist downstream), and
a crash between a change and its publication is caught up at the next start.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

import asyncpg

from services.gateway import store
from services.gateway.permissions import AgentAccess, Queue, Role, queue_of_group, queues_with
from services.gateway.settings import GatewaySettings
from shared.envelope import make_envelope
from shared.events import TOPIC_AGENT_DIRECTORY, AgentNotificationKind, AgentProfileChanged
from shared.outbox import enqueue

logger = logging.getLogger(__name__)

LANGUAGES: tuple[str, ...] = ("en", "de")
DEFAULT_LANGUAGE = "en"
NOTIFICATION_KINDS: tuple[str, ...] = get_args(AgentNotificationKind)
DEFAULT_NOTIFICATIONS: Mapping[str, bool] = dict.fromkeys(NOTIFICATION_KINDS, True)
ACTOR = "system:gateway"
PUBLISH_POLL_SECONDS = 1.0  # how often the publisher looks at the directory generation


@dataclass(frozen=True)
class Preferences:
    language: str
    notifications: dict[str, bool]
    my_queues: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"language": self.language, "notifications": dict(self.notifications), "my_queues": list(self.my_queues)}


def preferences_of(
    language: str | None, notifications: Mapping[str, Any] | None, my_queues: Sequence[str] | None
) -> Preferences:
    """Stored values (any of them missing) with the defaults filled in; unknown kinds are dropped."""
    stored = dict(notifications or {})
    return Preferences(
        language=language if language in LANGUAGES else DEFAULT_LANGUAGE,
        notifications={k: bool(stored.get(k, default)) for k, default in DEFAULT_NOTIFICATIONS.items()},
        my_queues=list(my_queues or []),
    )


class InvalidPreference(ValueError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


def merge_preferences(
    current: Preferences,
    *,
    language: str | None,
    notifications: Mapping[str, bool] | None,
    my_queues: Sequence[str] | None,
    readable: Sequence[str],
) -> Preferences:
    """``current`` with the given parts changed (None: unchanged); raises :class:`InvalidPreference`."""
    if language is not None and language not in LANGUAGES:
        raise InvalidPreference("language", f"unknown language {language!r}; expected one of {', '.join(LANGUAGES)}")
    merged = dict(current.notifications)
    for kind, on in (notifications or {}).items():
        if kind not in DEFAULT_NOTIFICATIONS:
            raise InvalidPreference(
                f"notifications.{kind}", f"unknown notice {kind!r}; expected one of {', '.join(NOTIFICATION_KINDS)}"
            )
        merged[kind] = on
    queues = current.my_queues
    if my_queues is not None:
        allowed = set(readable)
        for index, queue in enumerate(my_queues):
            if queue not in allowed:
                raise InvalidPreference(f"my_queues[{index}]", f"no queue {queue!r} that you may read")
        queues = sorted(set(my_queues))
    return Preferences(language if language is not None else current.language, merged, queues)


# --------------------------------------------------------------------------- profiles (pure)


def readable_queues(access: AgentAccess, known: Mapping[str, str], named: set[str]) -> list[str]:
    """The queues (known ones, with their groups, and those named by per-queue grants) the agent may read."""
    queues = [Queue(name, known.get(name, "")) for name in sorted(set(known) | named)]
    return [q.name for q in queues_with(access, "ro", queues)]


def compute_profiles(sources: Mapping[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """username → the ``AgentProfileChanged`` fields, from :func:`store.directory_sources`'s rows."""
    agent_groups: dict[int, dict[str, frozenset[str]]] = defaultdict(dict)
    for row in sources["agent_groups"]:
        agent_groups[row["agent_id"]][row["group_name"]] = frozenset(row["permissions"])
    role_groups: dict[str, dict[str, frozenset[str]]] = defaultdict(dict)
    for row in sources["role_groups"]:
        role_groups[row["role_name"]][row["group_name"]] = frozenset(row["permissions"])
    agent_roles: dict[int, list[str]] = defaultdict(list)
    for row in sources["agent_roles"]:
        agent_roles[row["agent_id"]].append(row["role_name"])
    known = {row["name"]: row["group_name"] for row in sources["queues"]}
    every_named = {q for row in sources["per_queue_groups"] if (q := queue_of_group(row["name"]))}
    profiles: dict[str, dict[str, Any]] = {}
    for agent in sources["agents"]:
        roles = tuple(Role(name, role_groups.get(name, {})) for name in sorted(agent_roles[agent["id"]]))
        access = AgentAccess(agent["username"], agent_groups[agent["id"]], roles, agent["is_admin"])
        if agent["is_admin"]:
            named = every_named
        else:
            groups = [*access.groups, *(g for role in roles for g in role.groups)]
            named = {q for g in groups if (q := queue_of_group(g))}
        prefs = preferences_of(agent["language"], agent["notifications"], agent["my_queues"])
        profiles[agent["username"]] = AgentProfileChanged(
            agent=agent["username"],
            email=agent["email"] or None,
            name=agent["full_name"] or "",
            valid=agent["valid"],
            language=prefs.language,
            notifications=[k for k, on in prefs.notifications.items() if on],  # type: ignore[misc]
            my_queues=prefs.my_queues,
            readable_queues=readable_queues(access, known, named),
        ).model_dump(mode="json")
    return profiles


def changed_profiles(
    current: Mapping[str, dict[str, Any]], published: Mapping[str, tuple[dict[str, Any], int]]
) -> list[tuple[str, dict[str, Any], int]]:
    """(username, profile, revision) to publish: new or different profiles, and agents that are gone
    (published as not valid)."""
    out: list[tuple[str, dict[str, Any], int]] = []
    for username, profile in sorted(current.items()):
        before = published.get(username)
        if before is None or before[0] != profile:
            out.append((username, profile, (before[1] if before else 0) + 1))
    for username, (profile, revision) in sorted(published.items()):
        if username not in current and profile.get("valid", True):
            out.append((username, {**profile, "valid": False}, revision + 1))
    return out


# --------------------------------------------------------------------------- publishing


async def profile_of(conn: asyncpg.Connection | asyncpg.Pool, username: str) -> dict[str, Any] | None:
    """One agent's current profile (computed now, published or not)."""
    if isinstance(conn, asyncpg.Pool):
        async with conn.acquire() as c:
            return await profile_of(c, username)
    return compute_profiles(await store.directory_sources(conn)).get(username)


async def publish_changed_profiles(pool: asyncpg.Pool, settings: GatewaySettings, *, force: bool = False) -> int:
    """Enqueue ``AgentProfileChanged`` for every profile that changed since it was last published;
    returns how many. Cheap when nothing changed (one row read)."""
    generation, published_generation = await store.directory_generation(pool)
    if generation == published_generation and not force:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        generation, _ = await store.directory_generation(conn, lock=True)
        current = compute_profiles(await store.directory_sources(conn))
        changes = changed_profiles(current, await store.published_profiles(conn))
        envelopes = [
            make_envelope(
                AgentProfileChanged.model_validate(profile),
                stream_id=f"agent:{username}",
                stream_version=revision,
                actor=ACTOR,
            )
            for username, profile, revision in changes
        ]
        if envelopes:
            await enqueue(conn, settings.topic(TOPIC_AGENT_DIRECTORY), envelopes)
            await store.put_published_profiles(conn, changes)
        await store.mark_directory_published(conn, generation)
    if changes:
        logger.info("agent directory: %d profile(s) published", len(changes))
    return len(changes)


async def run_publisher(pool: asyncpg.Pool, settings: GatewaySettings, stop: asyncio.Event) -> None:
    """Publish changed profiles every :data:`PUBLISH_POLL_SECONDS` (a one-row read when nothing
    changed), until ``stop`` is set."""
    while not stop.is_set():
        await publish_changed_profiles(pool, settings)
        try:
            await asyncio.wait_for(stop.wait(), timeout=PUBLISH_POLL_SECONDS)
        except TimeoutError:
            pass
