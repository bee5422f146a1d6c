"""The mailbox door: IMAP and POP3 sessions (blocking stdlib clients, run in worker threads) and
one polling loop per account in the service's event loop.

One poll is one session: list the server's keys, skip the ones taken before (bookkeeping in
``mailbox_messages``), fetch each new mail and hand it to ``accept_mail``, which returns only once
the raw bytes and the outbox row are committed; only then is the mail recorded as taken, and at
the end of the session the taken mails are deleted, moved or flagged on the server. A crash at
any point leaves either a mail that is fetched again (and deduplicated by sha256) or one that is
settled on the server in the next poll; never a lost or a doubled mail.

Errors (login refused, server down, TLS, a missing password file) are logged with the account's
name, counted in ``firstline_mailbox_errors_total``, shown in /readyz and retried with backoff.
"""

from __future__ import annotations

import asyncio
import imaplib
import logging
import poplib
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import asyncpg
from prometheus_client import Counter, Gauge

from services.ingest.intake import Accepted, MailRefused
from services.ingest.mailboxes import (
    MailboxAccount,
    MailboxStatus,
    backoff_seconds,
    imap_key,
    imap_uid,
    plan_poll,
)
from services.ingest.store import imap_high_water, known_keys, mark_settled, record_taken

logger = logging.getLogger(__name__)

# poplib refuses lines over 2048 bytes, but real mail has longer ones (the SMTP door takes them).
poplib._MAXLINE = 1024 * 1024  # type: ignore[attr-defined]  # noqa: SLF001

MAILBOX_POLLS = Counter("firstline_mailbox_polls_total", "Mailbox polls", ["account", "outcome"])
MAILBOX_ERRORS = Counter("firstline_mailbox_errors_total", "Failed mailbox polls by cause", ["account", "kind"])
MAILBOX_MAILS = Counter("firstline_mailbox_mails_total", "Mails taken from mailboxes", ["account", "outcome"])
MAILBOX_UP = Gauge("firstline_mailbox_up", "1 if the account's last poll succeeded", ["account"])
MAILBOX_LAST_SUCCESS = Gauge(
    "firstline_mailbox_last_success_timestamp_seconds", "When the account was last polled successfully", ["account"]
)

Accept = Callable[..., Awaitable[Accepted]]


