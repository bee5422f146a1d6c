"""`make dev`: the whole system on this machine, each service its own process, as in production.

Starts PostgreSQL (its own cluster under .data/pg unless DATABASE_URL is given), the broker
(unless KAFKA_BOOTSTRAP_SERVERS is given), a mail catcher on 1025 (unless SMTP_RELAY_HOST is
given), every service, then loads the demo queues and addresses and prints the UI's URL and
login. Ctrl-C stops everything cleanly; the next `make dev` keeps the data.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from scripts.demo import load_demo_data
from shared.devinfra import LocalBroker, LocalPostgres, port_open, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".data"
LOGS = DATA / "logs"


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    port: int
    extra_env: tuple[tuple[str, str], ...] = ()


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


SERVICES = [
    ServiceSpec("ingest", _port("INGEST_PORT", 8001), (("SMTP_PORT", str(_port("SMTP_PORT", 2525))),)),
    ServiceSpec("router", _port("ROUTER_PORT", 8002)),
    ServiceSpec("tickets", _port("TICKETS_PORT", 8003)),
    ServiceSpec("notify", _port("NOTIFY_PORT", 8004)),
    ServiceSpec("gateway", _port("GATEWAY_PORT", 8080)),
]


def say(message: str) -> None:
    print(f"[firstline] {message}", flush=True)


def start_postgres() -> tuple[str, LocalPostgres | None]:
    """The server URL (without database) and the cluster we started, if any."""
    if url := os.environ.get("DATABASE_URL"):
        return url.rsplit("/", 1)[0], None
    server = LocalPostgres(DATA / "pg" / "data", _port("DEV_PG_PORT", 54329))
    if port_open(server.port):
        say(f"PostgreSQL already running on {server.port}")
        return server.url.rsplit("/", 1)[0], None
    server.start()
    say(f"PostgreSQL cluster in {server.data_dir} on port {server.port}")
    return server.url.rsplit("/", 1)[0], server


def start_broker() -> tuple[str, LocalBroker | None]:
    if servers := os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        return servers, None
    broker = LocalBroker(_port("KAFKA_PORT", 9092), LOGS / "broker.log")
    if port_open(broker.port):
        raise SystemExit(f"port {broker.port} is taken; set KAFKA_PORT or KAFKA_BOOTSTRAP_SERVERS")
    broker.start()
    say(f"Kafka-protocol broker (tansu, in memory) on {broker.bootstrap}")
    return broker.bootstrap, broker


def admin_credentials() -> tuple[str, str]:
    user = os.environ.get("FIRSTLINE_ADMIN_USER", "admin")
    if password := os.environ.get("FIRSTLINE_ADMIN_PASSWORD"):
        return user, password
    saved = DATA / "admin-password"
    if not saved.exists():
        saved.write_text(secrets.token_urlsafe(12))
        saved.chmod(0o600)
    return user, saved.read_text().strip()


def relay_env() -> dict[str, str]:
    if os.environ.get("SMTP_RELAY_HOST"):
        return {
            "SMTP_RELAY_HOST": os.environ["SMTP_RELAY_HOST"],
            "SMTP_RELAY_PORT": os.environ.get("SMTP_RELAY_PORT", "25"),
        }
    return {"SMTP_RELAY_HOST": "127.0.0.1", "SMTP_RELAY_PORT": str(_port("CATCHER_PORT", 1025))}


def spawn(module: str, env: dict[str, str], log_name: str) -> subprocess.Popen[bytes]:
    log = open(LOGS / f"{log_name}.log", "ab")  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def service_env(spec: ServiceSpec, pg_base: str, bootstrap: str, admin: tuple[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SERVICE_NAME=spec.name,
        DATABASE_URL=f"{pg_base}/firstline_{spec.name}",
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        HTTP_PORT=str(spec.port),
        INGEST_URL=f"http://127.0.0.1:{SERVICES[0].port}",
        ROUTER_URL=f"http://127.0.0.1:{SERVICES[1].port}",
        TICKETS_URL=f"http://127.0.0.1:{SERVICES[2].port}",
        NOTIFY_URL=f"http://127.0.0.1:{SERVICES[3].port}",
        FIRSTLINE_ADMIN_USER=admin[0],
        FIRSTLINE_ADMIN_PASSWORD=admin[1],
        **relay_env(),
    )
    env.update(dict(spec.extra_env))
    return env


def wait_healthy(spec: ServiceSpec, child: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise SystemExit(f"{spec.name} exited with {child.returncode}; see {LOGS / spec.name}.log")
        try:
            if httpx.get(f"http://127.0.0.1:{spec.port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{spec.name} did not become healthy in {timeout}s; see {LOGS / spec.name}.log")


def stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    for name, child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop in 30 s; killing it")
            child.kill()


def main() -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    pg_base, pg = start_postgres()
    bootstrap, broker = start_broker()
    admin = admin_credentials()
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        if not os.environ.get("SMTP_RELAY_HOST"):
            catcher_env = dict(
                os.environ, CATCHER_PORT=str(_port("CATCHER_PORT", 1025)), CATCHER_DIR=str(DATA / "caught-mail")
            )
            children.append(("mailcatcher", spawn("scripts.mailcatcher", catcher_env, "mailcatcher")))
            wait_for_port(_port("CATCHER_PORT", 1025))
            say(f"mail catcher on 127.0.0.1:{_port('CATCHER_PORT', 1025)}, mails saved in {DATA / 'caught-mail'}")
        for spec in SERVICES:
            child = spawn(f"services.{spec.name}", service_env(spec, pg_base, bootstrap, admin), spec.name)
            children.append((spec.name, child))
        for spec, (_, child) in zip(SERVICES, children[-len(SERVICES) :], strict=True):
            wait_healthy(spec, child)
            say(f"{spec.name} up on http://127.0.0.1:{spec.port}")
        load_demo_data({s.name: f"http://127.0.0.1:{s.port}" for s in SERVICES})
        gateway = SERVICES[-1].port
        say(
            f"SMTP intake on 127.0.0.1:{SERVICES[0].extra_env[0][1]}; raw intake POST http://127.0.0.1:{SERVICES[0].port}/mail"
        )
        say(f"Agent UI: http://127.0.0.1:{gateway}/   login: {admin[0]} / {admin[1]}")
        say(f"Logs in {LOGS}. Ctrl-C stops everything.")
        while all(child.poll() is None for _, child in children):
            time.sleep(0.5)
        dead = [name for name, child in children if child.poll() is not None]
        say(f"stopped unexpectedly: {', '.join(dead)} (see {LOGS})")
    except KeyboardInterrupt:
        say("stopping")
    finally:
        stop_all(children)
        if broker:
            broker.stop()
        if pg:
            pg.stop()
        say("stopped")


if __name__ == "__main__":
    main()
