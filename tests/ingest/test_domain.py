"""Unit tests of ingest's MIME parsing: pure, no network, no services.

Corpus tests read the shared raw-mail corpus (``tests.conftest.CORPUS``: ``FIRSTLINE_CORPUS``, else ../shared/corpus)
and are skipped when it is absent.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.ingest.domain import (
    MAX_MAIL_BYTES_DEFAULT,
    decode_header_words,
    detect_language,
    extract_part,
    html_to_text,
    normalize_message_id,
    parse_mail,
    parse_message_ids,
    sanitize_html,
)
from shared.events import MailReceived, ParsedMail
from tests.conftest import CORPUS

needs_corpus = pytest.mark.skipif(not (CORPUS / "mime").is_dir(), reason="raw-mail corpus not available")


def corpus(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def mail(*headers: str, body: str = "Hello, I need help with my account.\n", crlf: bool = False) -> bytes:
    """A small RFC 5322 message; default From/To/Subject unless given."""
    names = {h.split(":", 1)[0].lower() for h in headers}
    defaults = [
        ("from", "From: Alice <alice@example.org>"),
        ("to", "To: info@firstline.example"),
        ("subject", "Subject: Help"),
        ("message-id", "Message-ID: <m1@example.org>"),
        ("date", "Date: Tue, 01 Jul 2003 10:52:37 +0200"),
    ]
    lines = [h for name, h in defaults if name not in names] + list(headers)
    text = "\n".join(lines) + "\n\n" + body
    return (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")


def as_event_json(parsed: ParsedMail) -> bytes:
    """What ingest will publish: the parsed mail inside MailReceived, encoded like the envelope does."""
    event = MailReceived(mail_id="m", sha256="0" * 64, size=1, mail=parsed)
    return orjson.dumps(event.model_dump(mode="json", by_alias=True))


# --------------------------------------------------------------------------- the whole corpus


def _check_corpus_file(path: Path) -> str | None:
    """None if the file parses cleanly into a publishable event whose parts can be fetched back."""
    raw = path.read_bytes()
    try:
        parsed = parse_mail(raw)
        as_event_json(parsed)
    except Exception as exc:
        return f"{path.name}: {type(exc).__name__}: {exc}"
    if any(d.startswith("parser failed") or "unreadable" in d for d in parsed.defects):
        return f"{path.name}: {parsed.defects}"
    for attachment in parsed.attachments:
        fetched = extract_part(raw, attachment.part)
        if fetched is None or hashlib.sha256(fetched[2]).hexdigest() != attachment.sha256:
            return f"{path.name}: part {attachment.part} does not extract to the same bytes"
        if (fetched[0], fetched[1]) != (attachment.filename, attachment.content_type):
            return f"{path.name}: part {attachment.part} extracts as {fetched[:2]}"
    return None


@needs_corpus
@pytest.mark.parametrize("folder", ["mime", "spam", "ham"])
def test_every_corpus_mail_parses_and_its_parts_extract(folder: str) -> None:
    files = sorted((CORPUS / folder).glob("*.eml"))
    assert files, f"no mails in {CORPUS / folder}"
    failures = [f for f in map(_check_corpus_file, files) if f]
    assert not failures, f"{len(failures)} of {len(files)} failed:\n" + "\n".join(failures[:30])


# --------------------------------------------------------------------------- named corpus mails


@needs_corpus
@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("mime/mikelmail-multi_charset__japanese_iso_2022.eml", "まみむめも"),
        ("mime/mimekit-messages__japanese.txt.eml", "日本語メールテスト (testing Japanese emails)"),
        ("mime/phpmimemailparser-m0022.eml", "[PRJ-OTH] asdf árvíztűrő tükörfúrógép"),
        (
            "mime/mikelmail-plain_emails__raw_email_with_partially_quoted_subject.eml",
            'Re: Test: "漢字" mid "漢字" tail',
        ),
        ("mime/spamscope-mail_test_1.eml", "письмо уведом-е"),
    ],
)
def test_rfc2047_subjects_are_decoded(name: str, subject: str) -> None:
    assert parse_mail(corpus(name)).subject == subject


@needs_corpus
def test_html_only_alternative_gives_text_and_sanitised_html() -> None:
    parsed = parse_mail(corpus("mime/mikelmail-error_emails__content_transfer_encoding_text-html.eml"))
    assert parsed.body_text.startswith("Hello,\nYou have qualified for the lowest rate in years.\n")
    assert "<" not in parsed.body_text
    assert parsed.body_html is not None and "<p>" in parsed.body_html
    assert 'rel="noopener noreferrer nofollow"' in parsed.body_html
    assert parsed.attachments == []


@needs_corpus
def test_sisimai_bounce_carries_the_original_message_id() -> None:
    parsed = parse_mail(corpus("mime/sisimai-bsd__lhost-gmail-01.eml"))
    assert parsed.flags.bounce and parsed.flags.auto_submitted
    assert parsed.message_id == "<047d7bdca0c250c6c004fe72bd32@google.com>"
    assert parsed.bounce_original_message_id == "<D992C2C3-F175-4C4D-97E2-53A90E4E5BF5@gmail.com>"


@needs_corpus
@pytest.mark.parametrize(
    ("name", "original"),
    [
        ("mime/sisimai-bsd__rfc3464-01.eml", "<E1C50F1B-1C83-4820-BC36-AC6FBFBE8568@example.org>"),
        ("mime/sisimai-bsd__lhost-dragonfly-01.eml", "<66681288.e06d1.3824794@df.example.jp>"),
        ("mime/sisimai-bsd__lhost-x1-01.eml", "<000000000000000000000000000000000000@example.jp>"),
        ("mime/sisimai-bsd__lhost-exim-01.eml", "<E1P1ce6-000Egt-GZ@e1.example.org>"),
    ],
)
def test_bounce_formats_yield_the_original_message_id(name: str, original: str) -> None:
    parsed = parse_mail(corpus(name))
    assert parsed.flags.bounce
    assert parsed.bounce_original_message_id == original


@needs_corpus
@pytest.mark.parametrize("name", ["mime/sisimai-not__is-not-bounce-01.eml", "mime/sisimai-not__is-not-bounce-02.eml"])
def test_sisimai_non_bounces_are_not_bounces(name: str) -> None:
    assert not parse_mail(corpus(name)).flags.bounce


@needs_corpus
@pytest.mark.parametrize("number", ["01", "02", "03", "04"])
def test_sisimai_vacation_replies_are_auto_submitted_not_bounces(number: str) -> None:
    flags = parse_mail(corpus(f"mime/sisimai-bsd__rfc3834-{number}.eml")).flags
    assert flags.auto_submitted and not flags.bounce


@needs_corpus
def test_bare_cr_mac_file_parses_like_its_lf_twin() -> None:
    mac = corpus("mime/sisimai-mac__lhost-exim-01.eml")
    assert b"\n" not in mac
    parsed = parse_mail(mac)
    assert parsed.subject == "Mail delivery failed: returning message to sender"
    assert parsed.from_ is not None and parsed.from_.email == "mailer-daemon@e1.example.org"
    assert parsed.from_.name == "Mail Delivery System"
    assert parsed.message_id == "<E1P1ceB-000FL1-4q@e1.example.org>"
    assert parsed.flags.bounce
    assert parsed.bounce_original_message_id == "<E1P1ce6-000Egt-GZ@e1.example.org>"
    assert "\r" not in parsed.body_text
    twin = parse_mail(corpus("mime/sisimai-bsd__lhost-exim-01.eml"))
    assert (parsed.subject, parsed.body_text) == (twin.subject, twin.body_text)


@needs_corpus
def test_rfc2231_continued_filename_is_decoded_and_extractable() -> None:
    raw = corpus("mime/mikelmail-multi_charset__japanese_attachment_long_name.eml")
    [attachment] = parse_mail(raw).attachments
    assert attachment.filename == "かきくけこ" * 5 + ".txt"
    assert attachment.content_type == "text/plain"
    assert attachment.part == "1"
    filename, content_type, data = extract_part(raw, "1") or ("", "", b"")
    assert (filename, content_type) == (attachment.filename, "text/plain")
    assert len(data) == attachment.size and hashlib.sha256(data).hexdigest() == attachment.sha256


@needs_corpus
def test_mailing_list_mail_with_mbox_from_line() -> None:
    raw = corpus("ham/sa-easy_ham-00014.cb20e10b2bfcb8210a1c310798532a57.eml")
    assert raw.startswith(b"From ")
    parsed = parse_mail(raw)
    assert parsed.subject == "Re: New Sequences Window"
    assert parsed.from_ is not None and parsed.from_.email == "cwg-exmh@deepeddy.com"
    assert parsed.from_.name == "Chris Garrigues"
    assert parsed.to[0].email == "kre@munnari.oz.au"
    assert parsed.date == datetime(2002, 8, 22, 10, 25, 52, tzinfo=timezone(timedelta(hours=-5)))
    assert parsed.flags.mailing_list and parsed.flags.auto_submitted
    assert parsed.headers["list-id"] == "Discussion list for EXMH developers <exmh-workers.spamassassin.taint.org>"
    assert parsed.headers["precedence"] == "bulk"
    assert parsed.language == "en"
    assert not parsed.flags.malformed


@needs_corpus
def test_leading_byte_order_mark_does_not_hide_the_headers() -> None:
    parsed = parse_mail(corpus("mime/mimekit-messages__feedback-report.txt.eml"))
    assert parsed.subject == "FW: Earn money"
    assert parsed.flags.auto_submitted  # an ARF report is machine-made
    assert not parsed.flags.bounce


@needs_corpus
def test_mislabelled_shift_jis_is_decoded_anyway() -> None:
    parsed = parse_mail(corpus("spam/trec07p-inmail.8518.eml"))
    assert "http://lovesns.com/aitai/enjolabi" in parsed.body_text
    assert "\ufffd" not in parsed.body_text[:40]
    assert any("decoded as cp932" in p for p in parsed.charset_problems)


@needs_corpus
def test_attached_message_is_one_eml_attachment() -> None:
    raw = corpus("mime/mikelmail-attachment_emails__attachment_message_rfc822_inline_image.eml")
    parsed = parse_mail(raw)
    by_part = {a.part: a for a in parsed.attachments}
    assert by_part["2"].content_type == "message/rfc822" and by_part["2"].filename == "Testmail.eml"
    assert by_part["1.2"].inline and by_part["1.2"].content_id is not None
    _, _, data = extract_part(raw, "2") or ("", "", b"")
    assert b"Subject:" in data


# --------------------------------------------------------------------------- flags, hand-built


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated (failure)", True),
        ("Auto-Submitted: no", False),
        ("Precedence: bulk", True),
        ("Precedence: junk", True),
        ("Precedence: list", True),
        ("Precedence: normal", False),
        ("X-Auto-Response-Suppress: All", True),
        ("X-Autoreply: yes", True),
        ("X-Autorespond: vacation", True),
        ("X-Apple-Action: VACATION", True),
        ("X-Mailer: Thunderbird", False),
    ],
)
def test_auto_submitted(header: str, expected: bool) -> None:
    assert parse_mail(mail(header)).flags.auto_submitted is expected


def test_plain_mail_has_no_flags_and_no_defects() -> None:
    parsed = parse_mail(mail())
    assert parsed.flags.model_dump() == dict.fromkeys(
        ("auto_submitted", "bounce", "mailing_list", "loop", "malformed"), False
    )
    assert parsed.defects == [] and parsed.charset_problems == []


@pytest.mark.parametrize(
    "header",
    [
        "List-Id: Support <support.lists.example.org>",
        "List-Unsubscribe: <mailto:leave@example.org>",
        "Precedence: list",
    ],
)
def test_mailing_list(header: str) -> None:
    assert parse_mail(mail(header)).flags.mailing_list


DSN = """\
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: info@firstline.example
Subject: Undelivered Mail Returned to Sender
Message-ID: <dsn1@mx.example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

