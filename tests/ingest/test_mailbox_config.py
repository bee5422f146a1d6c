"""Mailbox settings and the pure decisions of polling: no servers needed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.ingest.mailboxes import MailboxAccount, MailboxStatus, backoff_seconds, load_accounts, plan_poll
from services.ingest.settings import IngestSettings

ACCOUNT = {"name": "support", "host": "imap.example.org", "user": "support", "password": "hunter2"}


def test_accounts_come_from_the_environment_as_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    more = tmp_path / "mailboxes.json"
    more.write_text(json.dumps([{**ACCOUNT, "name": "press", "protocol": "pop3", "tls": "starttls"}]))
    monkeypatch.setenv("MAILBOXES", json.dumps([ACCOUNT]))
    monkeypatch.setenv("MAILBOXES_FILE", str(more))
    settings = IngestSettings()
    support, press = load_accounts(settings.mailboxes, settings.mailboxes_file)
    assert (support.protocol, support.server_port, support.tls, support.folder) == ("imap", 993, "ssl", "INBOX")
    assert (press.protocol, press.server_port, press.disposal) == ("pop3", 110, "delete")
    assert support.secret() == "hunter2"
    assert "hunter2" not in repr(settings) and "hunter2" not in str(support.model_dump())


def test_password_file_is_read_each_time(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("first\n")
    account = MailboxAccount(**{**ACCOUNT, "password": None, "password_file": secret})
    assert account.secret() == "first"
    secret.write_text("rotated")
    assert account.secret() == "rotated"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"password": None}, "exactly one of password and password_file"),
        ({"password_file": "/run/secret"}, "exactly one of password and password_file"),
        ({"protocol": "pop3", "move_to": "Done", "delete_after": False}, "IMAP only"),
        ({"move_to": "Done"}, "exclude each other"),
        ({"tls": "tls"}, "tls"),
        ({"name": "no spaces please"}, "name"),
        ({"interval_seconds": 0}, "interval_seconds"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(change: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        MailboxAccount(**{**ACCOUNT, **change})


def test_account_names_are_unique() -> None:
    account = MailboxAccount(**ACCOUNT)
    with pytest.raises(ValueError, match="unique: support"):
        load_accounts([account, account], None)


def test_disposal_follows_the_settings() -> None:
    def disposal(**change: object) -> str:
        return MailboxAccount(**{**ACCOUNT, **change}).disposal

    assert disposal() == "delete"
    assert disposal(delete_after=False, move_to="Done") == "move"
    assert disposal(delete_after=False) == "seen"
    assert disposal(delete_after=False, protocol="pop3") == "keep"


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff_seconds(f, 10, 60) for f in range(6)] == [10, 10, 20, 40, 60, 60]
    assert backoff_seconds(3, 600, 60) == 600, "never polls a failing account more often than a healthy one"


def test_a_poll_fetches_new_mails_and_settles_the_unsettled() -> None:
    plan = plan_poll(["1:1", "1:2", "1:3", "1:4", "1:5"], {"1:1": True, "1:2": False}, limit=2)
    assert plan.fetch == ["1:3", "1:4"] and plan.settle == ["1:2"]


def test_status_names_the_last_error_until_a_poll_succeeds() -> None:
    status = MailboxStatus()
    assert status.check() == "ok"
    status.failed("auth: login refused")
    status.failed("auth: login refused")
    assert status.check() == "error: auth: login refused (2 failed polls in a row)"
    status.succeeded(1.0)
    assert status.check() == "ok"
