"""Replaying ``ticket.events`` from offset 0 into a new consumer group rebuilds the same read
models as the live ones (ARCHITECTURE.md rule 3), through the live Projector."""

from __future__ import annotations

import pytest

from services.tickets import store
from services.tickets.rebuild import digest
from services.tickets.replay import replay_topic
from shared.settings import ServiceSettings
from tests.conftest import eventually

from .service_kit import running, tickets_of, tickets_settings
from .test_ticket_service_flow import workload

pytestmark = pytest.mark.timeout(240)


async def test_replaying_the_topic_into_a_new_group_reproduces_the_read_models(settings: ServiceSettings) -> None:
    config = tickets_settings(settings)
    async with running(config) as (app, client):
        await workload(app, client)
        pool = tickets_of(app).pool

        async def all_published() -> bool:
            return await pool.fetchval("select count(*) from outbox where published_at is null") == 0

        await eventually(all_published, timeout=60)
        events = await pool.fetchval("select count(*) from events")
        report = await replay_topic(pool, config, join_timeout=60)
        assert report.records >= events, (report.records, events)
        assert report.matches, (report.live_digest, report.replayed_digest)
        assert report.live_digest == await digest(pool)
        assert await store.table_digests(pool, report.schema) == await store.table_digests(pool)
        again = await replay_topic(pool, config, join_timeout=60)  # another new group: from 0 again
        assert again.group != report.group and again.matches and again.records == report.records
