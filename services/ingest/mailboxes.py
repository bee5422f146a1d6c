"""Mailbox accounts ingest polls (OTRS's PostMaster mail accounts): configuration and pure decisions.

``MAILBOXES`` is a JSON list of accounts, ``MAILBOXES_FILE`` a file with the same list (both may
be used; names must be unique)::

    [{"name": "support", "protocol": "imap", "host": "imap.example.org", "port": 993, "tls": "ssl",
      "user": "support@example.org", "password_file": "/run/secrets/support-imap",
      "folder": "INBOX", "interval_seconds": 60, "trusted": false, "delete_after": true}]

``password`` (inline) or ``password_file`` (read at each login, so a rotated secret is picked
up; one trailing newline dropped). Neither is ever logged or shown.

What happens on the server once a mail is committed (never before):

* IMAP, ``delete_after`` (default): flagged ``\\Deleted`` and expunged;
* IMAP, ``move_to``: moved to that folder (``delete_after`` must then be false);
* IMAP, neither: flagged ``\\Seen`` and left where it is;
* POP3, ``delete_after``: ``DELE``; otherwise left on the server.

Mails already taken are recognised by their server key (IMAP ``UIDVALIDITY:UID``, POP3 UIDL),
recorded per account in ``mailbox_messages``; sha256 deduplication in ``accept_mail`` makes a
crash between commit and bookkeeping harmless too.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, model_validator

Protocol = Literal["imap", "pop3"]
Tls = Literal["none", "starttls", "ssl"]
Disposal = Literal["delete", "move", "seen", "keep"]

_DEFAULT_PORTS = {("imap", "ssl"): 993, ("imap", "none"): 143, ("imap", "starttls"): 143,
                  ("pop3", "ssl"): 995, ("pop3", "none"): 110, ("pop3", "starttls"): 110}  # fmt: skip


class MailboxAccount(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    protocol: Protocol = "imap"
    host: str
    port: int | None = None
    tls: Tls = "ssl"
    tls_verify: bool = True
    user: str
    password: SecretStr | None = None
    password_file: Path | None = None
    folder: str = "INBOX"
    interval_seconds: float = Field(default=60.0, gt=0)
    trusted: bool = False
    delete_after: bool = True
    move_to: str | None = None
    max_per_poll: int = Field(default=200, ge=1)
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> MailboxAccount:
        if (self.password is None) == (self.password_file is None):
            raise ValueError(f"mailbox {self.name}: give exactly one of password and password_file")
        if self.move_to and self.protocol != "imap":
            raise ValueError(f"mailbox {self.name}: move_to works with IMAP only")
        if self.move_to and self.delete_after:
            raise ValueError(f"mailbox {self.name}: move_to and delete_after exclude each other")
        return self

    @property
    def server_port(self) -> int:
        return self.port or _DEFAULT_PORTS[(self.protocol, self.tls)]

    @property
    def disposal(self) -> Disposal:
        """What is done on the server to a committed mail."""
        if self.delete_after:
            return "delete"
        if self.move_to:
            return "move"
        return "seen" if self.protocol == "imap" else "keep"

    @property
    def source_label(self) -> str:
        return f"{self.protocol}:{self.name}"

    @property
    def lock_key(self) -> int:
        """A 63-bit advisory-lock key: one replica at a time polls an account."""
        return int.from_bytes(hashlib.sha256(f"mailbox:{self.name}".encode()).digest()[:8], "big") >> 1

    def describe(self) -> str:
        return f"{self.protocol}://{self.user}@{self.host}:{self.server_port}/{self.folder}"

    def secret(self) -> str:
        """The password, read now (a secret file may be rotated). Raises OSError if unreadable."""
        if self.password is not None:
            return self.password.get_secret_value()
        assert self.password_file is not None
        text = self.password_file.read_text(encoding="utf-8")
        return text[:-1] if text.endswith("\n") else text


_ACCOUNTS = TypeAdapter(list[MailboxAccount])


def load_accounts(inline: list[MailboxAccount], file: Path | None) -> list[MailboxAccount]:
    """The accounts from ``MAILBOXES`` and ``MAILBOXES_FILE``; raises ValueError on a bad list."""
    accounts = list(inline)
    if file is not None:
        accounts += _ACCOUNTS.validate_python(json.loads(file.read_text(encoding="utf-8")))
    names = [a.name for a in accounts]
    if duplicated := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"mailbox names must be unique: {', '.join(duplicated)}")
    return accounts


def backoff_seconds(failures: int, interval: float, cap: float) -> float:
    """Wait after ``failures`` failed polls in a row: the interval, doubling, at most ``cap``."""
    if failures <= 0:
        return interval
    return min(max(cap, interval), interval * 2 ** min(failures - 1, 16))


@dataclass(frozen=True)
class Plan:
    """What one poll does with the keys the server listed."""

    fetch: list[str]  # new mails, oldest first, at most max_per_poll
    settle: list[str]  # taken earlier, not yet removed/flagged on the server


def plan_poll(listed: list[str], known: dict[str, bool], limit: int) -> Plan:
    """``known`` maps already-taken keys to whether the server side is settled."""
    fresh = [key for key in listed if key not in known]
    unsettled = [key for key in listed if key in known and not known[key]]
    return Plan(fetch=fresh[:limit], settle=unsettled)


def imap_key(uidvalidity: int, uid: int) -> str:
    return f"{uidvalidity}:{uid}"


def imap_uid(key: str) -> int:
    return int(key.rpartition(":")[2])


@dataclass
class MailboxStatus:
    """What /readyz and the logs say about one account."""

    failures: int = 0
    last_error: str | None = None
    last_success: float | None = None

    def succeeded(self, now: float) -> None:
        self.failures, self.last_error, self.last_success = 0, None, now

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error

    def check(self) -> str:
        if self.last_error is None:
            return "ok"
        return f"error: {self.last_error} ({self.failures} failed polls in a row)"