Your message could not be delivered.
--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; bob@example.net
Action: failed
Status: 5.1.1
--B
Content-Type: {original_type}

Message-ID: <answer-42@firstline.example>
From: info@firstline.example
Subject: Re: your question

--B--
"""


@pytest.mark.parametrize("original_type", ["message/rfc822", "text/rfc822-headers"])
def test_rfc3464_bounce_names_the_bounced_message(original_type: str) -> None:
    parsed = parse_mail(DSN.format(original_type=original_type).encode())
    assert parsed.flags.bounce and parsed.flags.auto_submitted
    assert parsed.bounce_original_message_id == "<answer-42@firstline.example>"
    assert parsed.body_text.strip() == "Your message could not be delivered."
    assert [a.content_type for a in parsed.attachments] == ["message/delivery-status", original_type]
    assert [a.part for a in parsed.attachments] == ["2", "3"]


def test_daemon_bounce_without_report_finds_the_id_in_the_body() -> None:
    body = (
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its recipients.\n\n"
        "------ This is a copy of the message, including all the headers. ------\n"
        "Message-Id: <answer-7@firstline.example>\nSubject: Re: help\n"
    )
    raw = mail("From: MAILER-DAEMON@mx.example.org", "Subject: failure notice", body=body)
    parsed = parse_mail(raw)
    assert parsed.flags.bounce
    assert parsed.bounce_original_message_id == "<answer-7@firstline.example>"


def test_x_failed_recipients_is_a_bounce() -> None:
    assert parse_mail(mail("X-Failed-Recipients: bob@example.net")).flags.bounce


def test_a_person_writing_about_an_undeliverable_mail_is_no_bounce() -> None:
    parsed = parse_mail(mail("Subject: Undeliverable: my order", body="Your shop says my mail is undeliverable.\n"))
    assert not parsed.flags.bounce and parsed.bounce_original_message_id is None


@pytest.mark.parametrize(
    "headers",
    [
        ("X-Loop: info@firstline.example",),
        ("X-Firstline-Loop: yes",),
        ("Message-ID: <abc@firstline.example>",),
        ("Message-ID: <abc@mx1.firstline.example>",),
        ("Auto-Submitted: auto-replied", "In-Reply-To: <answer-1@firstline.example>"),
    ],
)
def test_loop(headers: tuple[str, ...]) -> None:
    assert parse_mail(mail(*headers)).flags.loop


def test_a_human_reply_to_our_answer_is_no_loop() -> None:
    parsed = parse_mail(mail("In-Reply-To: <answer-1@firstline.example>"))
    assert not parsed.flags.loop
    assert parsed.in_reply_to == "<answer-1@firstline.example>"


def test_own_domains_are_configurable() -> None:
    raw = mail("Message-ID: <abc@helpdesk.example.com>")
    assert not parse_mail(raw).flags.loop
    assert parse_mail(raw, own_domains=frozenset({"Example.com"})).flags.loop
    assert not parse_mail(raw, own_domains=frozenset({"other.example"})).flags.loop


@pytest.mark.parametrize(
    ("raw", "defect"),
    [
        (
            b"From: a@example.org\nContent-Type: multipart/mixed; boundary=XYZ\n\n--XYZ\n\nhello\n",
            "CloseBoundaryNotFoundDefect",
        ),
        (
            b"From: a@example.org\nContent-Type: multipart/mixed; boundary=NOPE\n\nno parts at all\n",
            "StartBoundaryNotFoundDefect",
        ),
        (
            b"From: a@example.org\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\naGVsbG8\n",
            "InvalidBase64PaddingDefect",
        ),
        (b"To: b@example.org\nSubject: anonymous\n\nbody\n", "missing from header"),
        (b"From: a@example.org\nDate: yesterday-ish\n\nbody\n", "unparseable date header"),
        (b"From: a@example.org\nSubject: one\nSubject: two\n\nbody\n", "duplicate subject header"),
    ],
)
def test_malformed_mail_is_flagged_with_its_defects(raw: bytes, defect: str) -> None:
    parsed = parse_mail(raw)
    assert parsed.flags.malformed
    assert any(defect in d for d in parsed.defects), parsed.defects


def test_start_boundary_missing_keeps_the_raw_text_as_body() -> None:
    parsed = parse_mail(b"From: a@example.org\nContent-Type: multipart/mixed; boundary=NOPE\n\nno parts at all\n")
    assert parsed.body_text.strip() == "no parts at all"


# --------------------------------------------------------------------------- headers


def test_addresses_names_and_lists() -> None:
    raw = mail(
        "From: =?ISO-8859-1?Q?J=F6rg_M=FCller?= <Joerg@Example.ORG>",
        'To: "Info" <info@firstline.example>, =?UTF-8?B?w4lsb2TDrWU=?= <elodie@example.fr>',
        "Cc: undisclosed-recipients:;",
        "Reply-To: replies@example.org",
    )
    parsed = parse_mail(raw)
    assert parsed.from_ is not None
    assert (parsed.from_.name, parsed.from_.email) == ("Jörg Müller", "joerg@example.org")
    assert [(a.name, a.email) for a in parsed.to] == [
        ("Info", "info@firstline.example"),
        ("Élodíe", "elodie@example.fr"),
    ]
    assert parsed.cc == []
    assert [a.email for a in parsed.reply_to] == ["replies@example.org"]


def test_utf8_and_latin1_raw_header_bytes() -> None:
    raw = "From: Zoë <zoe@example.org>\nSubject: Grüße\n\nHallo\n".encode()
    parsed = parse_mail(raw)
    assert parsed.subject == "Grüße" and parsed.from_ is not None and parsed.from_.name == "Zoë"
    latin1 = parse_mail("From: a@example.org\nSubject: Grüße\n\nHallo\n".encode("latin-1"))
    assert latin1.subject == "Grüße"
    assert any("header subject" in p for p in latin1.charset_problems)


def test_folded_encoded_subject_is_unfolded_and_joined() -> None:
    raw = mail("Subject: =?UTF-8?B?44GC44GE44GG?=\n =?UTF-8?B?44GI44GK?=  \n\tand more")
    assert parse_mail(raw).subject == "あいうえお and more"


def test_message_ids_are_normalised() -> None:
    raw = mail(
        "Message-ID:  abc.123@example.org ",
        "In-Reply-To: <first@example.org> (Bob's message of Tuesday)",
        "References: <r1@example.org>\n <r2@example.org> <r1@example.org>\n\t<broken id@example.org>",
    )
    parsed = parse_mail(raw)
    assert parsed.message_id == "<abc.123@example.org>"
    assert parsed.in_reply_to == "<first@example.org>"
    assert parsed.references == ["<r1@example.org>", "<r2@example.org>", "<brokenid@example.org>"]


def test_message_id_helpers() -> None:
    assert normalize_message_id("") is None
    assert normalize_message_id("Your message of Tuesday") is None
    assert normalize_message_id("<a@b>") == "<a@b>"
    many = " ".join(f"<id{i}@example.org>" for i in range(300))
    ids = parse_message_ids(many)
    assert len(ids) == 100 and ids[0] == "<id0@example.org>" and ids[-1] == "<id299@example.org>"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 01 Jul 2003 10:52:37 +0200", datetime(2003, 7, 1, 8, 52, 37, tzinfo=UTC)),
        ("1 Jul 2003 10:52:37 -0000", datetime(2003, 7, 1, 10, 52, 37, tzinfo=UTC)),
        ("Tue, 01 Jul 2003 10:52:37 GMT", datetime(2003, 7, 1, 10, 52, 37, tzinfo=UTC)),
        ("not a date", None),
    ],
)
def test_date_is_aware_or_none(value: str, expected: datetime | None) -> None:
    date = parse_mail(mail(f"Date: {value}")).date
    assert date == expected
    assert date is None or date.tzinfo is not None


def test_selected_headers_only() -> None:
    raw = mail(
        "Received: from somewhere",
        "X-OTRS-Queue: Press",
        "X-Firstline-Priority: 2",
        "X-Spam-Flag: YES",
        "Content-Type: text/plain;\n charset=utf-8",
        "X-Random: nope",
    )
    headers = parse_mail(raw).headers
    assert headers == {
        "x-otrs-queue": "Press",
        "x-firstline-priority": "2",
        "x-spam-flag": "YES",
        "content-type": "text/plain; charset=utf-8",
    }


def test_missing_headers_give_empty_fields() -> None:
    parsed = parse_mail(b"\n\njust a body\n")
    assert parsed.from_ is None and parsed.subject == "" and parsed.message_id is None and parsed.date is None
    assert "just a body" in parsed.body_text


def test_decode_header_words_is_lenient() -> None:
    assert decode_header_words("=?utf-8?q?caf=C3=A9?= =?utf-8?q?_ol=C3=A9?=") == "café olé"
    assert decode_header_words("=?utf-8?B?w6k?=") == "é"  # missing padding
    assert decode_header_words("=?x-no-such-charset?Q?abc?=") == "abc"
    assert decode_header_words("plain =?broken") == "plain =?broken"
    # a multibyte character split across two encoded words survives
    assert decode_header_words("=?UTF-8?B?4oI=?= =?UTF-8?B?rA==?=") == "€"


# --------------------------------------------------------------------------- bodies and charsets

ALTERNATIVE = """\
From: a@example.org
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="A"

