"""Gateway figures: login latency, and p50/p99 of the queue view, the ticket list (also sorted by
escalation, when tickets supports it) and the ticket zoom under concurrent agents, through the
gateway and against tickets directly; the UI's page weight (index.html + app.js + app.css, raw
and gzip).

Runs tickets and the gateway as their own processes (as in production) against DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS or a throwaway PostgreSQL and broker. Tickets are made the production
way: TicketRouted events on ``ticket.routed`` (what router publishes).

    python -m bench.gateway [--agents 50] [--tickets 500] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import random
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

from bench.infra import local_infra
from shared.bus import ensure_topics, make_producer
from shared.db import ensure_database
from shared.devinfra import free_port, wait_for_port
from shared.envelope import make_envelope
from shared.events import TOPIC_TICKET_ROUTED, Address, ParsedMail, TicketRouted
from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "services" / "gateway" / "static"
ADMIN_PASSWORD = "bench-admin-password"
AGENT_PASSWORD = "bench-agent-password"
QUEUES = {"Raw": "users", "Junk": "junk", "Info-en": "info", "Permissions": "permissions"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name:28} n={len(ms):6}  p50={statistics.median(ms):7.1f} ms  p99={percentile(ms, 0.99):7.1f} ms"
        f"  max={max(ms):7.1f} ms"
    )


def spawn(module: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def page_weight() -> None:
    total = gzipped = 0
    for name in ("index.html", "app.js", "app.css"):
        data = (STATIC / name).read_bytes()
        total += len(data)
        gzipped += len(gzip.compress(data, 6))
        print(
            f"page weight {name:10}: {len(data) / 1024:6.1f} KiB ({len(gzip.compress(data, 6)) / 1024:5.1f} KiB gzip)"
        )
    print(
        f"page weight total     : {total / 1024:6.1f} KiB ({gzipped / 1024:5.1f} KiB gzip), 3 requests, no third party"
    )


async def make_tickets(settings: ServiceSettings, n: int) -> None:
    topic = settings.topic(TOPIC_TICKET_ROUTED)
    await ensure_topics(settings, [topic])
    producer = make_producer(settings)
    await producer.start()
    queues = ["Raw"] * 6 + ["Info-en"] * 3 + ["Permissions"]
    try:
        for i in range(n):
            mail_id = f"bench-{i}"
            mail = ParsedMail(  # type: ignore[call-arg]
                from_=Address(email=f"customer{i}@example.org"),
                to=[Address(email="info@firstline.example")],
                subject=f"Question {i} about my account",
                message_id=f"<bench-{i}@example.org>",
                body_text="Hello, I cannot log in. " * 20,
            )
            event = TicketRouted(mail_id=mail_id, action="new", queue=queues[i % len(queues)], mail=mail)
            envelope = make_envelope(event, stream_id=mail_id, actor="router")
            await producer.send(topic, envelope.to_json(), key=mail_id.encode())
        await producer.flush()
    finally:
        await producer.stop()


async def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            try:
                if (await client.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy")


async def run(args: argparse.Namespace) -> None:
    page_weight()
    with local_infra() as infra:
        tickets_db, gateway_db = infra.database("bench_tickets"), infra.database("bench_gateway")
        for dsn in (tickets_db, gateway_db):
            await ensure_database(dsn)
        tickets_port, gateway_port = free_port(), free_port()
        common = {"KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap, "LOG_LEVEL": "WARNING", "DB_POOL_MAX": "20"}
        children = [
            spawn(
                "services.tickets",
                {**common, "SERVICE_NAME": "tickets", "DATABASE_URL": tickets_db, "HTTP_PORT": str(tickets_port)},
                infra.folder / "tickets.log",
            ),
            spawn(
                "services.gateway",
                {
                    **common,
                    "SERVICE_NAME": "gateway",
                    "DATABASE_URL": gateway_db,
                    "HTTP_PORT": str(gateway_port),
                    "TICKETS_URL": f"http://127.0.0.1:{tickets_port}",
                    "FIRSTLINE_ADMIN_PASSWORD": ADMIN_PASSWORD,
                },
                infra.folder / "gateway.log",
            ),
        ]
        try:
            for port in (tickets_port, gateway_port):
                wait_for_port(port, 60)
            gateway = f"http://127.0.0.1:{gateway_port}"
            await wait_ready(gateway)
            tickets = f"http://127.0.0.1:{tickets_port}"
            await measure(args, gateway, tickets, ServiceSettings(kafka_bootstrap_servers=infra.bootstrap))
        finally:
            for child in children:
                child.terminate()
            for child in children:
                child.wait(30)


async def measure(args: argparse.Namespace, gateway: str, tickets: str, settings: ServiceSettings) -> None:
    limits = httpx.Limits(max_connections=args.agents * 2)
    async with httpx.AsyncClient(base_url=gateway, timeout=60, limits=limits) as http:
        token = (await http.post("/api/login", json={"username": "admin", "password": ADMIN_PASSWORD})).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}
        for name, group in QUEUES.items():
            (await http.put(f"/api/admin/queues/{name}", json={"group": group}, headers=admin)).raise_for_status()
        await make_tickets(settings, args.tickets)
        started = time.monotonic()
        while True:
            listed = (await http.get("/api/tickets", params={"page_size": 1}, headers=admin)).json()
            if listed.get("total", 0) >= args.tickets:
                break
            if time.monotonic() - started > 300:
                raise TimeoutError(f"only {listed.get('total')} of {args.tickets} tickets after 300 s")
            await asyncio.sleep(0.5)
        print(f"{args.tickets} tickets made through ticket.routed in {time.monotonic() - started:.1f} s")

        for i in range(args.agents):
            body = {
                "username": f"agent{i}",
                "password": AGENT_PASSWORD,
                "permissions": {"Raw": ["rw"], "Info-en": ["ro"]},
            }
            (await http.post("/api/admin/agents", json=body, headers=admin)).raise_for_status()
        logins: list[float] = []
        tokens: list[str] = []
        for i in range(args.agents):  # one after another: argon2id at its production parameters
            t0 = time.perf_counter()
            response = await http.post("/api/login", json={"username": f"agent{i}", "password": AGENT_PASSWORD})
            logins.append(time.perf_counter() - t0)
            tokens.append(response.json()["token"])
        print(summary("login (sequential)", logins))

        numbers = [
            t["number"]
            for t in (await http.get("/api/tickets", params={"queue": "Raw", "page_size": 200}, headers=admin)).json()[
                "items"
            ]
        ]
        gateway_calls: list[Call] = [
            ("queue view (/api/queues)", "/api/queues", None),
            ("ticket list (25, Raw)", "/api/tickets", {"queue": "Raw", "page_size": 25}),
            ("ticket zoom", "/api/tickets/{}", None),
        ]
        by_escalation: dict[str, object] = {"queue": "Raw", "page_size": 25, "sort": "escalation"}
        probe = await http.get("/api/tickets", params=dict(by_escalation), headers=bearer_of(tokens[0]))  # type: ignore[arg-type]
        if probe.status_code == 200:
            gateway_calls.insert(2, ("ticket list by escalation", "/api/tickets", by_escalation))
        else:
            print(f"(tickets does not sort by escalation yet: {probe.status_code}; not measured)")
        await load(http, "through the gateway", gateway_calls, tokens, numbers, args.seconds)

    async with httpx.AsyncClient(base_url=tickets, timeout=60, limits=limits) as http:
        tickets_calls: list[Call] = [
            ("tickets GET /queues", "/queues", None),
            ("tickets GET /tickets", "/tickets", {"queues": "Raw,Info-en", "queue": None, "page_size": 25}),
            ("tickets GET /tickets/{n}", "/tickets/{}", None),
        ]
        await load(http, "tickets directly (baseline)", tickets_calls, tokens, numbers, args.seconds)


Call = tuple[str, str, dict[str, object] | None]


def bearer_of(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def load(
    http: httpx.AsyncClient, label: str, calls: list[Call], tokens: list[str], numbers: list[str], seconds: float
) -> None:
    """Each agent repeats the calls (queue view, a list page, a zoom) until the time is up."""
    timings: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def agent(token: str) -> None:
        headers = {"Authorization": f"Bearer {token}", "X-Actor": "bench"}
        rng = random.Random(token)
        while time.monotonic() < deadline:
            for name, path, params in calls:
                query = {k: v for k, v in (params or {}).items() if v is not None}
                if "page_size" in query:
                    query["page"] = rng.randint(1, 4)
                t0 = time.perf_counter()
                try:
                    response = await http.get(path.format(rng.choice(numbers)), params=query, headers=headers)  # type: ignore[arg-type]
                except httpx.TransportError as exc:
                    errors[f"{name}: {exc!r}"] += 1
                    continue
                timings[name].append(time.perf_counter() - t0)
                if response.status_code != 200:
                    errors[f"{name}: HTTP {response.status_code}"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(agent(t) for t in tokens))
    elapsed = time.perf_counter() - t0
    print(f"{len(tokens)} concurrent agents, {label}, {elapsed:.0f} s:")
    for name, values in timings.items():
        print(summary(name, values))
    print(f"throughput: {sum(len(v) for v in timings.values()) / elapsed:.0f} requests/s")
    for error, count in errors.most_common():
        print(f"  errors: {count} x {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=50)
    parser.add_argument("--tickets", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
