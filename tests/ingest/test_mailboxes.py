"""Mailbox polling against a real Dovecot (IMAP and POP3), real PostgreSQL and a real broker."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

import services.ingest.app as ingest_app
from services.ingest.app import create_app
from services.ingest.intake import accept_mail
from services.ingest.mailboxes import MailboxAccount
from services.ingest.pollers import ImapSession
from services.ingest.settings import IngestSettings
from shared.settings import ServiceSettings
from tests.conftest import eventually, serving
from tests.ingest import dovecot
from tests.ingest.dovecot import Dovecot
from tests.ingest.kit import received_events

pytestmark = [
    pytest.mark.timeout(300),
    pytest.mark.skipif(dovecot.available() is not None, reason=f"no Dovecot: {dovecot.available()}"),
]

PASSWORDS = {"support": "s3cret-imap", "pop": "s3cret-pop", "ops": "s3cret-ops"}


def mail(n: int, extra: str = "", body: str = "Hello, my printer is on fire.") -> bytes:
    return (
        f"From: Customer {n} <c{n}@example.org>\r\nTo: support@firstline.example\r\nSubject: Help {n}\r\n"
        f"Message-ID: <mbox-{n}@example.org>\r\n{extra}\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def server() -> Iterator[Dovecot]:
    folder = dovecot.make_folder()
    instance = Dovecot(folder)
    instance.start(PASSWORDS)
    try:
        yield instance
    finally:
        instance.stop()
        shutil.rmtree(folder, ignore_errors=True)


def account(server: Dovecot, user: str = "support", **overrides: Any) -> MailboxAccount:
    protocol = overrides.get("protocol", "imap")
    fields: dict[str, Any] = {
        "name": user, "protocol": protocol, "host": "127.0.0.1", "tls": "none", "user": user,
        "port": server.imap_port if protocol == "imap" else server.pop3_port,
        "password": PASSWORDS[user], "interval_seconds": 0.2, "timeout_seconds": 5,
    }  # fmt: skip
    return MailboxAccount(**(fields | overrides))


def ingest_settings(settings: ServiceSettings, *accounts: MailboxAccount, **overrides: Any) -> IngestSettings:
    base = settings.model_dump(exclude={"service_name", "http_port"})
    return IngestSettings(**base, smtp_enabled=False, mailboxes=list(accounts), **overrides)


async def taken(settings: IngestSettings, account_name: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await conn.fetch(
            "select key, mail_id, outcome, settled from mailbox_messages where account = $1 order by key", account_name
        )
    finally:
        await conn.close()


async def raw_of(client: httpx.AsyncClient, mail_id: str) -> bytes:
    return (await client.get(f"/mails/{mail_id}/raw")).content


async def test_imap_mails_are_taken_once_and_deleted_only_after_commit(
    settings: ServiceSettings, server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    mails = [mail(n) for n in range(5)]
    for raw in mails:
        server.deliver("support", raw)
    failures = {"accept": 1, "settle": 1}
    seen: dict[str, list[str]] = {}
    settle = ImapSession.settle

    async def flaky_accept(*args: Any, **kwargs: Any) -> Any:
        if failures["accept"]:
            failures["accept"] -= 1
            seen["when accept failed"] = [flags for _, flags in server.messages("support")]
            raise ConnectionError("database went away")
        return await accept_mail(*args, **kwargs)

    def flaky_settle(self: ImapSession, keys: list[str]) -> None:
        if failures["settle"]:
            failures["settle"] -= 1
            seen["when settle failed"] = [flags for _, flags in server.messages("support")]
            raise OSError("connection lost before the delete")
        settle(self, keys)

    monkeypatch.setattr(ingest_app, "accept_mail", flaky_accept)
    monkeypatch.setattr(ImapSession, "settle", flaky_settle)
    s = ingest_settings(settings, account(server))
    async with serving(create_app(s)) as client:
        await eventually(lambda: asyncio.sleep(0, not server.messages("support")), timeout=30)
        rows = await taken(s, "support")
        assert [r["outcome"] for r in rows] == ["accepted"] * 5 and all(r["settled"] for r in rows)
        assert sorted([await raw_of(client, r["mail_id"]) for r in rows]) == sorted(mails)
        events = await received_events(s, 6, timeout=5)  # while the relay runs
    assert failures == {"accept": 0, "settle": 0}
    untouched = [""] * 5  # all five still there, not even flagged \Seen
    assert seen == {"when accept failed": untouched, "when settle failed": untouched}
    assert len(events) == 5 and {e.source for e in events} == {"imap"}
    assert {e.mail.subject for e in events} == {f"Help {n}" for n in range(5)}

    # A restart, one mail delivered again (same bytes) and a new one: one new event.
    server.deliver("support", mails[0])
    server.deliver("support", mail(99))
    async with serving(create_app(s)):
        await eventually(lambda: asyncio.sleep(0, not server.messages("support")), timeout=30)
        events = await received_events(s, 7, timeout=5)  # while the relay runs: the new mail is published
    assert len(events) == 6, "a mail seen before is announced once"
    assert [r["outcome"] for r in await taken(s, "support")].count("duplicate") == 1


async def test_imap_keep_mode_flags_seen_and_a_restart_takes_nothing_twice(
    settings: ServiceSettings, server: Dovecot
) -> None:
    for n in range(3):
        server.deliver("support", mail(n))
    s = ingest_settings(settings, account(server, delete_after=False))
    async with serving(create_app(s)):
        await eventually(all_seen(server, 3), timeout=30)
    assert len(await received_events(s, 4, timeout=2)) == 3

    # Even with the bookkeeping lost, the mails still on the server are not announced again.
    conn = await asyncpg.connect(s.database_url)
    await conn.execute("delete from mailbox_messages")
    await conn.close()
    server.deliver("support", mail(3))
    async with serving(create_app(s)):
        await eventually(all_seen(server, 4), timeout=30)
        await eventually(lambda: _count_for(s, "support", 4), timeout=30)
    assert len(await received_events(s, 5, timeout=2)) == 4
    outcomes = sorted(r["outcome"] for r in await taken(s, "support"))
    assert outcomes == ["accepted", "duplicate", "duplicate", "duplicate"]


def all_seen(server: Dovecot, n: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        found = server.messages("support")
        return len(found) == n and all("S" in flags for _, flags in found)

    return check


async def _count_for(settings: IngestSettings, name: str, n: int) -> bool:
    return len(await taken(settings, name)) == n


async def test_imap_move_to_another_folder(settings: ServiceSettings, server: Dovecot) -> None:
    server.maildir("support", "Processed")
    for n in range(2):
        server.deliver("support", mail(n))
    s = ingest_settings(settings, account(server, delete_after=False, move_to="Processed"))
    async with serving(create_app(s)):
        await eventually(lambda: asyncio.sleep(0, len(server.messages("support", "Processed")) == 2), timeout=30)
    assert server.messages("support") == []
    assert len(await received_events(s, 3, timeout=2)) == 2


async def test_pop3_mails_are_taken_once_and_deleted(settings: ServiceSettings, server: Dovecot) -> None:
    long_line = "word " * 1000  # one 5000-byte line: poplib's default limit is 2048
    mails = [mail(n) for n in range(3)] + [mail(3, body=long_line)]
    for raw in mails:
        server.deliver("pop", raw)
    s = ingest_settings(settings, account(server, "pop", protocol="pop3"))
    async with serving(create_app(s)) as client:
        await eventually(lambda: asyncio.sleep(0, not server.messages("pop")), timeout=30)
        rows = await taken(s, "pop")
        assert len(rows) == 4 and all(r["settled"] for r in rows)
        assert sorted([await raw_of(client, r["mail_id"]) for r in rows]) == sorted(mails)
    events = await received_events(s, 5, timeout=2)
    assert len(events) == 4 and {e.source for e in events} == {"pop3"}

    server.deliver("pop", mails[1])
    async with serving(create_app(s)):
        await eventually(lambda: asyncio.sleep(0, not server.messages("pop")), timeout=30)
    assert len(await received_events(s, 5, timeout=2)) == 4


async def test_pop3_keep_mode_leaves_mails_and_takes_them_once(settings: ServiceSettings, server: Dovecot) -> None:
    for n in range(2):
        server.deliver("pop", mail(n))
    s = ingest_settings(settings, account(server, "pop", protocol="pop3", delete_after=False))
    for _ in range(2):  # two runs: the second finds both mails in the bookkeeping
        app = create_app(s)
        async with serving(app):
            await eventually(lambda app=app: polled(app), timeout=30)
        assert len(server.messages("pop")) == 2
    assert [r["outcome"] for r in await taken(s, "pop")] == ["accepted", "accepted"]
    assert len(await received_events(s, 3, timeout=2)) == 2


async def polled(app: Any) -> bool:
    """Every account of the app has completed a poll."""
    return all(p.status.last_success is not None for p in app.state.service.pollers)


class Lines(logging.Handler):
    """Keeps log lines (the service's logging setup replaces the root handlers, pytest's too)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