class MailboxError(Exception):
    """A failed poll, with a one-word cause for the metric (``auth``, ``folder``, ``config``...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Session(Protocol):
    """One logged-in session on a mailbox (blocking; called through ``asyncio.to_thread``)."""

    uidvalidity: int

    def list_keys(self, after_uid: int) -> list[str]: ...
    def fetch(self, key: str) -> bytes | None: ...
    def settle(self, keys: list[str]) -> None: ...
    def close(self) -> None: ...


def _text(value: Any) -> str:
    """A server's answer as text for a log line (bytes, lists of bytes, exceptions)."""
    if isinstance(value, list | tuple):
        return " ".join(_text(v) for v in value if v is not None)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _tls_context(account: MailboxAccount) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not account.tls_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _quoted(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- IMAP


class ImapSession:
    def __init__(self, account: MailboxAccount, password: str) -> None:
        self.account = account
        self.conn = self._connect()
        try:
            self.conn.login(account.user, password)
        except imaplib.IMAP4.error as exc:
            self.close()
            raise MailboxError("auth", f"login refused: {_text(exc.args[0] if exc.args else exc)}") from None
        self.capabilities = self._capabilities()
        typ, data = self.conn.select(_quoted(account.folder))
        if typ != "OK":
            self.close()
            raise MailboxError("folder", f"cannot open folder {account.folder!r}: {_text(data)}")
        self.uidvalidity = int(self.conn.response("UIDVALIDITY")[1][0] or 0)

    def _connect(self) -> imaplib.IMAP4:
        a = self.account
        if a.tls == "ssl":
            return imaplib.IMAP4_SSL(a.host, a.server_port, ssl_context=_tls_context(a), timeout=a.timeout_seconds)
        conn = imaplib.IMAP4(a.host, a.server_port, timeout=a.timeout_seconds)
        if a.tls == "starttls":
            conn.starttls(_tls_context(a))
        return conn

    def _capabilities(self) -> frozenset[str]:
        typ, data = self.conn.capability()
        return frozenset(_text(data).upper().split()) if typ == "OK" else frozenset()

    def _ok(self, answer: tuple[str, Any], what: str) -> Any:
        typ, data = answer
        if typ != "OK":
            raise MailboxError("protocol", f"{what} failed: {_text(data)}")
        return data

    def list_keys(self, after_uid: int) -> list[str]:
        """Keys of the folder's mails, oldest first; only UIDs above ``after_uid`` when it is set."""
        criteria = ("UID", f"{after_uid + 1}:*") if after_uid else ("ALL",)
        data = self._ok(self.conn.uid("SEARCH", *criteria), "UID SEARCH")
        uids = sorted(int(u) for u in _text(data[0] if data else b"").split())
        return [imap_key(self.uidvalidity, uid) for uid in uids if uid > after_uid]

    def fetch(self, key: str) -> bytes | None:
        """The mail's bytes, without setting \\Seen (BODY.PEEK); None if it vanished meanwhile."""
        data = self._ok(self.conn.uid("FETCH", str(imap_uid(key)), "(BODY.PEEK[])"), "UID FETCH")
        return next((item[1] for item in data if isinstance(item, tuple) and len(item) == 2), None)

    def settle(self, keys: list[str]) -> None:
        uids = ",".join(str(imap_uid(k)) for k in keys)
        disposal = self.account.disposal
        if disposal == "seen":
            self._ok(self.conn.uid("STORE", uids, "+FLAGS.SILENT", r"(\Seen)"), "UID STORE")
        elif disposal == "move" and "MOVE" in self.capabilities:
            self._ok(self.conn.uid("MOVE", uids, _quoted(self.account.move_to or "")), "UID MOVE")
        else:
            if disposal == "move":
                self._ok(self.conn.uid("COPY", uids, _quoted(self.account.move_to or "")), "UID COPY")
            self._ok(self.conn.uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted \Seen)"), "UID STORE")
            self._expunge(uids)

    def _expunge(self, uids: str) -> None:
        """Only our mails where the server can (UIDPLUS); else the folder, as any mail client does."""
        if "UIDPLUS" in self.capabilities:
            self._ok(self.conn.uid("EXPUNGE", uids), "UID EXPUNGE")
        else:
            self._ok(self.conn.expunge(), "EXPUNGE")

    def close(self) -> None:
        try:
            if self.conn.state == "SELECTED":
                self.conn.close()
            self.conn.logout()
        except (imaplib.IMAP4.error, OSError):
            pass


# --------------------------------------------------------------------------- POP3


class Pop3Session:
    uidvalidity = 0

    def __init__(self, account: MailboxAccount, password: str) -> None:
        self.account = account
        self.conn = self._connect()
        self.numbers: dict[str, int] = {}
        self.open = True
        try:
            self.conn.user(account.user)
            self.conn.pass_(password)
        except poplib.error_proto as exc:
            self.close()
            raise MailboxError("auth", f"login refused: {_text(exc.args[0] if exc.args else exc)}") from None

    def _connect(self) -> poplib.POP3:
        a = self.account
        if a.tls == "ssl":
            return poplib.POP3_SSL(a.host, a.server_port, context=_tls_context(a), timeout=a.timeout_seconds)
        conn = poplib.POP3(a.host, a.server_port, timeout=a.timeout_seconds)
        if a.tls == "starttls":
            conn.stls(_tls_context(a))
        return conn

    def list_keys(self, after_uid: int) -> list[str]:
        """UIDLs in message-number order (oldest first)."""
        _, lines, _ = self.conn.uidl()
        for line in lines:
            number, _, uidl = _text(line).strip().partition(" ")
            self.numbers[uidl.strip()] = int(number)
        return sorted(self.numbers, key=self.numbers.__getitem__)

    def fetch(self, key: str) -> bytes | None:
        number = self.numbers.get(key)
        if number is None:
            return None
        _, lines, _ = self.conn.retr(number)
        return b"\r\n".join(lines) + b"\r\n"

    def settle(self, keys: list[str]) -> None:
        """DELE each, then QUIT: POP3 deletes only when the session ends cleanly."""
        for key in keys:
            if key in self.numbers:
                self.conn.dele(self.numbers[key])
        self.conn.quit()
        self.open = False

    def close(self) -> None:
        if not self.open:
            return
        self.open = False
        try:
            self.conn.quit()
        except (poplib.error_proto, OSError):
            self.conn.close()


def open_session(account: MailboxAccount) -> Session:
    """Connect and log in (blocking)."""
    try:
        password = account.secret()
    except OSError as exc:
        raise MailboxError("config", f"cannot read password_file: {exc.strerror or exc}") from None
    if account.protocol == "imap":
        return ImapSession(account, password)
    return Pop3Session(account, password)


def classify(exc: BaseException) -> tuple[str, str]:
    """(kind, message) of a failed poll, for the metric and the log line."""
    if isinstance(exc, MailboxError):
        return exc.kind, str(exc)
    if isinstance(exc, ssl.SSLError):
        return "tls", str(exc)
    if isinstance(exc, imaplib.IMAP4.error | poplib.error_proto):
        return "protocol", _text(exc.args[0] if exc.args else exc)
    if isinstance(exc, OSError):
        return "connect", f"{type(exc).__name__}: {exc}"
    if isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError):
        return "database", f"{type(exc).__name__}: {exc}"
    return "internal", f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- the loop