--A
Content-Type: text/plain; charset=utf-8

Plain version
--A
Content-Type: text/html; charset=utf-8

<p>HTML <b>version</b></p>
--A--
"""


def test_plain_text_is_preferred_and_html_kept_sanitised() -> None:
    parsed = parse_mail(ALTERNATIVE.encode())
    assert parsed.body_text.strip() == "Plain version"
    assert parsed.body_html is not None and "<b>version</b>" in parsed.body_html
    assert parsed.attachments == []


def test_html_to_text_structure_entities_scripts() -> None:
    html = (
        "<html><head><title>T</title><style>p {color: red}</style></head><body>"
        "<p>Dear&nbsp;customer,</p><div>line&nbsp;one<br>line two</div>"
        "<script>alert('x')</script><ul><li>first</li><li>second &amp; third</li></ul>"
        "<table><tr><td>a</td><td>b</td></tr></table></body></html>"
    )
    expected = "Dear customer,\n\nline one\nline two\nfirst\nsecond & third\n\na b"
    assert html_to_text(html) == expected  # blank lines after paragraphs and lists only


def test_sanitize_html_removes_active_content() -> None:
    dirty = (
        '<p onclick="steal()">Hi <a href="javascript:alert(1)">x</a> <a href="https://ok.example/">ok</a>'
        '<img src="cid:logo" onerror="x()"><script>bad()</script><iframe src="https://evil"></iframe>'
        '<span style="color: red; position: fixed">red</span><form><input name="pw"></form></p>'
    )
    clean = sanitize_html(dirty)
    for bad in ("onclick", "javascript:", "onerror", "script", "bad()", "iframe", "position", "<form", "<input"):
        assert bad not in clean
    assert 'href="https://ok.example/"' in clean and 'src="cid:logo"' in clean and "color:red" in clean


def test_broken_and_unknown_charsets_are_recorded_and_replaced() -> None:
    parsed = parse_mail(b"From: a@example.org\nContent-Type: text/plain; charset=utf-8\n\ncaf\xe9 \x00end\n")
    assert parsed.body_text == "caf\ufffd end\n"  # invalid byte replaced, NUL dropped
    assert parsed.charset_problems == ["part 1: bytes invalid in charset 'utf-8'; replaced"]
    unknown = parse_mail(mail("Content-Type: text/plain; charset=x-klingon", body="plain ascii\n"))
    assert unknown.body_text == "plain ascii\n"
    assert unknown.charset_problems == ["part 1: unknown charset 'x-klingon'"]


def test_quoted_printable_latin1_body() -> None:
    raw = mail(
        "Content-Type: text/plain; charset=iso-8859-1",
        "Content-Transfer-Encoding: quoted-printable",
        body="Gr=FC=DFe aus K=F6ln =80\n",
    )
    assert parse_mail(raw).body_text == "Grüße aus Köln €\n"  # ISO-8859-1 read as windows-1252


@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
def test_line_endings_do_not_change_the_result(ending: bytes) -> None:
    lf = ALTERNATIVE.encode()
    other = parse_mail(lf.replace(b"\n", ending))
    reference = parse_mail(lf)
    assert (other.body_text, other.body_html, other.subject) == (
        reference.body_text,
        reference.body_html,
        reference.subject,
    )


# --------------------------------------------------------------------------- attachments

NESTED = """\
From: a@example.org
Subject: files
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="M"