async def test_failing_accounts_are_reported_and_retried_without_stopping_the_service(
    settings: ServiceSettings, server: Dovecot
) -> None:
    wrong = account(server, name="wrong", password="not-the-password")
    down = account(server, "pop", name="down", protocol="pop3", port=1)
    s = ingest_settings(settings, wrong, down, account(server, "ops"))
    server.deliver("ops", mail(1))
    lines = Lines()
    logging.getLogger("services.ingest.pollers").addHandler(lines)
    try:
        async with serving(create_app(s)) as client:

            async def unready() -> dict[str, str] | None:
                answer = await client.get("/readyz")
                checks = answer.json()["checks"]
                failing = "auth" in checks["mailbox:wrong"] and "connect" in checks["mailbox:down"]
                return checks if answer.status_code == 503 and failing else None

            checks = await eventually(unready, timeout=30)
            assert checks["mailbox:ops"] == "ok"
            assert (await client.post("/mail", content=mail(7))).status_code == 202
            await eventually(lambda: asyncio.sleep(0, not server.messages("ops")), timeout=30)
            metrics = (await client.get("/metrics")).text
            assert 'firstline_mailbox_errors_total{account="wrong",kind="auth"}' in metrics
            assert 'firstline_mailbox_up{account="down"} 0.0' in metrics
            assert 'firstline_mailbox_up{account="ops"} 1.0' in metrics
    finally:
        logging.getLogger("services.ingest.pollers").removeHandler(lines)
    logged = "\n".join(lines.lines)
    assert "mailbox wrong" in logged and "mailbox down" in logged
    assert "not-the-password" not in logged and "not-the-password" not in repr(s)


