"""`make dev`: the whole system on this machine, each service its own process, as in production.

Starts PostgreSQL (its own cluster under .data/pg unless DATABASE_URL is given), the broker
(unless KAFKA_BOOTSTRAP_SERVERS is given), a mail catcher on 1025 (unless SMTP_RELAY_HOST is
given), every service, then loads the demo queues and addresses and prints the UI's URL and
login. Ctrl-C stops everything cleanly; the next `make dev` keeps the data.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from scripts.demo import load_demo_data
from scripts.system import SERVICE_NAMES, Ports, System
from shared.db import ensure_database
from shared.devinfra import LocalBroker, LocalPostgres, port_open, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".data"
LOGS = DATA / "logs"


def say(message: str) -> None:
    print(f"[firstline] {message}", flush=True)


def env_port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def ports_from_env() -> Ports:
    return Ports(
        ingest=env_port("INGEST_PORT", 8001),
        router=env_port("ROUTER_PORT", 8002),
        tickets=env_port("TICKETS_PORT", 8003),
        notify=env_port("NOTIFY_PORT", 8004),
        gateway=env_port("GATEWAY_PORT", 8080),
        smtp=env_port("SMTP_PORT", 2525),
    )


def start_postgres() -> tuple[str, LocalPostgres | None]:
    """The server URL without a database, and the cluster we started, if any."""
    if url := os.environ.get("DATABASE_URL"):
        return url.rsplit("/", 1)[0], None
    server = LocalPostgres(DATA / "pg" / "data", env_port("DEV_PG_PORT", 54329))
    base = server.url.rsplit("/", 1)[0]
    if port_open(server.port):
        say(f"PostgreSQL already running on port {server.port}")
        return base, None
    server.start()
    say(f"PostgreSQL cluster in {server.data_dir} on port {server.port}")
    return base, server


def start_broker() -> tuple[str, LocalBroker | None]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return servers, None
    broker = LocalBroker(env_port("KAFKA_PORT", 9092), LOGS / "broker.log")
    if port_open(broker.port):
        raise SystemExit(f"port {broker.port} is taken; set KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS")
    broker.start()
    say(f"Kafka-protocol broker (tansu, in memory) on {broker.bootstrap}")
    return broker.bootstrap, broker


def start_catcher() -> tuple[tuple[str, int], subprocess.Popen[bytes] | None]:
    if host := os.environ.get("SMTP_RELAY_HOST"):
        return (host, env_port("SMTP_RELAY_PORT", 25)), None
    port = env_port("CATCHER_PORT", 1025)
    env = dict(os.environ, CATCHER_PORT=str(port), CATCHER_DIR=str(DATA / "caught-mail"))
    log = open(LOGS / "mailcatcher.log", "ab")  # noqa: SIM115 - lives as long as the child
    child = subprocess.Popen(
        [sys.executable, "-m", "scripts.mailcatcher"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_for_port(port)
    say(f"mail catcher on 127.0.0.1:{port}; mails sent by Firstline are saved in {DATA / 'caught-mail'}")
    return ("127.0.0.1", port), child


def admin_credentials() -> tuple[str, str]:
    user = os.environ.get("FIRSTLINE_ADMIN_USER", "admin")
    if password := os.environ.get("FIRSTLINE_ADMIN_PASSWORD"):
        return user, password
    saved = DATA / "admin-password"
    if not saved.exists():
        saved.write_text(secrets.token_urlsafe(12))
        saved.chmod(0o600)
    return user, saved.read_text().strip()


def main() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    pg_base, pg = start_postgres()
    bootstrap, broker = start_broker()
    relay, catcher = start_catcher()
    ports = ports_from_env()
    system = System(
        pg_base=pg_base, bootstrap=bootstrap, ports=ports, smtp_relay=relay, logs=LOGS, admin=admin_credentials()
    )
    try:
        for name in SERVICE_NAMES:
            asyncio.run(ensure_database(f"{pg_base}/{system.database_prefix}{name}"))
        system.start_all()
        load_demo_data({name: ports.url(name) for name in SERVICE_NAMES})
        say(f"SMTP intake on 127.0.0.1:{ports.smtp}; raw intake: POST {ports.url('ingest')}/mail")
        say(f"Agent UI: {ports.url('gateway')}/   login: {system.admin[0]} / {system.admin[1]}")
        say(f"Service logs (JSON lines) in {LOGS}. Ctrl-C stops everything.")
        while not system.dead():
            time.sleep(0.5)
        say(f"stopped unexpectedly: {', '.join(system.dead())} (see {LOGS})")
    except KeyboardInterrupt:
        say("stopping")
    finally:
        system.stop()
        if catcher:
            catcher.terminate()
            catcher.wait(10)
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        say("stopped")


if __name__ == "__main__":
    main()
