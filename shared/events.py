"""The event catalogue: every event Firstline's services exchange, as pydantic models.

Each event type is a subclass of :class:`EventData` naming its ``TYPE`` and ``SCHEMA_VERSION``.
The envelope (``shared.envelope``) carries the metadata; ``data`` holds one of these models as
JSON. When an event's shape changes, bump ``SCHEMA_VERSION`` and register an upcaster
(``shared.envelope.register_upcaster``) that turns the old ``data`` into the new one; stored
events are never rewritten.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

# Kafka topics, as ARCHITECTURE.md names them.
TOPIC_MAIL_RECEIVED = "mail.received"
TOPIC_TICKET_ROUTED = "ticket.routed"
TOPIC_TICKET_EVENTS = "ticket.events"
TOPIC_DELIVERY_EVENTS = "delivery.events"
TOPIC_ROUTER_CONFIG = "router.config"
TOPIC_AGENT_DIRECTORY = "agent.directory"  # the gateway's agents (AgentProfileChanged), keyed agent:<username>
ALL_TOPICS = (
    TOPIC_MAIL_RECEIVED,
    TOPIC_TICKET_ROUTED,
    TOPIC_TICKET_EVENTS,
    TOPIC_DELIVERY_EVENTS,
    TOPIC_ROUTER_CONFIG,
    TOPIC_AGENT_DIRECTORY,
)

TicketState = Literal[
    "new",
    "open",
    "pending reminder",
    "pending auto close+",
    "pending auto close-",
    "closed successful",
    "closed unsuccessful",
    "merged",
    "removed",
]
AutoReplyKind = Literal["new_ticket", "follow_up_closed_reject", "follow_up_closed_new"]
LOOP_HEADER = "X-Firstline-Loop"  # set on every mail Firstline sends; ingest flags mail carrying it

PENDING_STATES: tuple[str, ...] = ("pending reminder", "pending auto close+", "pending auto close-")
CLOSED_STATES: tuple[str, ...] = ("closed successful", "closed unsuccessful", "merged", "removed")


class EventData(BaseModel):
    """Base of every event payload."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    TYPE: ClassVar[str] = ""
    SCHEMA_VERSION: ClassVar[int] = 1


_CATALOGUE: dict[str, type[EventData]] = {}


def event(cls: type[EventData]) -> type[EventData]:
    """Class decorator: register an event model in the catalogue under its class name."""
    cls.TYPE = cls.__name__
    _CATALOGUE[cls.TYPE] = cls
    return cls


def event_class(type_name: str) -> type[EventData]:
    try:
        return _CATALOGUE[type_name]
    except KeyError:
        raise UnknownEventType(type_name) from None


def catalogue() -> dict[str, type[EventData]]:
    return dict(_CATALOGUE)


class UnknownEventType(KeyError):
    """An envelope names an event type that is not in the catalogue."""


# --------------------------------------------------------------------------- mail (ingest)


