"""Builders for the ticket domain tests: routed mails, and streams that record decided events."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

from services.tickets.domain import CreateFromMail, Ticket, apply, decide_create
from services.tickets.numbers import format_ticket_number
from shared.envelope import Envelope, make_envelope
from shared.events import Address, Attachment, EventData, MailFlags, ParsedMail, TicketRouted

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
DAY = date(2026, 11, 25)


def number(counter: int) -> str:
    return format_ticket_number(DAY, 10, counter)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def routed(
    mail_id: str = "mail-1",
    *,
    action: str = "new",
    queue: str = "Raw",
    subject: str = "My account is blocked",
    sender: str = "carol@example.org",
    sender_name: str = "Carol",
    message_id: str | None = "<m1@example.org>",
    references: Sequence[str] = (),
    reply_to: str | None = None,
    ticket_number: str | None = None,
    reopen: bool = False,
    spam: bool = False,
    priority: int = 3,
    flags: MailFlags | None = None,
    attachments: Sequence[Attachment] = (),
) -> TicketRouted:
    mail = ParsedMail(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        from_=Address(name=sender_name, email=sender),
        to=[Address(name="Info", email="info@firstline.example")],
        reply_to=[Address(email=reply_to)] if reply_to else [],
        subject=subject,
        message_id=message_id,
        references=list(references),
        body_text="Hello, please help.",
        flags=flags or MailFlags(),
        attachments=list(attachments),
    )
    return TicketRouted(
        mail_id=mail_id,
        action=action,  # type: ignore[arg-type]
        queue=queue,
        priority=priority,
        ticket_number=ticket_number,
        reopen=reopen,
        spam=spam,
        mail=mail,
    )


class Stream:
    """One ticket's stream in memory: decided events become envelopes with versions and times."""

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.envelopes: list[Envelope] = []
        self.ticket: Ticket | None = None

    def record(self, events: Sequence[EventData], actor: str = "alice", when: datetime = T0) -> Ticket:
        for data in events:
            envelope = make_envelope(
                data,
                stream_id=self.stream_id,
                actor=actor,
                stream_version=len(self.envelopes) + 1,
                occurred_at=when,
            )
            self.envelopes.append(envelope)
            self.ticket = apply(self.ticket, envelope)
        return self.current

    def types(self) -> list[str]:
        return [e.type for e in self.envelopes]

    @property
    def current(self) -> Ticket:
        assert self.ticket is not None
        return self.ticket


def new_ticket(ticket_id: str = "t-1", counter: int = 1, when: datetime = T0, **routed_args: object) -> Stream:
    """A stream holding a ticket freshly created from a routed mail."""
    stream = Stream(ticket_id)
    cmd = CreateFromMail(
        routed=routed(**routed_args),  # type: ignore[arg-type]
        ticket_id=ticket_id,
        ticket_number=number(counter),
        article_id=f"{ticket_id}-a1",
    )
    stream.record(decide_create(None, cmd, when), actor="router", when=when)
    return stream


def types(events: Sequence[EventData]) -> list[str]:
    return [e.TYPE for e in events]