--M
Content-Type: multipart/related; boundary="R"

--R
Content-Type: text/html; charset=utf-8

<p>See <img src="cid:logo@x"></p>
--R
Content-Type: image/png
Content-ID: <logo@x>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--R--
--M
Content-Type: application/pdf
Content-Disposition: attachment
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--M
Content-Type: text/plain; name="=?UTF-8?B?bm90ZXMg4pyTLnR4dA==?="
Content-Disposition: attachment; filename*=UTF-8''..%2F..%2Fr%C3%A9sum%C3%A9.txt

some notes
--M--
"""


def test_attachments_numbering_names_and_hashes() -> None:
    raw = NESTED.encode()
    parsed = parse_mail(raw)
    assert parsed.body_text == "See"
    image, pdf, notes = parsed.attachments
    assert (image.part, image.content_type, image.content_id, image.inline) == ("1.2", "image/png", "logo@x", True)
    assert image.filename == "attachment-1-2.png"
    assert image.size == 8 and image.sha256 == hashlib.sha256(b"\x89PNG\r\n\x1a\n").hexdigest()
    assert (pdf.part, pdf.filename, pdf.inline) == ("2", "attachment-2.pdf", False)
    assert (notes.part, notes.filename) == ("3", "résumé.txt")  # RFC 2231 wins; the path is stripped
    assert extract_part(raw, "2") == ("attachment-2.pdf", "application/pdf", b"%PDF-1.4\n")
    assert extract_part(raw, "1.2") == ("attachment-1-2.png", "image/png", b"\x89PNG\r\n\x1a\n")


@pytest.mark.parametrize("part", ["", "0", "1", "4", "1.3", "2.1", "x", "1..2", "99999999"])
def test_extract_part_returns_none_for_containers_and_unknown_parts(part: str) -> None:
    assert extract_part(NESTED.encode(), part) is None


def test_extract_part_on_a_single_part_mail() -> None:
    assert extract_part(mail(body="hi\n"), "1") == ("attachment-1.txt", "text/plain", b"hi\n")
    assert extract_part(b"\x00\xff garbage", "1") is not None
    assert extract_part(b"", "2") is None


# --------------------------------------------------------------------------- language


def test_language_detection() -> None:
    english = "Hello, I cannot log in to my account since yesterday. Could you please reset my password?"
    german = "Guten Tag, ich kann mich seit gestern nicht mehr anmelden. Können Sie bitte mein Passwort zurücksetzen?"
    assert detect_language(english) == "en"
    assert detect_language(german) == "de"
    assert detect_language("ok") is None
    assert detect_language("") is None
    assert detect_language("> " + german + "\n" + english) == "en"  # quoted text doesn't count
    assert parse_mail(mail(body=german + "\n")).language == "de"


def test_language_is_deterministic() -> None:
    text = "Buongiorno, vorrei sapere quando arriva il mio ordine, grazie mille per la vostra pazienza."
    assert {detect_language(text) for _ in range(5)} == {"it"}


# --------------------------------------------------------------------------- never raises


def test_max_mail_bytes_default() -> None:
    assert MAX_MAIL_BYTES_DEFAULT == 25 * 1024 * 1024


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00" * 100,
        b"From \n",
        b":\n:\n\n",
        b"Content-Type: multipart/mixed; boundary=\n\n--\n--\n",
        b"Content-Type: text/plain; charset=unicode_escape\n\n\\ud800 \\x00\n",
        b"Content-Type: text/plain; charset=utf-7\n\n+2D8-\n",
        b"Content-Type: text/plain; charset*=''\n\nx\n",
        b"Subject: =?unicode-escape?Q?=5Cud800?=\n\nx\n",
        b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n!!!!\n",
        b"From: MAILER-DAEMON@x\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
        b"--B\nContent-Type: message/rfc822\n\n--B--\n",
        b"Content-Type: text/plain; charset*=utf-8''%E2%82\n\n\xe2\x82\n",
        b"Content-Type: multipart/mixed; boundary=a\n\n" + b"--a\nContent-Type: multipart/mixed; boundary=a\n\n" * 200,
    ],
)
def test_hostile_inputs_never_raise_and_stay_publishable(raw: bytes) -> None:
    as_event_json(parse_mail(raw))


def test_deep_nesting_is_cut_not_crashed() -> None:
    depth = 120
    head = "".join(f"--b{i}\nContent-Type: multipart/mixed; boundary=b{i + 1}\n\n" for i in range(depth))
    raw = f"From: a@example.org\nContent-Type: multipart/mixed; boundary=b0\n\n{head}".encode()
    parsed = parse_mail(raw)
    as_event_json(parsed)
    assert parsed.flags.malformed


HEADER_NAMES = ["From", "To", "Cc", "Subject", "Date", "Message-ID", "References", "Content-Type",
                "Content-Transfer-Encoding", "Content-Disposition", "Auto-Submitted", "List-Id"]  # fmt: skip
header_values = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=80).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["=?utf-8?B?", "=?x?Q?=FF?=", "<>", "multipart/mixed; boundary=", "base64", "\x00", "\r"]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    as_event_json(parse_mail(raw))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(HEADER_NAMES), header_values), max_size=12), st.binary(max_size=300))
def test_random_header_mutations_never_raise(headers: list[tuple[str, str]], body: bytes) -> None:
    head = "".join(f"{name}: {value}\n" for name, value in headers)
    raw = head.encode("utf-8", "surrogateescape") + b"\n" + NESTED.encode().split(b"\n\n", 1)[1] + body
    parsed = parse_mail(raw)
    as_event_json(parsed)
    for attachment in parsed.attachments:
        fetched = extract_part(raw, attachment.part)
        assert fetched is not None and hashlib.sha256(fetched[2]).hexdigest() == attachment.sha256
