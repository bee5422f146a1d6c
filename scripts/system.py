"""Start every Firstline service as its own process, as in production; used by `make dev` and e2e tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.devinfra import die_with_parent

ROOT = Path(__file__).resolve().parents[1]
SERVICE_NAMES = ("ingest", "router", "tickets", "notify", "gateway")


@dataclass(frozen=True)
class Ports:
    ingest: int = 8001
    router: int = 8002
    tickets: int = 8003
    notify: int = 8004
    gateway: int = 8080
    smtp: int = 2525

    def of(self, service: str) -> int:
        return int(getattr(self, service))

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.of(service)}"


@dataclass
class System:
    """The five services, started against a PostgreSQL server and a broker that already run."""

    pg_base: str  # postgresql://user@host:port (no database): each service gets firstline_<name>
    bootstrap: str
    ports: Ports
    smtp_relay: tuple[str, int]
    logs: Path
    admin: tuple[str, str]
    extra_env: dict[str, str] = field(default_factory=dict)
    database_prefix: str = "firstline_"
    children: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def env_for(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SERVICE_NAME=name,
            DATABASE_URL=f"{self.pg_base}/{self.database_prefix}{name}",
            KAFKA_BOOTSTRAP_SERVERS=self.bootstrap,
            HTTP_PORT=str(self.ports.of(name)),
            SMTP_PORT=str(self.ports.smtp),
            INGEST_URL=self.ports.url("ingest"),
            ROUTER_URL=self.ports.url("router"),
            TICKETS_URL=self.ports.url("tickets"),
            NOTIFY_URL=self.ports.url("notify"),
            SMTP_RELAY_HOST=self.smtp_relay[0],
            SMTP_RELAY_PORT=str(self.smtp_relay[1]),
            FIRSTLINE_ADMIN_USER=self.admin[0],
            FIRSTLINE_ADMIN_PASSWORD=self.admin[1],
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def start(self, name: str) -> subprocess.Popen[bytes]:
        self.logs.mkdir(parents=True, exist_ok=True)
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the child
        child = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=self.env_for(name),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        self.children[name] = child
        return child

    def start_all(self, timeout: float = 90) -> None:
        for name in SERVICE_NAMES:
            self.start(name)
        for name in SERVICE_NAMES:
            self.wait_healthy(name, timeout)

    def wait_healthy(self, name: str, timeout: float = 90, path: str = "/healthz") -> None:
        child = self.children[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if child.poll() is not None:
                raise RuntimeError(f"{name} exited with {child.returncode}; see {self.logs / name}.log")
            try:
                if httpx.get(f"{self.ports.url(name)}{path}", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{name} not healthy after {timeout}s; see {self.logs / name}.log")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.children[name]
        if child.poll() is None:
            child.send_signal(sig)
            child.wait(30)

    def dead(self) -> list[str]:
        return [name for name, child in self.children.items() if child.poll() is not None]

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM everyone (graceful: finish the batch, commit, leave the group), then wait."""
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in self.children.values():
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
