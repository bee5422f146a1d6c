"""Test helpers for the router: ParsedMail factories, the corpus, and an in-memory ticket index.

The corpus parser is :mod:`services.router.corpus` (a stdlib reader good enough to give the
classifier the subject, sender, selected headers and text of real mail); ingest's is the real one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from services.router.corpus import parse_raw
from services.router.domain import TicketInfo
from shared.events import Address, MailFlags, ParsedMail
from shared.ticket_numbers import check_digit
from tests.conftest import CORPUS

__all__ = ["CORPUS", "MemoryIndex", "auto_flags", "corpus_files", "make_mail", "parse_raw", "ticket_number"]


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
