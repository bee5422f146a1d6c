"""Auto responses: RFC 3834 headers and the rules that keep them from looping or flooding."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any, get_args

import pytest

from services.notify.domain import (
    auto_reply_decision,
    auto_reply_message_id,
    compose_auto_reply,
    render_message_bytes,
)
from services.notify.queue_settings import AUTO_REPLY_KINDS, AutoReplyKind, default_queue_settings
from services.notify.templates import MailTemplateError
from shared.events import AutoReplyRequested, MailFlags

DOMAIN = "firstline.example"
OWN = {"info@firstline.example", "info-de@firstline.example", "permissions@firstline.example"}
WHEN = datetime(2025, 3, 4, 10, 11, 12, tzinfo=UTC)


def request(**changes: Any) -> AutoReplyRequested:
    fields: dict[str, Any] = {
        "ticket_id": "0190f3b2-0000-7000-8000-000000000001",
        "ticket_number": "2009070610061359",
        "queue": "Info-en",
        "kind": "new_ticket",
        "to": "Jane Doe <jane@example.org>",
        "subject": "Question about the logo",
        "in_reply_to": "<customer-1@example.org>",
    }
    return AutoReplyRequested(**(fields | changes))


def decide(event: AutoReplyRequested | None = None, **kwargs: Any) -> tuple[bool, str]:
    kwargs.setdefault("own_addresses", OWN)
    kwargs.setdefault("sent_today_to_sender", 0)
    kwargs.setdefault("enabled", True)
    return auto_reply_decision(event or request(), **kwargs)


def received(event: AutoReplyRequested, queue: str = "Info-en", **kwargs: Any) -> EmailMessage:
    msg = compose_auto_reply(event, default_queue_settings(queue), domain=DOMAIN, date=WHEN, **kwargs)
    parsed = message_from_bytes(render_message_bytes(msg), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


# --------------------------------------------------------------------------- composing


def test_rfc3834_and_loop_headers() -> None:
    msg = received(request())
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Auto-Response-Suppress"] == "All"
    assert msg["Precedence"] == "bulk"
    assert msg["X-Loop"] == "info@firstline.example"
    assert msg["X-Firstline-Loop"] == DOMAIN
    assert msg["X-Firstline-Ticket"] == "2009070610061359"


def test_addressing_and_threading() -> None:
    msg = received(request())
    assert msg["From"] == "Firstline Info <info@firstline.example>"
    assert msg["To"] == "Jane Doe <jane@example.org>"
    assert msg["In-Reply-To"] == "<customer-1@example.org>"
    assert msg["References"] == "<customer-1@example.org>"
    assert msg["Subject"] == "[Ticket#2009070610061359] Re: Question about the logo"


@pytest.mark.parametrize(
    "subject",
    [
        "Re: Question about the logo",
        "AW: [Ticket#2009070610061359] Question about the logo",
        "[Ticket#2009070610061359] RE: Question about the logo",
    ],
)
def test_subject_is_not_doubled(subject: str) -> None:
    assert received(request(subject=subject))["Subject"] == ("[Ticket#2009070610061359] Re: Question about the logo")


@pytest.mark.parametrize(
    ("kind", "phrase"),
    [
        ("new_ticket", "received as ticket 2009070610061359"),
        ("follow_up_closed_reject", "which is closed, so it has not been processed"),
        ("follow_up_closed_new", "opened a new one for it: ticket 2009070610061359"),
    ],
)
def test_each_kind_has_its_text(kind: str, phrase: str) -> None:
    text = text_of(received(request(kind=kind)))
    assert text.startswith("Dear Jane Doe,\n")
    assert phrase in " ".join(text.split())
    assert text.endswith("-- \nFirstline Info\ninfo@firstline.example\n")


def test_german_queue_answers_in_german() -> None:
    msg = received(request(queue="Info-de", to="jörg@example.de"), queue="Info-de")
    assert msg["From"] == '"Firstline Info (Deutsch)" <info-de@firstline.example>'
    assert "vielen Dank für Ihre Nachricht" in text_of(msg)


def test_message_id_is_stable_per_request() -> None:
    first = received(request())["Message-ID"]
    assert first == received(request())["Message-ID"] == auto_reply_message_id(request(), DOMAIN)
    assert first.endswith("@firstline.example>")
    assert received(request(in_reply_to="<customer-2@example.org>"))["Message-ID"] != first
    assert received(request(kind="follow_up_closed_new"))["Message-ID"] != first


def test_explicit_message_id_is_used() -> None:
    assert received(request(), message_id="0190-event.auto-reply")["Message-ID"] == (
        "<0190-event.auto-reply@firstline.example>"
    )


def test_without_customer_mail_id_no_threading_headers() -> None:
    msg = received(request(in_reply_to=None))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_broken_admin_template_still_sends() -> None:
    settings = default_queue_settings("Info-en")
    broken = settings.auto_responses.new_ticket.model_copy(update={"body": "Thanks {{ nam }}"})
    settings = settings.model_copy(
        update={"auto_responses": settings.auto_responses.model_copy(update={"new_ticket": broken})}
    )
    problems: list[MailTemplateError] = []
    msg = compose_auto_reply(request(), settings, domain=DOMAIN, on_template_error=problems.append)
    assert "Thanks {{ nam }}" in text_of(msg)
    assert [p.template for p in problems] == ["new_ticket.body"]


def test_kinds_match_the_event_contract() -> None:
    assert set(AUTO_REPLY_KINDS) == set(get_args(AutoReplyRequested.model_fields["kind"].annotation))
    assert set(get_args(AutoReplyKind)) == set(AUTO_REPLY_KINDS)


# --------------------------------------------------------------------------- deciding


def test_an_ordinary_customer_gets_a_reply() -> None:
    send, reason = decide(sent_today_to_sender=3)
    assert send is True
    assert reason == "auto response new_ticket allowed (4 of 10 today for jane@example.org)"


@pytest.mark.parametrize(
    ("flag", "reason"),
    [
        ("auto_submitted", "sender flagged auto-submitted"),
        ("bounce", "mail is a bounce"),
        ("mailing_list", "mail came from a mailing list"),
        ("loop", "mail loop detected"),
    ],
)
def test_flagged_mail_gets_no_reply(flag: str, reason: str) -> None:
    assert decide(request(flags=MailFlags(**{flag: True}))) == (False, reason)


def test_malformed_mail_still_gets_a_reply() -> None:
    assert decide(request(flags=MailFlags(malformed=True)))[0] is True


@pytest.mark.parametrize(
    "sender",
    [
        "info@firstline.example",
        "INFO@Firstline.Example",
        "Firstline <info-de@firstline.example>",
        "info+tickets@firstline.example",
    ],
)
def test_never_to_our_own_addresses(sender: str) -> None:
    send, reason = decide(request(to=sender))
    assert send is False and "one of our own addresses" in reason


@pytest.mark.parametrize("sender", ["", "<>", "   "])
def test_never_to_a_null_sender(sender: str) -> None:
    assert decide(request(to=sender)) == (False, "no sender address (null reverse-path)")


def test_never_to_an_invalid_sender() -> None:
    send, reason = decide(request(to="MAILER-DAEMON"))
    assert send is False and "invalid sender address" in reason


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example.org",
        "postmaster@example.org",
        "noreply@example.org",
        "no-reply@example.org",
        "no-reply.notifications@example.org",
        "donotreply@example.org",
        "do-not-reply@example.org",
        "accounts-noreply@example.org",
        "wikitech-l-request@lists.example.org",
        "owner-wikitech@lists.example.org",
        "wikitech-l-bounces@lists.example.org",
        "bounce+1234@mail.example.org",
        "LISTSERV@example.org",
        "majordomo@example.org",
    ],
)
def test_never_to_automated_senders(sender: str) -> None:
    send, reason = decide(request(to=sender))
    assert send is False and reason == f"sender {sender.lower()} is an automated address"


@pytest.mark.parametrize(
    "sender",
    ["norbert@example.org", "replyguy@example.org", "bouncer@example.org", "postmasters-guild@x.org"],
)
def test_similar_looking_people_are_answered(sender: str) -> None:
    assert decide(request(to=sender))[0] is True


def test_daily_limit_per_sender() -> None:
    assert decide(sent_today_to_sender=9)[0] is True
    assert decide(sent_today_to_sender=10) == (False, "daily limit 10 reached for jane@example.org")
    assert decide(sent_today_to_sender=2, daily_limit=2) == (
        False,
        "daily limit 2 reached for jane@example.org",
    )


def test_not_when_the_queue_disabled_it() -> None:
    assert decide(enabled=False) == (False, "auto response new_ticket is disabled for queue Info-en")


def test_junk_has_auto_responses_off_by_default() -> None:
    junk = default_queue_settings("Junk")
    assert not any(junk.auto_reply_enabled(kind) for kind in AUTO_REPLY_KINDS)
    assert all(default_queue_settings("Raw").auto_reply_enabled(kind) for kind in AUTO_REPLY_KINDS)


def test_loop_flag_outranks_everything_else() -> None:
    event = request(flags=MailFlags(loop=True), to="info@firstline.example")
    assert decide(event, enabled=False, sent_today_to_sender=99) == (False, "mail loop detected")
