"""End-to-end figures with every service running as a process (as `make dev` starts them).

Against DATABASE_URL / KAFKA_BOOTSTRAP_SERVERS or a throwaway PostgreSQL and broker:

1. a burst of N corpus mails (made unique) sent by SMTP: how fast ingest accepts them, and how
   fast they become articles on tickets (the queue view reads the same synchronous projection);
2. mail at a steady rate (100/s, then 30/s) while 100 agents lock and unlock tickets through the
   gateway: the latency of each mail from SMTP's 250 to its article, and each agent command's;
3. replay: the admin's rebuild of every read model from the log;
4. each service's memory.

It ends with one table of figure, target and whether the target was met. No figure fails anything.

    python -m bench.e2e [--mails 2000] [--rate 100] [--calm-rate 30] [--seconds 10] [--agents 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import smtplib
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import asyncpg
import httpx

from bench.infra import local_infra
from bench.ingest import corpus_mails, rss_mb, unique
from scripts.demo import QUEUES, load_demo_data
from scripts.system import SERVICE_NAMES, Ports, System
from shared.db import ensure_database
from shared.devinfra import free_port

ADMIN = ("admin", "bench-password")
AGENT_PASSWORD = "bench-agent-password"
SENDER = "customer@example.org"
RECIPIENT = "info@firstline.example"


@dataclass(frozen=True)
class Row:
    """One line of the closing table; ``met`` is None where there is no target."""

    measure: str
    figure: str
    target: str = ""
    met: bool | None = None


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency_figure(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    return (
        f"p50 {statistics.median(samples):.0f} ms, p99 {percentile(samples, 0.99):.0f} ms, "
        f"max {max(samples):.0f} ms (n={len(samples)})"
    )


# --------------------------------------------------------------------------- mail


def send_mail(client: smtplib.SMTP, mail: bytes) -> str:
    """One mail over an open SMTP session; returns ingest's mail id from the 250 reply."""
    client.ehlo_or_helo_if_needed()
    for code, reply in (client.mail(SENDER), client.rcpt(RECIPIENT)):
        if code != 250:
            raise RuntimeError(f"SMTP answered {code} {reply!r}")
    code, reply = client.data(mail)
    if code != 250:
        raise RuntimeError(f"DATA answered {code} {reply!r}")
    return reply.decode().rsplit(" ", 1)[-1]


def in_threads(work: Callable[[int], None], count: int) -> None:
    """``work(0)`` … ``work(count - 1)`` in threads; the first failure is raised here."""
    with ThreadPoolExecutor(count) as pool:
        for future in [pool.submit(work, i) for i in range(count)]:
            future.result()


