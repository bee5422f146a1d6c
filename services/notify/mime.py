"""Low-level building blocks for outgoing RFC 5322 / MIME messages.

Notify composes every mail through these helpers so that all of them share the same rules:
addresses parsed and their domains IDNA-encoded, header values kept on one line (no header
injection through a subject or a name), message ids in angle brackets and never RFC 2047-encoded,
text and HTML alternatives in quoted-printable when not plain 7-bit, and MIME boundaries derived
from the Message-ID so that composing the same mail twice gives the same bytes.
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses
from typing import Any, NamedTuple

from shared.events import LOOP_HEADER

MAX_REFERENCES = 20
"""References kept in a reply: the thread's first id and the most recent ones (RFC 5322 3.6.4
allows trimming; some servers reject very long References headers)."""

_MSGID_CHARS = re.compile(r"[^A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]")
_TOKEN = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+$")


class ComposeError(ValueError):
    """The input cannot become a valid mail (e.g. a recipient that is not an address)."""


class OutgoingAttachment(NamedTuple):
    filename: str
    content_type: str
    data: bytes


def _wrap(name: str, tokens: Iterable[str], policy: Any) -> str:
    """``Name: tok tok`` folded greedily between tokens, never inside one."""
    limit = policy.max_line_length or 998
    lines: list[str] = []
    line = f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > limit and line != f"{name}:":
            lines.append(line)
            line = ""
        line += f" {token}"
    lines.append(line)
    return policy.linesep.join(lines) + policy.linesep


class _MessageIdListHeader(UnstructuredHeader, BaseHeader):
    """``In-Reply-To``/``References``: folded between ids, never encoded.

    Python 3.11 treats these as unstructured text and RFC 2047-encodes any id longer than a line
    (common with Outlook ids), which breaks threading at the receiver.
    """

    def fold(self, *, policy: Any) -> str:
        return _wrap(self.name, str(self).split(), policy)


class _SubjectHeader(UnstructuredHeader, BaseHeader):
    """``Subject`` without the stdlib's ``Subject:<CRLF> text`` fold.

    For some lengths Python 3.11 moves the whole value to a continuation line, and parsers
    (the stdlib's included) then read the subject with a leading space. ASCII subjects are
    wrapped between words here; others keep the stdlib's RFC 2047 folding, minus that quirk.
    Text that looks like an encoded word is itself encoded, so the receiver shows it as typed.
    """

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        """Keep the text as given: the stdlib would decode ``=?…?=`` in it as an encoded word."""
        super().parse(value, kwds)
        kwds["decoded"] = value

    def fold(self, *, policy: Any) -> str:
        value = str(self)
        if "=?" in value:  # looks like an encoded word: encode it, or the receiver decodes it
            encoded = Header(value, "utf-8", header_name=self.name).encode(
                linesep=policy.linesep, maxlinelen=policy.max_line_length or 998
            )
            return f"{self.name}: {encoded}{policy.linesep}"
        if value.isascii():
            return _wrap(self.name, value.split(), policy)
        folded = super().fold(policy=policy)
        bare = f"{self.name}:{policy.linesep} "
        return f"{self.name}: {folded[len(bare) :]}" if folded.startswith(bare) else folded


def _registry() -> HeaderRegistry:
    registry = HeaderRegistry()
    registry.map_to_type("in-reply-to", _MessageIdListHeader)
    registry.map_to_type("references", _MessageIdListHeader)
    registry.map_to_type("subject", _SubjectHeader)
    return registry


MAIL_POLICY = email_policy.SMTP.clone(header_factory=_registry())
"""SMTP policy (CRLF, 78-column folding) with our folding of message-id lists and subjects."""


def new_message() -> EmailMessage:
    return EmailMessage(policy=MAIL_POLICY)


def one_line(value: str) -> str:
    """Collapse all whitespace, including CR/LF, so a value can't inject or break a header."""
    return " ".join(value.split())


def _ascii_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ComposeError(f"invalid mail domain {domain!r}") from exc


def parse_address(value: str, *, display_name: str = "") -> Address:
    """One address from ``"Name <a@b>"`` or ``"a@b"``; the domain IDNA-encoded."""
    pairs = getaddresses([value])
    if len(pairs) != 1 or "@" not in pairs[0][1]:
        raise ComposeError(f"not a single email address: {value!r}")
    name, addr = pairs[0]
    local, _, domain = addr.rpartition("@")
    if not local or not domain:
        raise ComposeError(f"not an email address: {value!r}")
    return Address(one_line(name or display_name), local, _ascii_domain(domain))


def parse_addresses(values: Iterable[str]) -> list[Address]:
    """Every address in ``values``; an element may itself be a comma-separated list."""
    pairs = getaddresses([value for value in values if value.strip()])
    return [parse_address(addr, display_name=name) for name, addr in pairs]


def address_email(value: str) -> str:
    """The bare, lower-cased address in ``value`` ("" when there is none)."""
    pairs = getaddresses([value])
    return pairs[0][1].strip().lower() if len(pairs) == 1 else ""


def address_name(value: str) -> str:
    pairs = getaddresses([value])
    return one_line(pairs[0][0]) if len(pairs) == 1 else ""


def normalise_msgid(value: str | None) -> str | None:
    """``<id>`` form; None for empty or whitespace-containing (unusable) ids."""
    if not value:
        return None
    core = value.strip().removeprefix("<").removesuffix(">")
    if not core or any(ch.isspace() for ch in core):
        return None
    return f"<{core}>"


def make_msgid(token: str, domain: str) -> str:
    """``<token@domain>``, the token reduced to a dot-atom (RFC 5322 3.6.4)."""
    atom = re.sub(r"\.{2,}", ".", _MSGID_CHARS.sub("-", token)).strip(".")
    if not atom:
        raise ComposeError(f"unusable message id token {token!r}")
    return f"<{atom}@{_ascii_domain(domain)}>"


def msgid_in_domain(value: str, domain: str) -> str:
    """``value`` as a message id; a bare token (no ``@``) becomes ``<token@domain>``."""
    core = value.strip().removeprefix("<").removesuffix(">")
    if "@" not in core:
        return make_msgid(core, domain)
    normalised = normalise_msgid(core)
    if normalised is None:
        raise ComposeError(f"unusable message id {value!r}")
    return normalised


def thread_references(references: Sequence[str], in_reply_to: str | None) -> list[str]:
    """References for a reply: the parent's chain, then the parent, deduplicated and trimmed."""
    ids: list[str] = []
    for value in references:
        msgid = normalise_msgid(value)
        if msgid is not None and msgid not in ids:
            ids.append(msgid)
    parent = normalise_msgid(in_reply_to)
    if parent is not None:
        ids = [msgid for msgid in ids if msgid != parent] + [parent]
    if len(ids) > MAX_REFERENCES:
        ids = [ids[0], *ids[-(MAX_REFERENCES - 1) :]]
    return ids


def set_threading(msg: EmailMessage, references: Sequence[str], in_reply_to: str | None) -> None:
    parent = normalise_msgid(in_reply_to)
    if parent is not None:
        msg["In-Reply-To"] = parent
    chain = thread_references(references, in_reply_to)
    if chain:
        msg["References"] = " ".join(chain)


def text_to_html(text: str) -> str:
    """A minimal HTML rendering of plain text: escaped, line breaks and runs of spaces kept."""
    escaped = html.escape(text).replace("  ", " &nbsp;")
    body = "<br>\n".join(escaped.split("\n"))
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n'
        f'<body><div style="font-family: sans-serif">{body}</div></body></html>\n'
    )


