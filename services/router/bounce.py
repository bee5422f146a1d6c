"""Bounces (RFC 3464 delivery status notifications) of mail we sent: which mail came back, and why.

Pure functions. Ingest flags a bounce (``MailFlags.bounce``) and finds the returned mail's
Message-ID (``ParsedMail.bounce_original_message_id``: the attached message or its headers,
``message/rfc822`` or ``text/rfc822-headers``). The Status and Diagnostic-Code are in the
``message/delivery-status`` part, which ParsedMail keeps only as an attachment: the service
fetches that part's text from ingest when it can (:func:`delivery_status_part` says which), and
otherwise the human-readable text of the bounce is searched for the same facts.
"""

from __future__ import annotations

import re

from shared.events import Attachment, BounceInfo, ParsedMail

__all__ = ["bounce_info", "delivery_status_part", "parse_delivery_status"]

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
MAX_DIAGNOSTIC = 500
MAX_SCAN_CHARS = 20_000
_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_STATUS_RE = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
_SMTP_LINE_RE = re.compile(r"\b[45]\d\d[ -](?:#?[245]\.\d{1,3}\.\d{1,3}\b)?.*", re.M)


def delivery_status_part(mail: ParsedMail) -> Attachment | None:
    """The ``message/delivery-status`` part of a bounce, if it has one."""
    if not mail.flags.bounce:
        return None
    return next((a for a in mail.attachments if a.content_type.lower() in DSN_TYPES and a.part), None)


def bounce_info(mail: ParsedMail, delivery_status: str | None = None) -> BounceInfo | None:
    """What a bounce says: the returned mail's Message-ID, Status and Diagnostic-Code.

    None unless the mail is flagged as a bounce and names the returned mail. ``delivery_status``
    is the text of the DSN's ``message/delivery-status`` part when the caller has it; without it
    (or when it says nothing) the bounce's body text is read.
    """
    if not mail.flags.bounce or not mail.bounce_original_message_id:
        return None
    message_id = mail.bounce_original_message_id.strip().strip("<>").strip()
    if not message_id:
        return None
    status, diagnostic = parse_delivery_status(delivery_status or "")
    if status is None and diagnostic is None:
        status, diagnostic = parse_delivery_status(mail.body_text[:MAX_SCAN_CHARS])
    if status is None and diagnostic is None:
        status, diagnostic = _from_prose(mail.body_text[:MAX_SCAN_CHARS])
    return BounceInfo(message_id=message_id, status=status, diagnostic=diagnostic)


def parse_delivery_status(text: str) -> tuple[str | None, str | None]:
    """(Status, Diagnostic-Code) of the first failed recipient of an RFC 3464 delivery-status
    text (first recipient with a Status when none says ``Action: failed``)."""
    blocks = [_fields(block) for block in re.split(r"\r?\n[ \t]*\r?\n", text.replace("\r\n", "\n"))]
    recipients = [b for b in blocks if "status" in b or "diagnostic-code" in b]
    if not recipients:
        return None, None
    failed = next((b for b in recipients if b.get("action", "").lower().startswith("failed")), recipients[0])
    found = _STATUS_RE.search(failed.get("status", ""))
    return (found.group(1) if found else None), _diagnostic(failed.get("diagnostic-code"))


def _fields(block: str) -> dict[str, str]:
    """Header-style fields of one block (continuation lines folded), first occurrence of each."""
    fields: dict[str, str] = {}
    name = None
    for line in block.split("\n"):
        if line[:1] in (" ", "\t") and name is not None:
            fields[name] += " " + line.strip()
            continue
        match = _FIELD_RE.match(line.strip())
        name = match.group(1).lower() if match else None
        if match and name is not None and name not in fields:
            fields[name] = match.group(2).strip()
        elif match:
            name = None
    return fields


def _diagnostic(value: str | None) -> str | None:
    """A Diagnostic-Code without its type (``smtp; 550 ...`` → ``550 ...``), trimmed."""
    if not value:
        return None
    kind, sep, rest = value.partition(";")
    text = " ".join((rest if sep and len(kind) <= 20 else value).split())
    return text[:MAX_DIAGNOSTIC] or None


def _from_prose(text: str) -> tuple[str | None, str | None]:
    """An MTA's own words: the first SMTP reply line (``550 5.1.1 ...``) and its enhanced code."""
    line = _SMTP_LINE_RE.search(text)
    if line is None:
        return None, None
    status = _STATUS_RE.search(line.group(0))
    return (status.group(1) if status else None), " ".join(line.group(0).split())[:MAX_DIAGNOSTIC]
