"""The rebuild as an admin action: ``POST /admin/rebuild`` starts it in the background, a row
in ``rebuild_jobs`` tells how far it got.

One rebuild at a time in the whole deployment: the job holds an advisory lock on a connection
of its own while it runs, and a ``running`` row whose lock nobody holds is an interrupted job
(its schema is kept, and ``{"resume": true}`` goes on from where it stopped).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import asyncpg

from services.tickets import rebuild, store
from services.tickets.errors import RebuildNotFound, RebuildRunning
from shared.envelope import new_id

logger = logging.getLogger(__name__)

_REBUILD_LOCK = 0x46_4C_52_42  # "FLRB"
_PROGRESS_EVERY_SECONDS = 1.0

_JOB_COLUMNS = (
    "job_id, state, swap, schema_name, events, report, error, started_at, updated_at, finished_at,"
    " (state = 'running' and not exists (select 1 from pg_locks where locktype = 'advisory'"
    f" and objid = {_REBUILD_LOCK} and granted)) as interrupted"
)


class RebuildJobs:
    def __init__(self, pool: Callable[[], asyncpg.Pool]) -> None:
        self._pool = pool
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    async def start(self, *, swap: bool, resume: bool) -> dict[str, Any]:
        """Take the lock, record the job, and run it in the background; 409 if one runs."""
        conn = await self.pool.acquire()
        try:
            if not await conn.fetchval("select pg_try_advisory_lock($1)", _REBUILD_LOCK):
                raise RebuildRunning("a rebuild is running; see GET /admin/rebuild")
            schema = await self._schema(conn, resume)
            job_id = new_id()
            await conn.execute(
                "insert into rebuild_jobs (job_id, state, swap, schema_name) values ($1, 'running', $2, $3)",
                job_id,
                swap,
                schema,
            )
        except BaseException:
            await _release(self.pool, conn)
            raise
        task = asyncio.create_task(self._run(conn, job_id, schema, swap), name=f"rebuild {job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return await self.get(job_id)

    async def _schema(self, conn: asyncpg.Connection, resume: bool) -> str:
        """A new schema, or with ``resume`` the one of the last job that did not finish."""
        if resume:
            kept = await conn.fetchval(
                "select schema_name from rebuild_jobs where state in ('running', 'failed')"
                " and schema_name in (select nspname from pg_namespace) order by started_at desc limit 1"
            )
            if kept:
                await conn.execute("update rebuild_jobs set state = 'resumed' where schema_name = $1", kept)
                return str(kept)
        schema = rebuild.new_schema_name()
        async with conn.transaction():
            await store.create_read_model_schema(conn, schema)
        return schema

    async def _run(self, conn: asyncpg.Connection, job_id: str, schema: str, swap: bool) -> None:
        last = 0.0

        async def progress(done: int, seconds: float) -> None:
            nonlocal last
            if time.monotonic() - last >= _PROGRESS_EVERY_SECONDS:
                last = time.monotonic()
                await conn.execute(
                    "update rebuild_jobs set events = $2, updated_at = now() where job_id = $1", job_id, done
                )

        try:
            report = await rebuild.rebuild(self.pool, resume=schema, swap=swap, progress=progress)
            await _finish(conn, job_id, "done", report.events, report.as_dict(), None)
        except Exception as exc:
            logger.exception("rebuild %s failed", job_id)
            await _finish(conn, job_id, "failed", None, None, repr(exc))
        finally:
            await _release(self.pool, conn)

    async def get(self, job_id: str) -> dict[str, Any]:
        row = await self.pool.fetchrow(f"select {_JOB_COLUMNS} from rebuild_jobs where job_id = $1", job_id)
        if row is None:
            raise RebuildNotFound(f"no rebuild {job_id}")
        return job_view(row)

    async def recent(self, limit: int = 20) -> dict[str, Any]:
        rows = await self.pool.fetch(
            f"select {_JOB_COLUMNS} from rebuild_jobs order by started_at desc limit $1", limit
        )
        return {"total": len(rows), "items": [job_view(r) for r in rows]}

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def job_view(row: asyncpg.Record) -> dict[str, Any]:
    state = "interrupted" if row["interrupted"] else row["state"]
    report = row["report"]
    return {
        "job_id": row["job_id"],
        "state": state,
        "swap": row["swap"],
        "schema": row["schema_name"],
        "events": row["events"],
        "matches": report.get("matches") if report else None,
        "swapped": report.get("swapped") if report else None,
        "report": report,
        "error": row["error"],
        "started_at": row["started_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
        "finished_at": row["finished_at"].isoformat() if row["finished_at"] else None,
    }


async def _finish(
    conn: asyncpg.Connection, job_id: str, state: str, events: int | None, report: Any, error: str | None
) -> None:
    await conn.execute(
        "update rebuild_jobs set state = $2, events = coalesce($3, events), report = $4, error = $5,"
        " updated_at = now(), finished_at = now() where job_id = $1",
        job_id,
        state,
        events,
        report,
        error,
    )


async def _release(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    try:
        await conn.execute("select pg_advisory_unlock_all()")
    finally:
        await pool.release(conn)
