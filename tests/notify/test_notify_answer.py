"""Answers: RFC 5322 headers, threading, salutation and signature, MIME parts, encoding."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.notify.domain import (
    ComposeError,
    answer_subject,
    clean_subject,
    compose_answer,
    hooked_subject,
    outbound_message_id,
    render_message_bytes,
)
from services.notify.mime import MAX_REFERENCES, needs_smtputf8
from services.notify.queue_settings import QueueMailSettings, SystemAddress, default_queue_settings
from services.notify.templates import MailTemplateError, UnknownTemplateVariable
from shared.events import LOOP_HEADER, AnswerSent

NUMBER = "2009070610061359"
DOMAIN = "firstline.example"
WHEN = datetime(2025, 3, 4, 10, 11, 12, tzinfo=UTC)
OUTLOOK_ID = "<AM0PR01MB1234567890ABCDEF0123456789ABCDEF@AM0PR01MB1234.eurprd01.prod.exchangelabs.com>"


def answer(**changes: Any) -> AnswerSent:
    fields: dict[str, Any] = {
        "ticket_id": "0190f3b2-0000-7000-8000-000000000001",
        "ticket_number": NUMBER,
        "article_id": "0190f3b2-0000-7000-8000-0000000000a1",
        "queue": "Info-en",
        "to": ["Jane Doe <jane@example.org>"],
        "subject": "Question about the logo",
        "body": "Yes, you may use the logo.\nPlease credit the author.",
        "message_id": "<0190f3b2-0000-7000-8000-0000000000a1@firstline.example>",
        "in_reply_to": "<customer-2@example.org>",
        "references": ["<customer-1@example.org>"],
    }
    return AnswerSent(**(fields | changes))


def compose(event: AnswerSent | None = None, queue: str = "Info-en", **kwargs: Any) -> EmailMessage:
    kwargs.setdefault("agent_name", "Alex Agent")
    kwargs.setdefault("domain", DOMAIN)
    kwargs.setdefault("date", WHEN)
    return compose_answer(event or answer(), default_queue_settings(queue), **kwargs)


def wire(msg: EmailMessage) -> bytes:
    return render_message_bytes(msg)


def parsed(msg: EmailMessage) -> EmailMessage:
    """What a receiver sees: the wire bytes parsed back by the stdlib."""
    result = message_from_bytes(wire(msg), policy=policy.default)
    assert isinstance(result, EmailMessage)
    return result


def plain_text(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain",))
    assert part is not None
    return part.get_content().replace("\r\n", "\n")


# --------------------------------------------------------------------------- headers and threading


def test_headers() -> None:
    msg = parsed(compose(answer(cc=["Boss <boss@example.org>"])))
    assert msg["From"] == "Firstline Info <info@firstline.example>"
    assert msg["To"] == "Jane Doe <jane@example.org>"
    assert msg["Cc"] == "Boss <boss@example.org>"
    assert msg["Subject"] == f"[Ticket#{NUMBER}] Re: Question about the logo"
    assert msg["Message-ID"] == "<0190f3b2-0000-7000-8000-0000000000a1@firstline.example>"
    assert msg["In-Reply-To"] == "<customer-2@example.org>"
    assert msg["References"] == "<customer-1@example.org> <customer-2@example.org>"
    assert parsedate_to_datetime(msg["Date"]) == WHEN
    assert msg["X-Firstline-Ticket"] == NUMBER
    assert msg["X-Firstline-Article"] == "0190f3b2-0000-7000-8000-0000000000a1"
    assert msg["MIME-Version"] == "1.0"


def test_human_answer_is_not_marked_automatic() -> None:
    msg = parsed(compose())
    for header in ("Auto-Submitted", "Precedence", "X-Loop", "X-Auto-Response-Suppress"):
        assert msg[header] is None


def test_answer_carries_the_loop_header_like_every_mail_we_send() -> None:
    assert parsed(compose())[LOOP_HEADER] == DOMAIN


@pytest.mark.parametrize(
    ("queue", "sender"),
    [
        ("Info-en", "Firstline Info <info@firstline.example>"),
        ("Info-de", '"Firstline Info (Deutsch)" <info-de@firstline.example>'),
        ("Permissions", "Firstline Permissions <permissions@firstline.example>"),
        ("Press", "Firstline Press <press@firstline.example>"),
        ("Raw", "Firstline <info@firstline.example>"),
        ("Junk", "Firstline <info@firstline.example>"),
        ("Somewhere-new", "Firstline <info@firstline.example>"),
    ],
)
def test_from_is_the_queue_system_address(queue: str, sender: str) -> None:
    assert parsed(compose(answer(queue=queue), queue=queue))["From"] == sender


def test_message_id_without_domain_gets_ours() -> None:
    assert parsed(compose(answer(message_id="abc123")))["Message-ID"] == "<abc123@firstline.example>"


def test_no_parent_no_threading_headers() -> None:
    msg = parsed(compose(answer(in_reply_to=None, references=[])))
    assert msg["In-Reply-To"] is None and msg["References"] is None


def test_references_deduplicated_with_parent_last() -> None:
    event = answer(references=["<a@x>", "b@x", "<a@x>", "<p@x>"], in_reply_to="p@x")
    assert parsed(compose(event))["References"] == "<a@x> <b@x> <p@x>"


def test_references_trimmed_keeping_the_thread_root() -> None:
    ids = [f"<m{i}@example.org>" for i in range(40)]
    refs = parsed(compose(answer(references=ids, in_reply_to="<parent@example.org>")))["References"].split()
    assert len(refs) == MAX_REFERENCES
    assert refs[0] == "<m0@example.org>" and refs[-1] == "<parent@example.org>"


def test_long_message_ids_are_folded_not_encoded() -> None:
    event = answer(in_reply_to=OUTLOOK_ID, references=[OUTLOOK_ID.replace("AM0", "DB9"), "<x@y>"])
    raw = wire(compose(event))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?" not in head
    msg = parsed(compose(event))
    assert msg["In-Reply-To"] == OUTLOOK_ID
    assert msg["References"].split()[-1] == OUTLOOK_ID


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Question", "[Ticket#7] Re: Question"),
        ("Re: Question", "[Ticket#7] Re: Question"),
        ("RE: AW: Re[2]: Re(3): Question", "[Ticket#7] Re: Question"),
        ("[Ticket#7] Re: Question", "[Ticket#7] Re: Question"),
        ("Re: [Ticket#7] Question", "[Ticket#7] Re: Question"),
        ("AW: [Ticket#7] RE: [Ticket#7] Question", "[Ticket#7] Re: Question"),
        ("Re: [Ticket#111] Question", "[Ticket#7] Re: Question"),
        ("Fwd: Question", "[Ticket#7] Re: Question"),
        ("Question about Re: and AW:", "[Ticket#7] Re: Question about Re: and AW:"),
        ("Are you there?", "[Ticket#7] Re: Are you there?"),
        ("", "[Ticket#7]"),
        ("  spaced \t subject  ", "[Ticket#7] Re: spaced subject"),
    ],
)
def test_answer_subject_has_one_hook_and_one_re(subject: str, expected: str) -> None:
    assert answer_subject("7", subject) == expected


def test_hooked_subject_and_clean_subject() -> None:
    assert hooked_subject("7", "[Ticket#7] Hello") == "[Ticket#7] Hello"
    assert hooked_subject("7", "Hello [Ticket#6]") == "[Ticket#7] Hello"
    assert clean_subject("Re: [Ticket#7] AW: Hello") == "Hello"


def test_subject_cannot_inject_headers() -> None:
    msg = parsed(compose(answer(subject="Hi\r\nBcc: evil@example.com\r\n\r\nbody")))
    assert msg["Bcc"] is None
    assert msg["Subject"] == f"[Ticket#{NUMBER}] Re: Hi Bcc: evil@example.com body"


def test_outbound_message_id_is_stable_and_in_our_domain() -> None:
    first = outbound_message_id("0190-e1", "notice.alex@x", DOMAIN)
    assert first == outbound_message_id("0190-e1", "notice.alex@x", DOMAIN)
    assert first.startswith("<0190-e1.notice.alex-x") and first.endswith("@firstline.example>")


# --------------------------------------------------------------------------- body


def test_salutation_body_signature() -> None:
    text = plain_text(parsed(compose()))
    assert text == (
        "Dear Jane Doe,\n\nYes, you may use the logo.\nPlease credit the author.\n\n"
        "Kind regards,\nAlex Agent\n\n-- \nFirstline Info\ninfo@firstline.example\n"
    )


def test_customer_name_from_event_wins_and_names_the_recipient() -> None:
    msg = parsed(compose(answer(to=["jane@example.org"], customer_name="Jane Q. Public")))
    assert plain_text(msg).startswith("Dear Jane Q. Public,\n")
    assert msg["To"] == '"Jane Q. Public" <jane@example.org>'


def test_without_a_name_the_greeting_is_generic() -> None:
    assert plain_text(parsed(compose(answer(to=["jane@example.org"])))).startswith("Dear Sir or Madam,\n")


def test_german_queue_greets_in_german() -> None:
    text = plain_text(parsed(compose(answer(queue="Info-de"), queue="Info-de", agent_name="Anna")))
    assert text.startswith("Hallo Jane Doe,\n") and "Viele Grüße\nAnna" in text


def test_agent_text_is_not_a_template() -> None:
    text = plain_text(parsed(compose(answer(body="Type {{ 7 * 7 }} or {% raw %} literally."))))
    assert "Type {{ 7 * 7 }} or {% raw %} literally." in text


def test_custom_templates_use_ticket_fields() -> None:
    settings = default_queue_settings("Press").model_copy(
        update={
            "salutation": "Hi {{ customer_name }} <{{ customer_email }}>,",
            "signature": "{{ agent_name }} for {{ queue }}, ticket {{ ticket_number }}: {{ title }}",
        }
    )
    msg = compose_answer(answer(queue="Press"), settings, agent_name="Alex", domain=DOMAIN, date=WHEN, title="Logo")
    text = plain_text(parsed(msg))
    assert text.startswith("Hi Jane Doe <jane@example.org>,\n")
    assert text.endswith(f"Alex for Press, ticket {NUMBER}: Logo\n")


def test_broken_template_at_send_time_sends_raw_text_and_reports() -> None:
    settings = default_queue_settings("Info-en").model_copy(update={"signature": "{{ agnet }}"})
    problems: list[MailTemplateError] = []
    msg = compose_answer(
        answer(), settings, agent_name="A", domain=DOMAIN, date=WHEN, on_template_error=problems.append
    )
    assert plain_text(parsed(msg)).endswith("{{ agnet }}\n")
    assert [type(p) for p in problems] == [UnknownTemplateVariable]
    assert problems[0].template == "signature"


def test_text_and_html_alternatives() -> None:
    msg = parsed(compose(answer(body="1 < 2 & 3 > 2\nnext  line")))
    assert msg.get_content_type() == "multipart/alternative"
    types = [part.get_content_type() for part in msg.iter_parts()]
    assert types == ["text/plain", "text/html"]
    html = msg.get_body(preferencelist=("html",))
    assert html is not None
    content = html.get_content().replace("\r\n", "\n")
    assert "1 &lt; 2 &amp; 3 &gt; 2<br>\nnext &nbsp;line" in content
    assert '<meta charset="utf-8">' in content


def test_line_endings_in_the_agent_text_are_normalised() -> None:
    assert "one\ntwo\nthree\n" in plain_text(parsed(compose(answer(body="one\r\ntwo\rthree"))))


# --------------------------------------------------------------------------- attachments


def test_attachments() -> None:
    files = [
        ("Übersicht.pdf", "application/pdf", b"%PDF-1.4 binary \x00\xff"),
        ("../../etc/passwd", "text/plain", b"not really"),
        ("weird", "not a type", b"x"),
    ]
    msg = parsed(compose(attachments=files))
    assert msg.get_content_type() == "multipart/mixed"
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and "Dear Jane Doe" in body.get_content()
    found = [(a.get_filename(), a.get_content_type(), a.get_payload(decode=True)) for a in msg.iter_attachments()]
    assert found == [
        ("Übersicht.pdf", "application/pdf", b"%PDF-1.4 binary \x00\xff"),
        ("_.._etc_passwd", "text/plain", b"not really"),
        ("weird", "application/octet-stream", b"x"),
    ]


# --------------------------------------------------------------------------- encoding and wire form


def test_non_ascii_names_and_subject_are_rfc2047_encoded() -> None:
    event = answer(
        queue="Info-de",
        to=["Jörg Müller <joerg@example.de>"],
        subject="Grüße aus Köln – Frage zum Logo",
        body="Schöne Grüße",
    )
    settings = default_queue_settings("Info-de").model_copy(
        update={"system_address": SystemAddress(email="info-de@firstline.example", display_name="Auskunft Zürich")}
    )
    msg = compose_answer(event, settings, agent_name="Anna Weiß", domain=DOMAIN, date=WHEN)
    raw = wire(msg)
    raw.decode("ascii")  # all 7-bit on the wire: no 8BITMIME or SMTPUTF8 needed
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    back = parsed(msg)
    assert back["Subject"] == f"[Ticket#{NUMBER}] Re: Grüße aus Köln – Frage zum Logo"
    assert back["From"].addresses[0].display_name == "Auskunft Zürich"
    assert back["To"].addresses[0].display_name == "Jörg Müller"
    assert "Schöne Grüße" in plain_text(back) and "Anna Weiß" in plain_text(back)


def test_wire_form_is_crlf_only() -> None:
    raw = wire(compose(attachments=[("a.bin", "application/octet-stream", b"\n\r\n" * 100)]))
    assert b"\r\n" in raw
    assert raw.count(b"\n") == raw.count(b"\r\n") == raw.count(b"\r")
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998


def test_idn_domain_is_punycoded() -> None:
    msg = parsed(compose(answer(to=["Jörg <joerg@bücher.example>"])))
    assert msg["To"].addresses[0].addr_spec == "joerg@xn--bcher-kva.example"


def test_non_ascii_local_part_needs_smtputf8() -> None:
    msg = compose(answer(to=["jörg@example.de"]))
    assert needs_smtputf8(msg)
    raw = wire(msg)
    assert "jörg@example.de".encode() in raw
    assert not needs_smtputf8(compose())


def test_same_input_same_bytes() -> None:
    files = [("a.txt", "text/plain", b"hello")]
    assert wire(compose(attachments=files)) == wire(compose(attachments=files))


def test_invalid_recipient_is_a_compose_error() -> None:
    with pytest.raises(ComposeError):
        compose(answer(to=["not an address"]))
    with pytest.raises(ComposeError):
        compose(answer(to=[]))


def test_system_address_is_validated() -> None:
    with pytest.raises(ValidationError):
        SystemAddress(email="no-at-sign")
    assert SystemAddress(email=" Info@Firstline.Example ").email == "info@firstline.example"


def test_settings_round_trip_as_json() -> None:
    settings = default_queue_settings("Info-de")
    assert QueueMailSettings.model_validate_json(settings.model_dump_json()) == settings


@pytest.mark.parametrize("length", range(20, 160, 3))
@pytest.mark.parametrize("word", ["logo", "Grüße", "日本語"])
def test_subjects_of_any_length_round_trip(length: int, word: str) -> None:
    """Python 3.11 alone folds some subjects as ``Subject:<CRLF> text``: read back with a space."""
    subject = " ".join([word] * 60)[:length].strip()
    raw = wire(compose(answer(subject=subject)))
    assert not raw.startswith(b"Subject:\r\n") and b"\r\nSubject:\r\n" not in raw
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    assert message_from_bytes(raw, policy=policy.default)["Subject"] == f"[Ticket#{NUMBER}] Re: {subject}"


def test_subject_text_that_looks_encoded_is_kept_as_typed() -> None:
    subject = "Why does =?utf-8?q?abc?= show up"
    assert parsed(compose(answer(subject=subject)))["Subject"] == f"[Ticket#{NUMBER}] Re: {subject}"
