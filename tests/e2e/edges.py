"""Helpers for tests/e2e/test_edges.py: raw SMTP over a socket, clients bound to a loopback
address of their own, ingest's counters, and schemathesis run against the live gateway.

Every helper talks to the running system over sockets only. Attacks come from their own
loopback address (127.0.0.0/8 is all loopback on Linux) so that per-client limits they trip
(login failures, SMTP connections) never lock out the other tests, which use 127.0.0.1.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from requests.adapters import HTTPAdapter
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.conftest import Running

# ----------------------------------------------------------------------------------- SMTP


class RawSmtp:
    """An SMTP client on a bare socket: sends exactly the bytes given, reads exactly the replies."""

    def __init__(self, port: int, source: str = "127.0.0.1", timeout: float = 60) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
        self.file = self.sock.makefile("rb")

    def __enter__(self) -> RawSmtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self.file.close()
        finally:
            self.sock.close()

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply; (0, "") if the server closed the connection."""
        lines: list[str] = []
        while True:
            line = self.file.readline()
            if not line:
                return (0, "\n".join(lines))
            lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
            if line[3:4] != b"-":
                return int(lines[-1][:3]), "\n".join(lines)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def start(self, sender: str = "edges@customer.example") -> None:
        """Greeting, EHLO and MAIL FROM, each answered as expected."""
        assert self.reply()[0] == 220
        assert self.cmd("EHLO edges.example")[0] == 250
        assert self.cmd(f"MAIL FROM:<{sender}>")[0] == 250


def mail_bytes(subject: str, body: bytes = b"Hello, a question about my account.\r\n") -> bytes:
    head = (
        f"From: Edge Case <edges@customer.example>\r\nTo: info@firstline.example\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{abs(hash(subject))}.{len(body)}@customer.example>\r\n\r\n"
    )
    return head.encode() + body


def ingest_counter(running: Running, name: str, **labels: str) -> float:
    """A counter of ingest's /metrics (summed over the label values not given)."""
    text = httpx.get(f"{running.url('ingest')}/metrics", timeout=10).text
    total = 0.0
    for match in re.finditer(rf"^{name}\{{([^}}]*)\}} (\S+)$", text, re.MULTILINE):
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


# ----------------------------------------------------------------------------------- HTTP


def client_from(running: Running, source: str, token: str | None = None) -> httpx.Client:
    """A gateway client whose connections come from the loopback address ``source``."""
    client = httpx.Client(
        base_url=running.url("gateway"), timeout=30, transport=httpx.HTTPTransport(local_address=source)
    )
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


class _SourceAddressAdapter(HTTPAdapter):
    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(source: str) -> requests.Session:
    """A requests session (what schemathesis sends with) bound to the loopback address ``source``."""
    session = requests.Session()
    session.mount("http://", _SourceAddressAdapter(source))
    return session


# ----------------------------------------------------------------------------------- schemathesis

# Not `negative_data_rejection`: pydantic's lax mode accepts more than the OpenAPI says (`at=0`
# is a datetime, "5" an int), which is no bug; invalid input still must not cause a 5xx.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def gateway_schema(running: Running) -> Any:
    """The gateway's OpenAPI, as the running gateway serves it."""
    return schemathesis.openapi.from_url(f"{running.url('gateway')}/openapi.json")


def fuzz(
    schema: Any,
    *,
    token: str,
    session: requests.Session,
    mode: GenerationMode,
    max_examples: int,
    path_parameters: dict[str, str] | None = None,
) -> Iterator[tuple[str, Callable[[], None]]]:
    """(label, run) per operation: ``run()`` generates up to ``max_examples`` cases, sends each to
    the gateway with the bearer ``token`` and raises on the first failed check.

    ``path_parameters`` fixes path parameters by name where an operation has them (say a real
    ticket number, so commands reach a real ticket instead of a 404).
    """
    for result in schema.get_all_operations():
        operation = result.ok()
        fixed = {k: v for k, v in (path_parameters or {}).items() if "{" + k + "}" in operation.path} or None
        strategy = operation.as_strategy(generation_mode=mode, path_parameters=fixed)

        @settings(
            max_examples=max_examples,
            deadline=timedelta(seconds=10),
            database=None,
            phases=[Phase.explicit, Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run_case(case: Any) -> None:
            case.call_and_validate(
                session=session, headers={"Authorization": f"Bearer {token}"}, checks=CHECKS, timeout=30
            )

        yield operation.label, run_case