class MailboxPoller:
    def __init__(
        self,
        account: MailboxAccount,
        pool: asyncpg.Pool,
        accept: Accept,
        *,
        backoff_cap: float = 900.0,
        connect: Callable[[MailboxAccount], Session] = open_session,
    ) -> None:
        self.account = account
        self.pool = pool
        self.accept = accept
        self.backoff_cap = backoff_cap
        self.connect = connect
        self.status = MailboxStatus()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set; a poll in progress finishes the mail in hand first."""
        logger.info("mailbox %s: polling %s every %ss", self.account.name, self.account.describe(),
                    self.account.interval_seconds)  # fmt: skip
        while not stop.is_set():
            delay = await self.poll_and_report(stop)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def poll_and_report(self, stop: asyncio.Event) -> float:
        """One poll; returns the seconds to wait before the next."""
        name = self.account.name
        try:
            more = await self.poll_locked(stop)
        except Exception as exc:
            kind, message = classify(exc)
            self.status.failed(f"{kind}: {message}")
            MAILBOX_POLLS.labels(name, "error").inc()
            MAILBOX_ERRORS.labels(name, kind).inc()
            MAILBOX_UP.labels(name).set(0)
            delay = backoff_seconds(self.status.failures, self.account.interval_seconds, self.backoff_cap)
            logger.warning("mailbox %s (%s): poll failed (%s: %s); retrying in %.1fs",
                           name, self.account.describe(), kind, message, delay)  # fmt: skip
            return delay
        if self.status.failures:
            logger.info("mailbox %s: polled again after %d failed polls", name, self.status.failures)
        self.status.succeeded(time.time())
        MAILBOX_POLLS.labels(name, "ok").inc()
        MAILBOX_UP.labels(name).set(1)
        MAILBOX_LAST_SUCCESS.labels(name).set(self.status.last_success or 0)
        return 0.0 if more else self.account.interval_seconds

    async def poll_locked(self, stop: asyncio.Event) -> bool:
        """Poll unless another replica is polling this account now."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval("select pg_try_advisory_lock($1)", self.account.lock_key):
                return False
            try:
                return await self.poll_once(stop)
            finally:
                await conn.execute("select pg_advisory_unlock($1)", self.account.lock_key)

    async def poll_once(self, stop: asyncio.Event) -> bool:
        """One session: take the new mails, settle the taken ones. True if more are waiting."""
        session = await asyncio.to_thread(self.connect, self.account)
        try:
            return await self._work(session, stop)
        finally:
            await asyncio.to_thread(session.close)

    async def _work(self, session: Session, stop: asyncio.Event) -> bool:
        name = self.account.name
        after = await imap_high_water(self.pool, name, session.uidvalidity) if self.account.disposal == "seen" else 0
        listed = await asyncio.to_thread(session.list_keys, after)
        known = await known_keys(self.pool, name, listed)
        plan = plan_poll(listed, known, self.account.max_per_poll)
        settle = list(plan.settle)
        for key in plan.fetch:
            if stop.is_set():
                break
            if await self._take(session, key):
                settle.append(key)
        if settle:
            await asyncio.to_thread(session.settle, settle)
            await mark_settled(self.pool, name, settle)
        return len(listed) - len(known) > len(plan.fetch)

    async def _take(self, session: Session, key: str) -> bool:
        """Fetch and accept one mail, then record it; True if the server side is still to do."""
        name = self.account.name
        raw = await asyncio.to_thread(session.fetch, key)
        if raw is None:
            return False
        trusted = self.account.source_label if self.account.trusted else None
        try:
            accepted = await self.accept(raw, source=self.account.protocol, trusted_source=trusted)
        except MailRefused as refused:
            logger.warning("mailbox %s: mail %s refused (%s); left on the server", name, key, refused)
            MAILBOX_MAILS.labels(name, "refused").inc()
            await record_taken(self.pool, name, key, None, f"refused: {refused.code}", settled=True)
            return False
        outcome = "duplicate" if accepted.duplicate else "accepted"
        MAILBOX_MAILS.labels(name, outcome).inc()
        keep = self.account.disposal == "keep"
        await record_taken(self.pool, name, key, accepted.mail_id, outcome, settled=keep)
        return not keep
