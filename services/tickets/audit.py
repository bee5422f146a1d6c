"""Audit from the command line: verify every hash chain, export the head hashes.

    python -m services.tickets.audit verify          # exit 1 and name the first broken link
    python -m services.tickets.audit heads > heads.json

An auditor keeps ``heads.json`` (its ``digest`` is over every stream's last version and hash);
a later ``verify`` plus a comparison of the old heads with the new log proves nothing before
them was rewritten.
"""

from __future__ import annotations

import argparse
import asyncio

import orjson

from services.tickets import queries
from services.tickets.settings import TicketsSettings
from shared.db import create_pool
from shared.eventstore import EventStore


async def _main(command: str, database_url: str | None) -> int:
    pool = await create_pool(database_url or TicketsSettings().database_url, max_size=2)
    try:
        events = EventStore(pool)
        result = await (queries.verify(events) if command == "verify" else queries.head_hashes(events))
    finally:
        await pool.close()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    return 0 if result.get("ok", True) else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["verify", "heads"])
    parser.add_argument("--database-url", help="default: DATABASE_URL")
    args = parser.parse_args()
    raise SystemExit(asyncio.run(_main(args.command, args.database_url)))


if __name__ == "__main__":
    main()
