"""The outbound log's rows as values, and the events that report how a row ended.

Pure: the consumer builds a :class:`NewOutbound` from a composed mail, the sender turns a
:class:`ClaimedRow` and its :class:`SendResult` into ``AnswerDelivered`` / ``AutoReplySent`` /
``AgentNotified`` or ``DeliveryFailed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Literal

from services.notify.delivery import ErrorKind, RowState
from services.notify.mime import envelope_recipients, needs_smtputf8, render_message_bytes
from shared.events import AgentNotified, AnswerDelivered, AutoReplySent, DeliveryFailed, EventData

PURPOSE_ANSWER = "answer"
PURPOSE_AUTO_REPLY = "auto_reply"
NOTICE_PREFIX = "notice."
PurposeKind = Literal["answer", "auto_reply", "notice"]


def notice_purpose(agent: str) -> str:
    """One notice per (event, agent): the agent is part of the outbound row's key."""
    return f"{NOTICE_PREFIX}{agent}"


def purpose_kind(purpose: str) -> PurposeKind:
    if purpose == PURPOSE_ANSWER:
        return "answer"
    if purpose == PURPOSE_AUTO_REPLY:
        return "auto_reply"
    return "notice"


@dataclass(frozen=True)
class NewOutbound:
    """A mail to send, as the consumer records it (rendered once: every attempt sends these bytes)."""

    cause_event_id: str
    purpose: str
    ticket_id: str
    correlation_id: str
    envelope_from: str
    recipients: list[str]
    message_id: str
    message: bytes
    requested_at: datetime
    article_id: str | None = None
    kind: str | None = None
    recipient_key: str | None = None
    smtputf8: bool = False

    @classmethod
    def from_message(cls, msg: EmailMessage, *, envelope_from: str, **fields: object) -> NewOutbound:
        """Render ``msg`` and take the envelope's recipients and Message-ID from it."""
        return cls(
            envelope_from=envelope_from,
            recipients=envelope_recipients(msg),
            message_id=str(msg["Message-ID"]),
            message=render_message_bytes(msg),
            smtputf8=needs_smtputf8(msg),
            **fields,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class ClaimedRow:
    """A row a worker holds: ``attempts`` already counts the attempt about to be made."""

    id: int
    cause_event_id: str
    purpose: str
    ticket_id: str
    article_id: str | None
    kind: str | None
    correlation_id: str
    envelope_from: str
    recipients: list[str]
    message_id: str
    message: bytes
    smtputf8: bool
    attempts: int
    previous_state: RowState


@dataclass(frozen=True)
class SendResult:
    """One attempt at the relay: ``response`` ("250 ...") when accepted, else the error."""

    response: str | None = None
    refused: dict[str, str] = field(default_factory=dict)
    error_kind: ErrorKind | None = None
    smtp_code: int | None = None
    error: str | None = None

    @property
    def accepted(self) -> bool:
        return self.error_kind is None


def success_event(row: ClaimedRow, result: SendResult) -> EventData:
    """What notify reports when the relay took the mail, by purpose."""
    kind = purpose_kind(row.purpose)
    if kind == "answer":
        return AnswerDelivered(
            ticket_id=row.ticket_id,
            article_id=row.article_id or "",
            message_id=row.message_id,
            relay_response=result.response or "",
            refused=result.refused,
            attempts=row.attempts,
        )
    if kind == "auto_reply":
        return AutoReplySent(
            ticket_id=row.ticket_id, kind=row.kind or "", to=row.recipients[0], message_id=row.message_id
        )
    return AgentNotified(
        ticket_id=row.ticket_id,
        agent=row.purpose.removeprefix(NOTICE_PREFIX),
        kind=row.kind or "",
        detail=result.response or "",
        message_id=row.message_id,
    )


def failure_event(
    row: ClaimedRow | NewOutbound, *, reason: str, permanent: bool, smtp_code: int | None, attempts: int
) -> DeliveryFailed:
    return DeliveryFailed(
        ticket_id=row.ticket_id,
        article_id=row.article_id,
        message_id=row.message_id,
        reason=reason,
        permanent=permanent,
        smtp_code=smtp_code,
        attempts=attempts,
        purpose=purpose_kind(row.purpose),
    )


def failure_reason(result: SendResult, attempts: int) -> str:
    """The reason a row that failed for good reports: the relay's error, and that notify gave up
    if the error was one worth retrying."""
    error = result.error or "unknown error"
    if result.error_kind == "retry":
        return f"gave up after {attempts} attempts; last: {error}"
    return error
