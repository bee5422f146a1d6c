"""PostgreSQL and a broker for benchmarks: from the environment, else started here and removed after."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shared.devinfra import LocalBroker, LocalPostgres, free_port


@dataclass(frozen=True)
class Infra:
    pg_base: str  # postgresql://user@host:port, no database
    bootstrap: str
    folder: Path

    def database(self, prefix: str = "bench") -> str:
        return f"{self.pg_base}/{prefix}_{uuid.uuid4().hex[:8]}"


@contextmanager
def local_infra() -> Iterator[Infra]:
    folder = Path(tempfile.mkdtemp(prefix="firstline-bench-"))
    pg = broker = None
    try:
        url = os.environ.get("DATABASE_URL")
        if not url:
            pg = LocalPostgres(folder / "data", free_port())
            pg.start()
            url = pg.url
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            broker = LocalBroker(free_port(), folder / "tansu.log")
            broker.start()
            bootstrap = broker.bootstrap
        yield Infra(url.rsplit("/", 1)[0], bootstrap, folder)
    finally:
        if broker:
            broker.stop()
        if pg:
            pg.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)
