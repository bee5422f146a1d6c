"""Bounces (RFC 3464 DSNs) of our answers: recognised, threaded to the answer's ticket, and
described in TicketRouted.bounce (Message-ID, Status, Diagnostic-Code)."""

from __future__ import annotations

import pytest

from services.ingest.domain import extract_part, parse_mail
from services.router.bounce import bounce_info, delivery_status_part, parse_delivery_status
from services.router.domain import RouterConfig, TicketInfo, route
from tests.router.router_mailkit import CORPUS, MemoryIndex, make_mail, ticket_number

ANSWER_ID = "answer.0f3a@firstline.example"
NUMBER = ticket_number(counter=7)


def dsn(original_id: str = ANSWER_ID, *, headers_only: bool = False, action: str = "failed") -> bytes:
    """An RFC 3464 report for a mail we sent, the original attached (or only its headers)."""
    original_type = "text/rfc822-headers" if headers_only else "message/rfc822"
    original = (
        f"From: Support <support@firstline.example>\r\nTo: bob@example.net\r\nSubject: Re: [Ticket#{NUMBER}] Login\r\n"
        f"Message-ID: <{original_id}>\r\n"
    )
    if not headers_only:
        original += "\r\nDear Bob, here is the answer.\r\n"
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        "To: support@firstline.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn.1@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; carol@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n"
        f"Final-Recipient: rfc822; bob@example.net\r\nAction: {action}\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@example.net>:\r\n Recipient address rejected: User unknown\r\n"
        f"--B\r\nContent-Type: {original_type}\r\n\r\n{original}\r\n--B--\r\n"
    ).encode()


def dsn_text(raw: bytes) -> str | None:
    """The delivery-status part as ingest's GET /mails/{id}/parts/{part} serves it."""
    part = delivery_status_part(parse_mail(raw))
    found = extract_part(raw, part.part) if part else None
    return found[2].decode("utf-8", "replace") if found else None


def answered_ticket(state: str = "open") -> MemoryIndex:
    ticket = TicketInfo(ticket_id="t-7", number=NUMBER, queue="Support", state=state)  # type: ignore[arg-type]
    return MemoryIndex(ticket, message_ids={ANSWER_ID: NUMBER})


@pytest.mark.parametrize("headers_only", [False, True])
def test_a_bounce_of_our_answer_is_threaded_and_described(headers_only: bool) -> None:
    raw = dsn(headers_only=headers_only)
    mail = parse_mail(raw)
    assert mail.flags.bounce and mail.in_reply_to is None
    routed = route(mail, "m-1", [], RouterConfig(), answered_ticket(), delivery_status=dsn_text(raw))
    assert (routed.action, routed.ticket_number, routed.reopen) == ("follow_up", NUMBER, False)
    assert routed.bounce is not None
    assert routed.bounce.message_id == ANSWER_ID
    assert routed.bounce.status == "5.1.1"  # the failed recipient, not the delayed one
    assert routed.bounce.diagnostic == "550 5.1.1 <bob@example.net>: Recipient address rejected: User unknown"
    assert any("bounced message" in r.detail for r in routed.reasons)


def test_without_the_dsn_part_the_text_is_read() -> None:
    mail = make_mail(
        "Undelivered Mail Returned to Sender",
        sender="mailer-daemon@mx.example.net",
        body="<bob@example.net>: host mx.example.net said: 550 5.1.1 User unknown (in reply to RCPT TO)",
        flags={"bounce": True, "auto_submitted": True},
        bounce_original_message_id=f"<{ANSWER_ID}>",
    )
    bounce = bounce_info(mail)
    assert bounce is not None
    assert (bounce.message_id, bounce.status) == (ANSWER_ID, "5.1.1")
    assert bounce.diagnostic is not None and bounce.diagnostic.startswith("550 5.1.1 User unknown")


def test_a_bounce_of_a_closed_tickets_answer_does_not_reopen_it() -> None:
    raw = dsn()
    routed = route(parse_mail(raw), "m-1", [], RouterConfig(), answered_ticket("closed successful"))
    assert (routed.action, routed.reopen) == ("follow_up", False)
    assert routed.bounce is not None and routed.bounce.message_id == ANSWER_ID
    assert routed.bounce.status is None  # no DSN part given, and the text states no code


def test_ordinary_mail_carries_no_bounce() -> None:
    assert route(make_mail(), "m-1", [], RouterConfig(), MemoryIndex()).bounce is None
    not_flagged = make_mail(bounce_original_message_id=ANSWER_ID)
    assert bounce_info(not_flagged) is None


def test_parse_delivery_status_takes_the_first_failed_recipient() -> None:
    text = (
        "Reporting-MTA: dns; a\n\nFinal-Recipient: rfc822; x@y\nAction: delayed\nStatus: 4.4.7\n\n"
        "Final-Recipient: rfc822; z@y\nAction: failed\nStatus: 5.2.2 (mailbox full)\n"
        "Diagnostic-Code: X-Postfix; host said: 552 5.2.2 Over quota\n"
    )
    assert parse_delivery_status(text) == ("5.2.2", "host said: 552 5.2.2 Over quota")
    assert parse_delivery_status("no fields here") == (None, None)


# Real bounces from the shared corpus (sisimai's set of real-world DSNs, and others).
REAL = [
    ("sisimai-bsd__rfc3464-01.eml", "5.1.1", "550 5.1.1"),
    ("sisimai-bsd__rhost-outlook-01.eml", "5.2.2", "550 5.2.2"),
    ("sisimai-bsd__lhost-receivingses-01.eml", "5.1.1", "550 5.1.1 Mailbox does not exist"),
    ("sisimai-err__make-test-01.eml", "5.1.2", "550 Host unknown"),
    ("mikelmail-multipart_report_emails__report_422.eml", "4.2.2", "452 4.2.2"),
]


@pytest.mark.parametrize(("name", "status", "diagnostic"), REAL)
def test_real_dsns(name: str, status: str, diagnostic: str) -> None:
    path = CORPUS / "mime" / name
    if not path.is_file():
        pytest.skip(f"no {path}")
    raw = path.read_bytes()
    mail = parse_mail(raw)
    original = (mail.bounce_original_message_id or "").strip("<>")
    assert mail.flags.bounce and original
    index = MemoryIndex(
        TicketInfo(ticket_id="t-1", number=NUMBER, queue="Support", state="open"),
        message_ids={original: NUMBER},
    )
    routed = route(mail, "m-1", [], RouterConfig(), index, delivery_status=dsn_text(raw))
    assert (routed.action, routed.ticket_number) == ("follow_up", NUMBER)
    assert routed.bounce is not None
    assert (routed.bounce.message_id, routed.bounce.status) == (original, status)
    assert routed.bounce.diagnostic is not None and routed.bounce.diagnostic.startswith(diagnostic)
