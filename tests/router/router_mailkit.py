"""Test helpers for the router: ParsedMail factories and a small stdlib parser for the corpus.

The real parser is ingest's; this one only needs to be good enough to give the classifier the
subject, sender, selected headers and text of real mail.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

from services.router.domain import TicketInfo
from shared.events import Address, MailFlags, ParsedMail
from shared.ticket_numbers import check_digit

CORPUS = Path(os.environ.get("FIRSTLINE_CORPUS") or Path(__file__).resolve().parents[3] / "shared" / "corpus")
HEADER_NAMES = (
    "x-mailer", "user-agent", "list-id", "precedence", "content-type", "x-priority", "importance",
    "priority", "x-spam-flag", "x-spam-status", "x-spam-score", "x-spam-level", "delivered-to",
    "x-original-to", "auto-submitted",
)  # fmt: skip


def ticket_number(date: str = "20240517", system_id: str = "10", counter: int = 1) -> str:
    """A valid number, built with the shared formula the tickets service uses."""
    base = f"{date}{system_id}{counter:05d}"
    return base + str(check_digit(base))


def make_mail(
    subject: str = "Question",
    sender: str = "alice@example.org",
    to: tuple[str, ...] = ("info@firstline.example",),
    body: str = "Hello, I have a question.",
    **fields: Any,
) -> ParsedMail:
    return ParsedMail(
        **{"from": Address(email=sender)},
        to=[Address(email=a) for a in to],
        subject=subject,
        body_text=body,
        **fields,
    )


def auto_flags(**flags: bool) -> MailFlags:
    return MailFlags(**flags)


# --------------------------------------------------------------------------- corpus


def corpus_files(label: str) -> list[Path]:
    return sorted((CORPUS / label).glob("*.eml"))


def parse_raw(raw: bytes) -> ParsedMail:
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    text, html = _bodies(message)
    return ParsedMail(
        **{"from": _first_address(message.get("From"))},
        to=_addresses(message.get_all("To", [])),
        cc=_addresses(message.get_all("Cc", [])),
        reply_to=_addresses(message.get_all("Reply-To", [])),
        subject=_decode(message.get("Subject")),
        message_id=_decode(message.get("Message-ID")) or None,
        headers={name: _decode(message.get(name)) for name in HEADER_NAMES if message.get(name)},
        body_text=text,
        body_html=html,
        flags=MailFlags(mailing_list=bool(message.get("List-Id") or message.get("List-Post"))),
    )


def _decode(value: Any) -> str:
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value))))
    except (UnicodeError, LookupError, ValueError, email.errors.HeaderParseError):
        return str(value)


def _addresses(values: list[Any]) -> list[Address]:
    pairs = email.utils.getaddresses([_decode(v) for v in values])
    return [Address(name=name, email=addr) for name, addr in pairs if "@" in addr]


def _first_address(value: Any) -> Address | None:
    found = _addresses([value]) if value else []
    return found[0] if found else None


def _bodies(message: Message) -> tuple[str, str | None]:
    texts: list[str] = []
    htmls: list[str] = []
    for part in message.walk():
        if part.is_multipart() or part.get_filename():
            continue
        kind = part.get_content_type()
        if kind in ("text/plain", "text/html"):
            (texts if kind == "text/plain" else htmls).append(_payload_text(part))
    return "\n".join(texts), ("\n".join(htmls) if htmls else None)


def _payload_text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(part.get_payload())
    charset = part.get_content_charset() or "latin-1"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1", errors="replace")


class MemoryIndex:
    """A TicketIndex over dicts, as the service's projection will answer it."""

    def __init__(self, *tickets: TicketInfo, message_ids: dict[str, str] | None = None) -> None:
        self.by_number = {t.number: t for t in tickets}
        self.message_ids = dict(message_ids or {})  # message-id -> ticket number

    def ticket_by_number(self, number: str) -> TicketInfo | None:
        return self.by_number.get(number)

    def ticket_by_message_id(self, message_id: str) -> TicketInfo | None:
        number = self.message_ids.get(message_id)
        return self.by_number.get(number) if number else None