async def test_control_headers_count_from_a_trusted_mailbox_only(settings: ServiceSettings, server: Dovecot) -> None:
    control = "X-Firstline-Queue: Press\r\nX-OTRS-Priority: 5 very high\r\nX-Firstline-Trusted-Queue: Forged\r\n"
    server.deliver("ops", mail(1, control))
    server.deliver("support", mail(2, control))
    s = ingest_settings(settings, account(server, "ops", trusted=True), account(server, "support"))
    async with serving(create_app(s)):
        await eventually(lambda: asyncio.sleep(0, not server.messages("ops") and not server.messages("support")))
    by_subject = {e.mail.subject: e.mail.headers for e in await received_events(s, 2)}
    trusted, untrusted = by_subject["Help 1"], by_subject["Help 2"]
    assert trusted["x-firstline-trusted"] == "imap:ops"
    assert trusted["x-firstline-trusted-queue"] == "Press"
    assert trusted["x-firstline-trusted-otrs-priority"] == "5 very high"
    assert not [k for k in untrusted if k.startswith(("x-firstline", "x-otrs"))]
    assert "x-firstline-queue" not in trusted and "x-otrs-priority" not in trusted


async def test_a_password_file_is_read_at_login(settings: ServiceSettings, server: Dovecot, tmp_path: Any) -> None:
    secret = tmp_path / "ops-password"
    secret.write_text(PASSWORDS["ops"] + "\n")
    server.deliver("ops", mail(1))
    s = ingest_settings(settings, account(server, "ops", password=None, password_file=secret))
    async with serving(create_app(s)):
        await eventually(lambda: asyncio.sleep(0, not server.messages("ops")), timeout=30)
    assert len(await received_events(s, 1)) == 1
