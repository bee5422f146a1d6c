"""Rebuild the read models from Kafka instead of the event store: ``ticket.events`` from offset 0,
in a consumer group of its own, projected by the live :class:`Projector` into a fresh schema.

    python -m services.tickets.replay [--group NAME] [--keep]

It proves the topic is a faithful copy of the log (rule 3 of ARCHITECTURE.md: replaying a topic
from the start rebuilds the same read model): the digest of the replayed schema is compared
with the live one. Records are handled in poll batches, one transaction each, offsets committed
after it; a duplicate record changes nothing (the projector skips versions it has). Personal
data is in plaintext on the topic (see ``privacy``), so after an erasure the live read models
say "[erased]" where a replay of an older topic would not: the digests then differ, by design.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.tickets import store
from services.tickets.projections import Projector
from services.tickets.rebuild import MIGRATIONS, digest, new_schema_name
from services.tickets.settings import TicketsSettings
from shared.bus import MAX_MESSAGE_BYTES
from shared.db import create_pool, migrate
from shared.envelope import Envelope, new_id
from shared.events import TOPIC_TICKET_EVENTS


@dataclass
class ReplayReport:
    schema: str
    group: str
    records: int
    live_digest: str
    replayed_digest: str

    @property
    def matches(self) -> bool:
        return self.live_digest == self.replayed_digest


async def replay_topic(
    pool: asyncpg.Pool,
    settings: TicketsSettings,
    *,
    group: str | None = None,
    schema: str | None = None,
    join_timeout: float = 30.0,
) -> ReplayReport:
    """Project the whole topic (up to its end when the replay started) into a new schema."""
    schema = schema or new_schema_name("replay")
    group = group or f"{settings.kafka_topic_prefix}tickets.replay.{new_id()}"
    async with pool.acquire() as conn, conn.transaction():
        await store.create_read_model_schema(conn, schema)
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_TICKET_EVENTS),
        bootstrap_servers=settings.kafka_bootstrap_servers,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
        fetch_max_bytes=MAX_MESSAGE_BYTES,
    )
    await consumer.start()
    try:
        records = await _consume_to_end(pool, consumer, schema, join_timeout)
    finally:
        await consumer.stop()
    async with pool.acquire() as conn:
        await store.index_read_model_schema(conn, schema)
    return ReplayReport(schema, group, records, await digest(pool), await digest(pool, schema))


async def _consume_to_end(pool: asyncpg.Pool, consumer: AIOKafkaConsumer, schema: str, join_timeout: float) -> int:
    end = await _end_offsets(consumer, join_timeout)
    projector, records = Projector(), 0
    while await _behind(consumer, end):
        batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
        page = [r for part in batches.values() for r in part]
        if not page:
            continue
        envelopes = [Envelope.from_json(r.value) for r in page if r.value is not None]
        async with pool.acquire() as conn, conn.transaction():
            await store.use_schema(conn, schema)
            await projector.project(conn, envelopes)
        await consumer.commit({tp: part[-1].offset + 1 for tp, part in batches.items() if part})
        records += len(page)
    return records


async def _behind(consumer: AIOKafkaConsumer, end: dict[TopicPartition, int]) -> bool:
    for tp, offset in end.items():
        if await consumer.position(tp) < offset:
            return True
    return False


async def _end_offsets(consumer: AIOKafkaConsumer, timeout: float) -> dict[TopicPartition, int]:
    """The end of every partition once the group has them all (a rebalance takes seconds)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    topic = next(iter(consumer.subscription()))
    while True:
        partitions = consumer.partitions_for_topic(topic) or set()
        assigned = consumer.assignment()
        if partitions and len(assigned) == len(partitions):
            return await consumer.end_offsets(list(assigned))
        if loop.time() > deadline:
            raise TimeoutError(f"no assignment of {topic} within {timeout} s")
        await consumer.getmany(timeout_ms=200, max_records=1)  # drives the group join
        for tp in consumer.assignment():
            consumer.seek_to_beginning(tp)


async def _main(args: argparse.Namespace) -> int:
    settings = TicketsSettings()
    pool = await create_pool(args.database_url or settings.database_url, max_size=4)
    try:
        await migrate(pool, [MIGRATIONS])
        report = await replay_topic(pool, settings, group=args.group)
        if not args.keep:
            await store.drop_schema(pool, report.schema)
    finally:
        await pool.close()
    result = {**report.__dict__, "matches": report.matches, "kept": args.keep}
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0 if report.matches else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", help="default: DATABASE_URL")
    parser.add_argument("--group", help="consumer group (default: a new one)")
    parser.add_argument("--keep", action="store_true", help="keep the replayed schema")
    raise SystemExit(asyncio.run(_main(parser.parse_args())))


if __name__ == "__main__":
    main()
