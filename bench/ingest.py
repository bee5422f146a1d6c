"""Ingest figures: mails/s through POST /mail and SMTP, p50/p99 time to 250 at a steady rate, memory.

Starts the ingest service as its own process (as in production) against DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS or a throwaway PostgreSQL and broker. Mails come from the shared
corpus, each made unique by an added header so deduplication does not flatter the figures.

    python -m bench.ingest [--mails 2000] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from bench.infra import local_infra
from shared.db import ensure_database
from shared.devinfra import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("FIRSTLINE_CORPUS", ROOT.parent / "shared" / "corpus"))


def corpus_mails(limit: int = 500) -> list[bytes]:
    files = sorted(CORPUS.glob("ham/*.eml"))[: limit // 2] + sorted(CORPUS.glob("spam/*.eml"))[: limit // 2]
    mails = [f.read_bytes() for f in files]
    return mails or [b"From: a@example.org\r\nTo: info@firstline.example\r\nSubject: hi\r\n\r\nhello\r\n"]


def unique(mail: bytes, n: int, tag: str) -> bytes:
    return f"X-Bench: {tag}-{n}\r\n".encode() + mail


def rss_mb(pid: int) -> tuple[float, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


async def _post_raw(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> int:
    """One POST /mail on a keep-alive connection; returns the status code."""
    head = f"POST /mail HTTP/1.1\r\nHost: bench\r\nContent-Type: message/rfc822\r\nContent-Length: {len(body)}\r\n\r\n"
    writer.write(head.encode() + body)
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return status


async def bench_http_lean(port: int, mails: list[bytes], n: int, concurrency: int = 16) -> float:
    """POST /mail from a minimal HTTP/1.1 client: measures the service, not the load generator.

    httpx costs about as much CPU per request as the service itself; on a 2-core box shared with
    the service, PostgreSQL and the broker, it would halve the figure.
    """
    queue = list(range(n))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                i = queue.pop()
                status = await _post_raw(reader, writer, unique(mails[i % len(mails)], i, "lean"))
                if status != 202:
                    raise RuntimeError(f"POST /mail answered {status}")
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


async def bench_http(port: int, mails: list[bytes], n: int, concurrency: int = 16) -> float:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            response = await client.post("/mail", content=unique(mails[i % len(mails)], i, "http"))
            response.raise_for_status()

    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return n / (time.perf_counter() - started)


def bench_smtp(port: int, mails: list[bytes], n: int, connections: int = 8) -> float:
    def sender(start: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            for i in range(start, n, connections):
                client.sendmail(
                    "bench@example.org", ["info@firstline.example"], unique(mails[i % len(mails)], i, "smtp")
                )

    threads = [threading.Thread(target=sender, args=(c,)) for c in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return n / (time.perf_counter() - started)


def bench_smtp_latency(port: int, mails: list[bytes], rate: int, seconds: int) -> list[float]:
    """Send at ``rate`` mails/s over 4 connections; the time from DATA's end to the 250, in ms."""
    latencies: list[float] = []
    lock = threading.Lock()
    connections = 4
    interval = connections / rate

    def sender(offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
            next_at = time.perf_counter() + offset * interval / connections
            for i in range(offset, rate * seconds, connections):
                time.sleep(max(0.0, next_at - time.perf_counter()))
                started = time.perf_counter()
                client.sendmail(
                    "bench@example.org", ["info@firstline.example"], unique(mails[i % len(mails)], i, "lat")
                )
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000)
                next_at += interval

    threads = [threading.Thread(target=sender, args=(c,)) for c in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sorted(latencies)


def main(n: int, rate: int) -> None:
    with local_infra() as infra:
        dsn = infra.database("bench_ingest")
        asyncio.run(ensure_database(dsn))
        http_port, smtp_port = free_port(), free_port()
        env = dict(os.environ, DATABASE_URL=dsn, KAFKA_BOOTSTRAP_SERVERS=infra.bootstrap, HTTP_PORT=str(http_port),
                   SMTP_PORT=str(smtp_port), LOG_LEVEL="WARNING", CLIENT_RATE_PER_MINUTE="1000000")  # fmt: skip
        log = open(infra.folder / "ingest.log", "wb")  # noqa: SIM115
        child = subprocess.Popen([sys.executable, "-m", "services.ingest"], cwd=ROOT, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)  # fmt: skip
        try:
            wait_for_port(http_port, 60)
            wait_for_port(smtp_port, 60)
            mails = corpus_mails()
            size = statistics.mean(len(m) for m in mails)
            print(f"ingest as its own process; corpus mails of {size / 1024:.1f} KiB on average; {os.cpu_count()} CPUs")
            lean = asyncio.run(bench_http_lean(http_port, mails, n))
            print(f"POST /mail, 16 connections (lean)     : {lean:7.0f} mails/s")
            print(
                f"POST /mail, 16 concurrent clients     : {asyncio.run(bench_http(http_port, mails, n)):7.0f} mails/s"
                " (httpx, which costs about as much CPU as the service)"
            )
            print(f"SMTP, 8 connections (smtplib)         : {bench_smtp(smtp_port, mails, n):7.0f} mails/s")
            latencies = bench_smtp_latency(smtp_port, mails, rate, seconds=10)
            p50 = statistics.median(latencies)
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(f"SMTP time to 250 at {rate} mails/s        : p50 {p50:6.1f} ms   p99 {p99:6.1f} ms")
            rss, peak = rss_mb(child.pid)
            print(f"ingest memory                         : {rss:7.0f} MB now, {peak:.0f} MB peak")
        finally:
            child.terminate()
            child.wait(30)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=100)
    args = parser.parse_args()
    main(args.mails, args.rate)