def base_message(
    sender: Address, to: Sequence[Address], subject: str, message_id: str, date: datetime | None
) -> EmailMessage:
    """From, To, Subject, Date, Message-ID. ``date`` defaults to now; naive means UTC."""
    if not to:
        raise ComposeError("no recipient")
    msg = new_message()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = one_line(subject)
    when = date or datetime.now(UTC)
    msg["Date"] = format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    msg["Message-ID"] = message_id
    return msg


def mark_automatic(msg: EmailMessage, *, auto_submitted: str, loop_address: str, domain: str) -> None:
    """RFC 3834 ``Auto-Submitted``, plus the de-facto headers other robots honour.

    RFC 3834 says not to rely on ``Precedence``, but vacation programs and list servers still
    look at it, and Exchange only looks at ``X-Auto-Response-Suppress``; setting them all keeps
    the customer's autoresponder from answering ours.
    """
    msg["Auto-Submitted"] = auto_submitted
    msg["Precedence"] = "bulk"
    msg["X-Auto-Response-Suppress"] = "All"
    msg["X-Loop"] = loop_address
    msg[LOOP_HEADER] = domain


def join_blocks(*blocks: str) -> str:
    """Non-empty blocks separated by a blank line, newline-terminated."""
    kept = [normalise_newlines(block).strip("\n").rstrip() for block in blocks if block.strip()]
    return "\n\n".join(kept) + "\n"