class Address(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str = ""
    email: str


class Attachment(BaseModel):
    model_config = ConfigDict(frozen=True)
    filename: str
    content_type: str
    size: int
    sha256: str
    content_id: str | None = None
    inline: bool = False
    part: str = Field(default="", description="MIME part path, e.g. '2.1', to fetch it from the raw mail")
    mail_id: str | None = Field(
        default=None,
        description="the ingest mail the part lives in (answers: with `part` it names the bytes notify fetches)",
    )


class MailFlags(BaseModel):
    model_config = ConfigDict(frozen=True)
    auto_submitted: bool = False
    bounce: bool = False
    mailing_list: bool = False
    loop: bool = False
    malformed: bool = False


class ParsedMail(BaseModel):
    """What ingest learned from one raw mail; parsed once, carried to every consumer."""

    from_: Address | None = Field(default=None, alias="from")
    to: list[Address] = []
    cc: list[Address] = []
    reply_to: list[Address] = []
    subject: str = ""
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = []
    date: datetime | None = None
    headers: dict[str, str] = Field(default_factory=dict, description="selected raw headers, lower-cased")
    body_text: str = ""
    body_html: str | None = None
    attachments: list[Attachment] = []
    charset_problems: list[str] = []
    defects: list[str] = []
    flags: MailFlags = MailFlags()
    language: str | None = None
    bounce_original_message_id: str | None = None

    model_config = ConfigDict(frozen=True, populate_by_name=True)


@event
class MailReceived(EventData):
    mail_id: str
    sha256: str
    size: int
    source: Literal["smtp", "imap", "pop3", "http"] = "http"
    envelope_from: str | None = None
    envelope_to: list[str] = []
    mail: ParsedMail


# --------------------------------------------------------------------------- routing (router)


class RoutingReason(BaseModel):
    model_config = ConfigDict(frozen=True)
    step: str  # e.g. "filter", "system_address", "classifier", "default", "follow_up"
    detail: str
    data: dict[str, Any] = {}  # structured evidence: scores, matched filter id, ...


@event
class TicketRouted(EventData):
    """The router's decision for one mail. Carries the mail so tickets needs no hop back."""

    mail_id: str
    action: Literal["new", "follow_up", "ignore", "reject"]
    queue: str
    priority: int = 3
    title: str | None = None
    ticket_number: str | None = None  # set for follow-ups
    reopen: bool = False
    spam: bool = False
    spam_score: float = 0.0
    sender_not_on_ticket: bool = False
    reasons: list[RoutingReason] = []
    model_version: int | None = None
    envelope_to: list[str] = []
    mail: ParsedMail
    bounce: BounceInfo | None = None  # set when the mail is a bounce (DSN) of a mail with this Message-ID


class BounceInfo(BaseModel):
    """What a bounce says about the mail it returns: that mail's Message-ID (no angle brackets)
    and, when the DSN states them, the RFC 3464 Status (e.g. "5.1.1") and Diagnostic-Code."""

    model_config = ConfigDict(frozen=True)
    message_id: str
    status: str | None = None
    diagnostic: str | None = None


@event
class FilterChanged(EventData):
    filter_id: str
    name: str
    position: int
    match: dict[str, str]  # header name (or "body") -> regex
    actions: dict[str, Any]  # set_queue, set_priority, set_title, mark_spam, ignore, stop
    enabled: bool = True
    deleted: bool = False


@event
class SystemAddressChanged(EventData):
    email: str
    queue: str
    display_name: str = ""
    language_queues: dict[str, str] = {}  # language code -> queue, e.g. {"de": "Info-de"}
    deleted: bool = False


# --------------------------------------------------------------------------- queues (tickets)


class AutoResponse(BaseModel):
    model_config = ConfigDict(frozen=True)
    enabled: bool = True
    subject: str
    body: str


@event
class QueueConfigured(EventData):
    """A queue was created or changed (published on ticket.events, keyed by ``queue:<name>``).

    Tickets owns queues; router (follow-up policy) and notify (addresses, salutation,
    signature, auto responses) keep copies by consuming this event.
    """

    name: str
    group: str
    parent: str | None = None
    comment: str = ""
    system_address: str = "info@firstline.example"
    display_name: str = "Firstline"
    salutation: str = "Dear {{ customer_name or 'customer' }},"
    signature: str = "-- \nFirstline support"
    follow_up_policy: Literal["reopen", "reject", "new_ticket"] = "reopen"
    unlock_timeout_minutes: int = 0
    first_response_minutes: int = 0
    update_minutes: int = 0  # escalation: a customer contact must be followed up within this (0: off)
    solution_minutes: int = 0  # escalation: close within this of creation (0: off)
    escalation_warning_percent: int = 80  # EscalationWarning at this share of a due time (0: no warnings)
    auto_responses: dict[str, AutoResponse] = {}
    valid: bool = True


# --------------------------------------------------------------------------- tickets


@event
class TicketCreated(EventData):
    ticket_id: str
    ticket_number: str
    title: str
    queue: str
    priority: int = 3
    state: TicketState = "new"
    customer_email: str | None = None
    customer_id: str | None = None
    mail_id: str | None = None
    spam: bool = False
    split_from_ticket_id: str | None = None
    split_from_article_id: str | None = None


@event
class ArticleAdded(EventData):
    ticket_id: str
    article_id: str
    channel: Literal["email", "phone", "internal"] = "email"
    sender_type: Literal["customer", "agent", "system"] = "customer"
    visible_to_customer: bool = True
    from_: str | None = Field(default=None, alias="from")
    to: list[str] = []
    cc: list[str] = []
    reply_to: list[str] = []
    subject: str = ""
    body: str = ""
    body_html: str | None = None
    mail_id: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: list[str] = []
    attachments: list[Attachment] = []
    flags: MailFlags = MailFlags()
    sender_not_on_ticket: bool = False

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


@event
class TicketLocked(EventData):
    ticket_id: str
    agent: str


@event
class TicketUnlocked(EventData):
    ticket_id: str
    agent: str | None = None
    reason: Literal["manual", "forced", "timeout", "moved", "closed", "owner_changed", "merged"] = "manual"


@event
class OwnerChanged(EventData):
    ticket_id: str
    owner: str | None
    previous: str | None = None


@event
class ResponsibleChanged(EventData):
    ticket_id: str
    responsible: str | None
    previous: str | None = None


@event
class TicketMoved(EventData):
    ticket_id: str
    from_queue: str
    to_queue: str
    reason: str | None = None


@event
class StateChanged(EventData):
    ticket_id: str
    from_state: TicketState
    to_state: TicketState
    pending_until: datetime | None = None


@event
class PriorityChanged(EventData):
    ticket_id: str
    from_priority: int
    to_priority: int


@event
class TitleChanged(EventData):
    ticket_id: str
    title: str


@event
class NoteAdded(EventData):
    ticket_id: str
    article_id: str
    subject: str = ""
    body: str


@event
class PhoneArticleAdded(EventData):
    ticket_id: str
    article_id: str
    direction: Literal["inbound", "outbound"] = "inbound"
    subject: str = ""
    body: str


@event
class AnswerSent(EventData):
    """An agent's answer, queued for delivery; notify turns it into a mail."""

    ticket_id: str
    ticket_number: str
    article_id: str
    queue: str
    to: list[str]
    cc: list[str] = []
    subject: str
    body: str
    template: str | None = None
    message_id: str
    in_reply_to: str | None = None
    references: list[str] = []
    customer_name: str | None = None
    title: str | None = None
    agent_name: str | None = None
    attachments: list[Attachment] = []


@event
class AutoReplyRequested(EventData):
    """Tickets asks notify to send a queue's auto response (notify decides if it may)."""

    ticket_id: str
    ticket_number: str
    queue: str
    kind: AutoReplyKind
    to: str
    subject: str
    in_reply_to: str | None = None
    references: list[str] = []
    flags: MailFlags = MailFlags()
    message_id: str | None = None
    customer_name: str | None = None
    title: str | None = None


@event
class TicketMarkedSpam(EventData):
    ticket_id: str
    mail_id: str | None = None
    mail_ids: list[str] = []


@event
class TicketMerged(EventData):
    ticket_id: str
    into_ticket_id: str
    into_ticket_number: str


@event
class TicketAbsorbed(EventData):
    """The target side of a merge: the other ticket's articles are now shown here."""

    ticket_id: str
    source_ticket_id: str
    source_ticket_number: str
    article_ids: list[str] = []


@event
class TicketUnmerged(EventData):
    ticket_id: str
    from_ticket_id: str
    ticket_number: str = ""
    other_ticket_number: str = ""
    side: Literal["source", "target"] = "source"


@event
class TicketSplit(EventData):
    ticket_id: str
    article_id: str
    new_ticket_id: str
    new_ticket_number: str


@event
class PendingReminderReached(EventData):
    ticket_id: str
    pending_until: datetime


@event
class PendingAutoCloseReached(EventData):
    ticket_id: str
    to_state: TicketState


EscalationKind = Literal["first_response", "update", "solution"]


@event
class EscalationSettingsApplied(EventData):
    """The escalation times of the ticket's queue now apply to it (on creation, after a move or a
    reopen, or when the queue's times changed): due times are folded from these and the ticket's
    own events, so a replay reproduces them without reading the queue's stream."""

    ticket_id: str
    queue: str
    first_response_minutes: int = 0
    update_minutes: int = 0
    solution_minutes: int = 0
    warning_percent: int = 80


@event
class EscalationWarning(EventData):
    ticket_id: str
    kind: Literal["first_response", "update", "solution"]
    due_at: datetime


@event
class EscalationBreached(EventData):
    ticket_id: str
    kind: Literal["first_response", "update", "solution"]
    due_at: datetime


@event
class WatchStarted(EventData):
    ticket_id: str
    agent: str


@event
class WatchStopped(EventData):
    ticket_id: str
    agent: str


# --------------------------------------------------------------------------- delivery (notify)


@event
class AnswerDelivered(EventData):
    ticket_id: str
    article_id: str
    message_id: str
    relay_response: str
    refused: dict[str, str] = {}
    attempts: int = 1


@event
class DeliveryFailed(EventData):
    ticket_id: str
    article_id: str | None = None
    message_id: str
    reason: str
    permanent: bool = False
    smtp_code: int | None = None
    attempts: int = 1
    purpose: Literal["answer", "auto_reply", "notice"] = "answer"


@event
class DeliveryBounced(EventData):
    """A bounce came back for one of the ticket's answers (tickets stream): the bounce article
    references the answer article, whose delivery is now "bounced"."""

    ticket_id: str
    article_id: str  # the answer that bounced
    bounce_article_id: str  # the article holding the bounce mail
    message_id: str  # the answer's Message-ID, as the bounce quoted it
    status: str | None = None
    diagnostic: str | None = None


@event
class AutoReplySent(EventData):
    ticket_id: str
    kind: str
    to: str
    message_id: str


@event
class AutoReplySuppressed(EventData):
    ticket_id: str
    kind: str
    to: str
    reason: str


@event
class AgentNotified(EventData):
    ticket_id: str
    agent: str
    kind: str
    detail: str = ""
    message_id: str | None = None


# --------------------------------------------------------------------------- agents (gateway)

AgentNotificationKind = Literal[
    "new_ticket",
    "follow_up",
    "unlocked_timeout",
    "pending_reminder",
    "escalation_warning",
    "escalation_breach",
]


@event
class AgentProfileChanged(EventData):
    """An agent as other services need to know it (published on ``agent.directory``, keyed by
    ``agent:<username>``; the envelope's ``stream_version`` is the profile's revision, so the
    last version wins). ``readable_queues``: the queues the agent holds at least ``ro`` on."""

    agent: str
    email: str | None = None
    name: str = ""
    valid: bool = True
    language: str = "en"
    notifications: list[AgentNotificationKind] = []
    my_queues: list[str] = []
    readable_queues: list[str] = []