def smtp_burst(port: int, mails: list[bytes], n: int, tag: str, connections: int = 8) -> float:
    """Send ``n`` mails over ``connections`` sessions as fast as ingest takes them; mails/s."""

    def sender(offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for i in range(offset, n, connections):
                send_mail(client, unique(mails[i % len(mails)], i, tag))

    started = time.perf_counter()
    in_threads(sender, connections)
    return n / (time.perf_counter() - started)


def smtp_steady(port: int, mails: list[bytes], rate: int, seconds: int, tag: str, accepted: dict[str, float]) -> None:
    """Send at ``rate`` mails/s over 4 sessions, recording when each mail's 250 came."""
    connections = 4
    interval = connections / rate
    lock = threading.Lock()

    def sender(offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            next_at = time.perf_counter() + offset * interval / connections
            for i in range(offset, rate * seconds, connections):
                time.sleep(max(0.0, next_at - time.perf_counter()))
                mail_id = send_mail(client, unique(mails[i % len(mails)], i, tag))
                with lock:
                    accepted[mail_id] = time.perf_counter()
                next_at += interval

    in_threads(sender, connections)


async def articles(conn: asyncpg.Connection) -> int:
    """Mails that became an article (a new ticket, or a follow-up: corpus threads reply to each other)."""
    query = "select count(*) from events where type = 'ArticleAdded' and data->>'mail_id' is not null"
    return int(await conn.fetchval(query))


async def arrived(conn: asyncpg.Connection, mail_ids: list[str]) -> list[str]:
    query = "select data->>'mail_id' from events where type = 'ArticleAdded' and data->>'mail_id' = any($1)"
    return [row[0] for row in await conn.fetch(query, mail_ids)]


async def burst(system: System, dsn: str, mails: list[bytes], n: int) -> list[Row]:
    conn = await asyncpg.connect(dsn)
    try:
        before = await articles(conn)
        started = time.perf_counter()
        accept_rate = await asyncio.to_thread(smtp_burst, system.ports.smtp, mails, n, f"burst-{uuid.uuid4().hex[:6]}")
        while await articles(conn) < before + n:
            await asyncio.sleep(0.2)
        sustained = n / (time.perf_counter() - started)
    finally:
        await conn.close()
    return [
        Row(f"SMTP accepted, burst of {n} (8 sessions)", f"{accept_rate:.0f} mails/s"),
        Row("end to end: SMTP 250 → article", f"{sustained:.0f} mails/s", "≥ 300/s", sustained >= 300),
    ]


async def follow_mail(dsn: str, accepted: dict[str, float], sending: threading.Event, samples: list[float]) -> None:
    """Until the sender is done and every accepted mail arrived: latency of each, in ms."""
    conn = await asyncpg.connect(dsn)
    try:
        waiting: dict[str, float] = {}
        while sending.is_set() or accepted or waiting:
            for mail_id in list(accepted):
                waiting[mail_id] = accepted.pop(mail_id)
            if waiting:
                now = time.perf_counter()
                for mail_id in await arrived(conn, list(waiting)):
                    samples.append((now - waiting.pop(mail_id)) * 1000)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


# --------------------------------------------------------------------------- agents


async def make_agents(http: httpx.AsyncClient, admin: dict[str, str], agents: int) -> list[dict[str, str]]:
    """``agents`` volunteers with rw on every queue, logged in; their bearer headers."""
    permissions = {queue: ["rw"] for queue in QUEUES}
    headers = []
    for i in range(agents):
        body = {"username": f"volunteer{i}", "password": AGENT_PASSWORD, "permissions": permissions}
        (await http.post("/api/admin/agents", json=body, headers=admin)).raise_for_status()
        login = await http.post("/api/login", json={"username": f"volunteer{i}", "password": AGENT_PASSWORD})
        headers.append({"Authorization": f"Bearer {login.raise_for_status().json()['token']}"})
    return headers


async def ticket_numbers(http: httpx.AsyncClient, admin: dict[str, str], wanted: int) -> list[str]:
    numbers: list[str] = []
    page = 1
    while len(numbers) < wanted:
        listed = await http.get("/api/tickets", params={"page": page, "page_size": 100}, headers=admin)
        items = listed.raise_for_status().json()["items"]
        if not items:
            break
        numbers += [t["number"] for t in items if not t["locked"]]
        page += 1
    return numbers


async def working_agents(
    http: httpx.AsyncClient, agents: list[dict[str, str]], numbers: list[str], until: float, samples: list[float]
) -> int:
    """Each agent locks a ticket of its own, thinks, unlocks, thinks (~2 s between commands on
    average: a busy team); returns how many commands failed."""
    rng = random.Random(7)
    failures = 0

    async def command(path: str, headers: dict[str, str]) -> None:
        nonlocal failures
        started = time.perf_counter()
        response = await http.post(path, json={}, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        failures += response.status_code >= 400

    async def agent(a: int, headers: dict[str, str]) -> None:
        mine = numbers[a :: len(agents)]
        i = 0
        while mine and time.perf_counter() < until:
            number = mine[i % len(mine)]
            await asyncio.sleep(rng.expovariate(1 / 2.0))
            await command(f"/api/tickets/{number}/lock", headers)
            await asyncio.sleep(rng.expovariate(1 / 2.0))
            await command(f"/api/tickets/{number}/unlock", headers)
            i += 1

    await asyncio.gather(*(agent(a, headers) for a, headers in enumerate(agents)))
    return failures


async def steady(system: System, dsn: str, mails: list[bytes], args: argparse.Namespace) -> list[Row]:
    """Agents at work while mail flows: at the issue's rate, then at a rate this machine sustains."""
    limits = httpx.Limits(max_connections=args.agents + 10)
    async with httpx.AsyncClient(base_url=system.ports.url("gateway"), timeout=60, limits=limits) as http:
        token = (await http.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}
        agents = await make_agents(http, admin, args.agents)
        numbers = await ticket_numbers(http, admin, args.agents * 3)
        rows = []
        for rate in (args.rate, args.calm_rate):
            rows += await mail_and_agents(system, dsn, mails, http, agents, numbers, rate, args.seconds)
    return rows


async def mail_and_agents(
    system: System, dsn: str, mails: list[bytes], http: httpx.AsyncClient, agents: list[dict[str, str]],
    numbers: list[str], rate: int, seconds: int,
) -> list[Row]:  # fmt: skip
    accepted: dict[str, float] = {}
    sending = threading.Event()
    sending.set()
    mail_samples: list[float] = []
    command_samples: list[float] = []

    def send() -> None:
        try:
            smtp_steady(system.ports.smtp, mails, rate, seconds, f"lat-{uuid.uuid4().hex[:6]}", accepted)
        finally:
            sending.clear()

    started = time.perf_counter()
    follower = asyncio.create_task(follow_mail(dsn, accepted, sending, mail_samples))
    agents_done = asyncio.create_task(working_agents(http, agents, numbers, started + seconds, command_samples))
    await asyncio.to_thread(send)
    failures = await agents_done
    commands_per_second = len(command_samples) / max(time.perf_counter() - started, 1e-9)
    await follower
    mail_p99 = percentile(mail_samples, 0.99) if mail_samples else float("inf")
    command_p99 = percentile(command_samples, 0.99) if command_samples else float("inf")
    return [
        Row(f"mail latency at {rate} mails/s (250 → article)", latency_figure(mail_samples),
            "p99 ≤ 1 s", mail_p99 <= 1000),
        Row(f"lock/unlock via gateway, {len(agents)} agents, {rate} mails/s",
            f"{latency_figure(command_samples)}, {commands_per_second:.0f} cmd/s, {failures} failed",
            "p99 ≤ 30 ms", command_p99 <= 30),
    ]  # fmt: skip


# --------------------------------------------------------------------------- replay and memory


async def replay(system: System) -> list[Row]:
    async with httpx.AsyncClient(base_url=system.ports.url("gateway"), timeout=600) as http:
        token = (await http.post("/api/login", json={"username": ADMIN[0], "password": ADMIN[1]})).json()["token"]
        admin = {"Authorization": f"Bearer {token}"}
        started = time.perf_counter()
        job = (await http.post("/api/admin/rebuild", json={"swap": True}, headers=admin)).raise_for_status().json()
        while True:
            status = (await http.get(f"/api/admin/rebuild/{job['job_id']}", headers=admin)).json()
            if status["state"] != "running":
                break
            await asyncio.sleep(0.2)
    seconds = time.perf_counter() - started
    events = int(status.get("events") or 0)
    outcome = f"{status['state']}, digests match: {status.get('matches')}"
    figure = f"{events / seconds:.0f} events/s ({events} events, {outcome})"
    return [Row("replay: rebuild every read model from the log", figure)]


def memory(system: System) -> list[Row]:
    rows = []
    for name, child in system.children.items():
        rss, peak = rss_mb(child.pid)
        rows.append(Row(f"memory {name}", f"{rss:.0f} MB now, {peak:.0f} MB peak", "≤ 200 MB", peak <= 200))
    return rows


def print_table(rows: list[Row]) -> None:
    width = max(len(r.measure) for r in rows)
    figure_width = max(len(r.figure) for r in rows)
    print()
    print(f"{'measure':<{width}}  {'figure':<{figure_width}}  {'target':<12}  met")
    print("-" * (width + figure_width + 22))
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "NO")
        print(f"{r.measure:<{width}}  {r.figure:<{figure_width}}  {r.target:<12}  {met}")


def main(args: argparse.Namespace) -> None:
    with local_infra() as infra:
        prefix = f"bench_{uuid.uuid4().hex[:6]}_"
        ports = Ports(*(free_port() for _ in range(6)))
        system = System(
            pg_base=infra.pg_base, bootstrap=infra.bootstrap, ports=ports, smtp_relay=("127.0.0.1", free_port()),
            logs=infra.folder / "logs", admin=ADMIN, database_prefix=prefix,
            extra_env={"LOG_LEVEL": "WARNING", "CLIENT_RATE_PER_MINUTE": "1000000"},
        )  # fmt: skip
        for name in SERVICE_NAMES:
            asyncio.run(ensure_database(f"{infra.pg_base}/{prefix}{name}"))
        try:
            system.start_all()
            load_demo_data({name: ports.url(name) for name in SERVICE_NAMES})
            mails = corpus_mails()
            tickets_dsn = f"{infra.pg_base}/{prefix}tickets"
            rows = asyncio.run(burst(system, tickets_dsn, mails, args.mails))
            rows += asyncio.run(steady(system, tickets_dsn, mails, args))
            rows += asyncio.run(replay(system))
            rows += memory(system)
            print_table(rows)
        finally:
            system.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--calm-rate", type=int, default=30, help="a second mail rate, one this machine sustains")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--agents", type=int, default=100)
    main(parser.parse_args())
