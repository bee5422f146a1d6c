"""Pure pieces of the running service: queue settings from events, the daily-limit key and
window, envelope recipients, the events that report a row's end, settings validation."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from typing import Any

import pytest
from aiosmtplib.errors import SMTPRecipientRefused, SMTPRecipientsRefused
from pydantic import ValidationError

from services.notify.delivery import attempt_budget, classify_smtp_error, decisive_reply_code, describe_smtp_error
from services.notify.domain import compose_answer, compose_auto_reply, limit_window, sender_key
from services.notify.mime import envelope_recipients
from services.notify.outbound import (
    ClaimedRow,
    NewOutbound,
    SendResult,
    failure_event,
    failure_reason,
    notice_purpose,
    purpose_kind,
    success_event,
)
from services.notify.queue_settings import default_queue_settings, settings_from_event
from services.notify.settings import NotifySettings
from shared.events import (
    AgentNotified,
    AnswerDelivered,
    AnswerSent,
    AutoReplyRequested,
    AutoReplySent,
    AutoResponse,
    QueueConfigured,
)

WHEN = datetime(2025, 3, 4, 23, 59, 59, tzinfo=UTC)


def claimed(purpose: str = "answer", **changes: Any) -> ClaimedRow:
    fields: dict[str, Any] = {
        "id": 7,
        "cause_event_id": "cause-1",
        "purpose": purpose,
        "ticket_id": "ticket-1",
        "article_id": "article-1" if purpose == "answer" else None,
        "kind": None if purpose == "answer" else "new_ticket",
        "correlation_id": "corr-1",
        "envelope_from": "info@firstline.example",
        "recipients": ["jane@example.org"],
        "message_id": "<m1@firstline.example>",
        "message": b"",
        "smtputf8": False,
        "attempts": 3,
        "previous_state": "pending",
    }
    return ClaimedRow(**(fields | changes))


# --------------------------------------------------------------------------- queue settings


def test_queue_settings_from_the_event() -> None:
    event = QueueConfigured(
        name="Press",
        group="press",
        system_address="Press@Firstline.example",
        display_name="Press Desk",
        salutation="Hi {{ customer_name }},",
        signature="-- \nPress",
        auto_responses={"new_ticket": AutoResponse(enabled=False, subject="Got it", body="Thanks")},
    )
    settings = settings_from_event(event)
    assert settings.system_address.email == "press@firstline.example"
    assert settings.system_address.display_name == "Press Desk"
    assert (settings.salutation, settings.signature) == ("Hi {{ customer_name }},", "-- \nPress")
    assert not settings.auto_reply_enabled("new_ticket")
    assert settings.auto_responses.new_ticket.subject == "Got it"
    default = default_queue_settings("Press").auto_responses.follow_up_closed_new
    assert settings.auto_responses.follow_up_closed_new == default


def test_unnamed_auto_responses_keep_the_defaults_off_for_junk() -> None:
    junk = settings_from_event(QueueConfigured(name="Junk", group="junk"))
    assert not junk.auto_reply_enabled("new_ticket")


def test_a_system_address_that_is_no_address_is_refused() -> None:
    with pytest.raises(ValidationError):
        settings_from_event(QueueConfigured(name="Press", group="press", system_address="press"))


# --------------------------------------------------------------------------- auto replies


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("Jane <Jane@Example.org>", "jane@example.org"),
        ("jane+newsletter@example.org", "jane@example.org"),
        ("JANE@EXAMPLE.ORG", "jane@example.org"),
    ],
)
def test_sender_key(address: str, key: str) -> None:
    assert sender_key(address) == key


def test_limit_window_is_the_utc_day_of_the_request() -> None:
    since, until = limit_window(WHEN)
    assert since == datetime(2025, 3, 4, tzinfo=UTC) and until == datetime(2025, 3, 5, tzinfo=UTC)
    local = datetime.fromisoformat("2025-03-05T00:30:00+01:00")
    assert limit_window(local)[0] == datetime(2025, 3, 4, tzinfo=UTC)


def test_auto_reply_uses_the_request_fields() -> None:
    request = AutoReplyRequested(
        ticket_id="t",
        ticket_number="2025030410111213",
        queue="Info-en",
        kind="new_ticket",
        to="jane@example.org",
        subject="whatever",
        in_reply_to="<c2@example.org>",
        references=["<c1@example.org>"],
        message_id="<auto-1@firstline.example>",
        customer_name="Jane Doe",
        title="Logo question",
    )
    msg = compose_auto_reply(request, default_queue_settings("Info-en"), domain="firstline.example", date=WHEN)
    assert msg["Message-ID"] == "<auto-1@firstline.example>"
    assert msg["References"] == "<c1@example.org> <c2@example.org>"
    assert msg["Subject"] == "[Ticket#2025030410111213] Re: Logo question"
    text = msg.get_body(preferencelist=("plain",))
    assert text is not None and text.get_content().startswith("Dear Jane Doe,")


# --------------------------------------------------------------------------- rows and outcomes


def test_a_new_row_takes_envelope_and_id_from_the_message() -> None:
    event = AnswerSent(
        ticket_id="t",
        ticket_number="1",
        article_id="a",
        queue="Info-en",
        to=["Jane <jane@example.org>", "jane@example.org"],
        cc=["boss@bücher.example"],
        subject="s",
        body="b",
        message_id="<a@firstline.example>",
    )
    msg = compose_answer(event, default_queue_settings("Info-en"), agent_name="", domain="firstline.example")
    assert envelope_recipients(msg) == ["jane@example.org", "boss@xn--bcher-kva.example"]
    row = NewOutbound.from_message(
        msg,
        envelope_from="info@firstline.example",
        cause_event_id="c",
        purpose="answer",
        ticket_id="t",
        correlation_id="c",
        requested_at=WHEN,
    )
    assert row.message_id == "<a@firstline.example>" and not row.smtputf8
    assert message_from_bytes(row.message, policy=policy.default)["Message-ID"] == row.message_id


def test_success_events_by_purpose() -> None:
    result = SendResult(response="250 2.0.0 queued", refused={"x@example.org": "550 no"})
    delivered = success_event(claimed(), result)
    assert isinstance(delivered, AnswerDelivered)
    assert (delivered.article_id, delivered.attempts) == ("article-1", 3)
    assert delivered.refused == {"x@example.org": "550 no"}
    sent = success_event(claimed("auto_reply"), result)
    assert isinstance(sent, AutoReplySent) and sent.to == "jane@example.org" and sent.kind == "new_ticket"
    notified = success_event(claimed(notice_purpose("alex")), result)
    assert isinstance(notified, AgentNotified) and notified.agent == "alex"


def test_failure_events_and_reasons() -> None:
    retry = SendResult(error_kind="retry", smtp_code=451, error="SMTP 451: later")
    assert failure_reason(retry, attempts=6) == "gave up after 6 attempts; last: SMTP 451: later"
    permanent = SendResult(error_kind="permanent", smtp_code=550, error="SMTP 550: no")
    assert failure_reason(permanent, attempts=1) == "SMTP 550: no"
    failed = failure_event(claimed("auto_reply"), reason="r", permanent=True, smtp_code=550, attempts=1)
    assert (failed.purpose, failed.article_id, failed.smtp_code) == ("auto_reply", None, 550)
    assert [purpose_kind(p) for p in ("answer", "auto_reply", "notice.alex")] == ["answer", "auto_reply", "notice"]


def test_refused_recipients_are_described_and_coded() -> None:
    refusals = [
        SMTPRecipientRefused(550, "5.1.1 unknown", "a@example.org"),
        SMTPRecipientRefused(452, "full", "b@example.org"),
    ]
    error = SMTPRecipientsRefused(refusals)
    assert classify_smtp_error(error) == "retry"
    assert decisive_reply_code(error) == 452
    assert describe_smtp_error(error) == (
        "all recipients refused: a@example.org: SMTP 550: 5.1.1 unknown; b@example.org: SMTP 452: full"
    )


# --------------------------------------------------------------------------- settings


def test_the_lease_must_outlast_an_attempt() -> None:
    assert attempt_budget(30, 2) == 210
    with pytest.raises(ValidationError, match="SENDING_LEASE_SECONDS"):
        NotifySettings(smtp_timeout_seconds=30, sending_lease_seconds=100)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    monkeypatch.setenv("SMTP_RELAY_HOST", "relay.example.org")
    monkeypatch.setenv("SMTP_RELAY_PORT", "587")
    monkeypatch.setenv("SMTP_STARTTLS", "true")
    monkeypatch.setenv("SMTP_USERNAME", "firstline")
    monkeypatch.setenv("SMTP_PASSWORD_FILE", str(secret))
    monkeypatch.setenv("OWN_ADDRESSES", "Postmaster@firstline.example, abuse@firstline.example")
    settings = NotifySettings()
    assert (settings.smtp_relay_host, settings.smtp_relay_port) == ("relay.example.org", 587)
    assert settings.smtp_starttls is True
    assert settings.smtp_secret() == "s3cret"
    assert settings.configured_own_addresses() == {
        "postmaster@firstline.example",
        "abuse@firstline.example",
        "notifications@firstline.example",
    }
    with pytest.raises(ValidationError, match="exclude each other"):
        NotifySettings(smtp_tls=True)
