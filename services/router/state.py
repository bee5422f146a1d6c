"""What each router replica keeps in memory: the routing configuration and the classifier.

The tables are the truth. Every change bumps a version row (``router_versions``) in the same
transaction, and :meth:`RouterState.refresh` compares versions and catches up: the
configuration is reloaded whole (it is small); the classifier applies the change log
(``classifier_log``) since its version, or reloads all counts after a bulk import or when the
log no longer reaches back far enough. So replicas converge within ``state_refresh_seconds``,
and a restart starts from the tables.

Memory is only ever changed from committed rows, read on a connection of its own, never from
a consumer's open transaction: a rolled-back batch cannot leave the model ahead of the tables.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg

from services.router import store
from services.router.classifier import FORMAT, Classifier
from services.router.domain import Filter, InvalidFilter, RouterConfig, SystemAddress, TicketHook
from services.router.settings import RouterSettings

logger = logging.getLogger(__name__)


def base_config(
    settings: RouterSettings, filters: tuple[Filter, ...] = (), addresses: tuple[SystemAddress, ...] = ()
) -> RouterConfig:
    """The routing configuration: the settings' thresholds plus the stored filters and addresses."""
    return RouterConfig(
        filters=filters,
        system_addresses=addresses,
        default_queue=settings.default_queue,
        junk_queue=settings.junk_queue,
        hook=TicketHook(settings.ticket_hook, settings.ticket_hook_divider, settings.ticket_system_id),
        follow_up_by_body=settings.follow_up_by_body,
        spam_threshold=settings.spam_threshold,
        classifier_threshold=settings.classifier_threshold,
        trust_spam_headers=settings.trust_spam_headers,
        spam_header_required=settings.spam_header_score,
    )


def classifier_from_counts(version: int, docs: dict[str, int], counts: dict[str, dict[str, int]]) -> Classifier:
    state = {**Classifier().to_dict(), "format": FORMAT, "version": version, "docs": docs, "counts": counts}
    return Classifier.from_dict(state)


class RouterState:
    def __init__(self, settings: RouterSettings) -> None:
        self.settings = settings
        self.config = base_config(settings)
        self.config_version = -1
        self.classifier = Classifier()
        self.classifier_version = -1
        self._lock = asyncio.Lock()
        self._checked_at = float("-inf")

    async def refresh(self, pool: asyncpg.Pool, *, force: bool = False) -> None:
        """Catch up with the tables if ``state_refresh_seconds`` passed since the last look."""
        if not force and time.monotonic() - self._checked_at < self.settings.state_refresh_seconds:
            return
        async with self._lock:
            self._checked_at = time.monotonic()
            current = await store.versions(pool)
            if current["config"] != self.config_version:
                await self._load_config(pool)
            if current["classifier"] != self.classifier_version:
                await self._catch_up_classifier(pool)

    async def _load_config(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            version = (await store.versions(conn))["config"]
            filters = tuple(f for row in await store.list_filters(conn) if (f := _filter(row)) is not None)
            addresses = tuple(_address(row) for row in await store.list_addresses(conn))
        self.config = base_config(self.settings, filters, addresses)
        self.config_version = version

    async def _catch_up_classifier(self, pool: asyncpg.Pool) -> None:
        entries = await store.classifier_log_since(pool, self.classifier_version)
        contiguous = bool(entries) and entries[0]["version"] == self.classifier_version + 1
        if self.classifier_version < 0 or not contiguous or any(e["tokens"] is None for e in entries):
            await self._reload_classifier(pool)
            return
        for entry in entries:
            if entry["delta"] > 0:
                self.classifier.train(entry["tokens"], entry["label"])
            else:
                self.classifier.untrain(entry["tokens"], entry["label"])
            self.classifier.version = self.classifier_version = entry["version"]

    async def _reload_classifier(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
            version, docs, counts = await store.load_classifier(conn)
        self.classifier = classifier_from_counts(version, docs, counts)
        self.classifier_version = version
        logger.info("classifier loaded: version %d, %d tokens, labels %s", version, len(counts), docs)


def _filter(row: dict) -> Filter | None:
    try:
        return Filter(
            name=row["name"],
            match=row["match"],
            actions=row["actions"],
            position=row["position"],
            enabled=row["enabled"],
            filter_id=row["filter_id"],
        )
    except InvalidFilter:
        logger.exception("stored filter %s is invalid; skipped", row["filter_id"])
        return None


def _address(row: dict) -> SystemAddress:
    return SystemAddress(row["email"], row["queue"], dict(row["language_queues"]), row["display_name"])