def _cte(text: str) -> str:
    """7bit for short ASCII lines; else quoted-printable, which also keeps trailing spaces
    (the "-- " signature separator) that relays may strip from 7bit text."""
    lines = text.splitlines()
    plain = all(len(line) <= 78 and line == line.rstrip() for line in lines)
    return "7bit" if text.isascii() and plain else "quoted-printable"


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def set_bodies(msg: EmailMessage, text: str) -> None:
    """text/plain and the derived text/html as multipart/alternative."""
    document = text_to_html(text)
    msg.set_content(text, subtype="plain", charset="utf-8", cte=_cte(text))
    msg.add_alternative(document, subtype="html", charset="utf-8", cte=_cte(document))


def _safe_filename(filename: str) -> str:
    name = one_line(filename).replace("/", "_").replace("\\", "_").lstrip(".")
    return name or "attachment"


def _mime_type(content_type: str) -> tuple[str, str]:
    maintype, _, subtype = content_type.strip().lower().partition("/")
    subtype = subtype.split(";")[0].strip()
    if _TOKEN.match(maintype) and _TOKEN.match(subtype) and maintype != "multipart":
        return maintype, subtype
    return "application", "octet-stream"


def add_attachments(msg: EmailMessage, attachments: Iterable[OutgoingAttachment | tuple[str, str, bytes]]) -> None:
    for filename, content_type, data in attachments:
        maintype, subtype = _mime_type(content_type)
        msg.add_attachment(bytes(data), maintype=maintype, subtype=subtype, filename=_safe_filename(filename))


def finalise(msg: EmailMessage) -> EmailMessage:
    """Deterministic boundaries from the Message-ID, and no MIME-Version on sub-parts.

    The ``=_`` in a boundary cannot occur in quoted-printable or base64 content.
    """
    seed = str(msg["Message-ID"] or "")
    for index, part in enumerate(msg.walk()):
        if part is not msg:
            del part["MIME-Version"]
        if part.is_multipart():
            digest = hashlib.sha256(f"{seed}/{index}".encode()).hexdigest()[:32]
            part.set_boundary(f"=_firstline_{digest}")
    return msg


def needs_smtputf8(msg: EmailMessage) -> bool:
    """True when an address has a non-ASCII local part, which only SMTPUTF8 can carry."""
    for name in ("From", "To", "Cc", "Reply-To"):
        for address in getattr(msg[name], "addresses", ()):
            if not address.username.isascii():
                return True
    return False


def envelope_recipients(msg: EmailMessage) -> list[str]:
    """The SMTP ``RCPT TO`` addresses of a composed mail: To, then Cc, each once (Bcc unused)."""
    recipients: list[str] = []
    for name in ("To", "Cc"):
        for address in getattr(msg[name], "addresses", ()):
            if address.addr_spec and address.addr_spec not in recipients:
                recipients.append(address.addr_spec)
    return recipients


def render_message_bytes(msg: EmailMessage, *, smtputf8: bool | None = None) -> bytes:
    """The wire form: CRLF line ends, folded headers; SMTPUTF8 form only when needed or asked."""
    utf8 = needs_smtputf8(msg) if smtputf8 is None else smtputf8
    return msg.as_bytes(policy=MAIL_POLICY.clone(utf8=utf8))
