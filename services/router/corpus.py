"""A small stdlib reader for labelled mail corpora (``spam/`` and ``ham/`` folders of raw mail).

Used to seed the classifier (:mod:`services.router.train`) and by tests and benchmarks. The
real parser is ingest's; this one only needs the subject, sender, the headers ingest keeps,
and the text, which is what the classifier's tokens are made of.
"""

from __future__ import annotations

import email
import email.errors
import email.policy
import email.utils
from collections.abc import Iterator
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path
from typing import Any

from shared.events import Address, MailFlags, ParsedMail

HEADER_NAMES = (
    "x-mailer", "user-agent", "list-id", "precedence", "content-type", "x-priority", "importance",
    "priority", "x-spam-flag", "x-spam-status", "x-spam-score", "x-spam-level", "delivered-to",
    "x-original-to", "auto-submitted",
)  # fmt: skip


def corpus_files(folder: Path) -> list[Path]:
    """The mail files of a corpus folder, in name order (``*.eml``, else every file)."""
    files = sorted(folder.glob("*.eml"))
    return files or sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


def labelled_mails(corpus: Path, folders: dict[str, str]) -> Iterator[tuple[ParsedMail, str]]:
    """(mail, label) for every file of each ``folder → label`` of ``corpus``."""
    for folder, label in folders.items():
        for path in corpus_files(corpus / folder):
            yield parse_raw(path.read_bytes()), label


def parse_raw(raw: bytes) -> ParsedMail:
    if raw.startswith(b"From "):
        raw = raw.split(b"\n", 1)[1] if b"\n" in raw else b""
    message = email.message_from_bytes(raw, policy=email.policy.compat32)
    text, html = _bodies(message)
    return ParsedMail(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        from_=_first_address(message.get("From")),
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
