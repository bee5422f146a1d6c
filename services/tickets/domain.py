"""The ticket aggregate: commands and the pure decisions that turn them into events.

Each ``decide_<command>(ticket, cmd, now)`` checks the rules against the ticket as folded from
its events and returns the events to append (an empty list when the command changes nothing),
or raises a :class:`~services.tickets.errors.TicketError`. Nothing here reads a clock, a
database or the network: ids come in the command (with fresh UUIDv7 defaults) and time as
``now``, so a decision retried after a version conflict is simply decided again.

The rules are OTRS's: one lock holder, who is the owner; an agent may not act on a ticket
another agent has locked, except to add an internal note or to watch it; only the holder
unlocks, or an admin with ``force`` (recorded as reason ``forced``); moving and closing unlock;
an answer locks an unlocked ticket to the agent. Merged and removed tickets refuse every
command except unmerge (and unwatch, and recording a delivery, which is a fact from outside).
Who may do what in which queue (ro, move_into, note, owner, priority, rw) is the gateway's
check, made before a command gets here.

Event order within one decision keeps every prefix consistent (owner before lock, unlock before
close), so time travel never shows a ticket that is closed and locked.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from services.tickets.errors import (
    AlreadyLocked,
    AttachmentsTooLarge,
    CannotMergeIntoSelf,
    FollowUpMakesNewTicket,
    InvalidInput,
    InvalidPriority,
    InvalidState,
    LockedByOther,
    NoRecipient,
    NotLocked,
    NotLockOwner,
    NotMerged,
    PendingTimeInPast,
    PendingTimeRequired,
    QueueNotPermitted,
    TicketError,
    TicketExists,
    TicketIsMerged,
    TicketIsRemoved,
    TicketNotFound,
    UnknownArticle,
    UnknownQueue,
)
from services.tickets.history import describe
from services.tickets.numbers import is_valid_ticket_number, ticket_hook
from services.tickets.state import (
    PRIORITY_NAMES,
    Article,
    EscalationSettings,
    Ticket,
    apply,
    evolve,
    fold,
    from_snapshot,
    state_at,
    to_snapshot,
)
from shared.envelope import new_id
from shared.events import (
    CLOSED_STATES,
    PENDING_STATES,
    AgentNotified,
    AnswerDelivered,
    AnswerSent,
    ArticleAdded,
    Attachment,
    AutoReplyRequested,
    AutoReplySent,
    AutoReplySuppressed,
    DeliveryBounced,
    DeliveryFailed,
    EscalationBreached,
    EscalationSettingsApplied,
    EscalationWarning,
    EventData,
    NoteAdded,
    OwnerChanged,
    PendingAutoCloseReached,
    PendingReminderReached,
    PhoneArticleAdded,
    PriorityChanged,
    QueueConfigured,
    ResponsibleChanged,
    StateChanged,
    TicketAbsorbed,
    TicketCreated,
    TicketLocked,
    TicketMarkedSpam,
    TicketMerged,
    TicketMoved,
    TicketRouted,
    TicketSplit,
    TicketState,
    TicketUnlocked,
    TicketUnmerged,
    TitleChanged,
    WatchStarted,
    WatchStopped,
)

__all__ = [
    # state (services.tickets.state)
    "Article", "Ticket", "apply", "evolve", "fold", "state_at", "to_snapshot", "from_snapshot",
    # history screens (services.tickets.history)
    "describe",
    # commands
    "CreateFromMail", "CreateByAgent", "FollowUpFromMail", "Lock", "Unlock", "SetOwner", "SetResponsible", "Move",
    "SetState", "SetPriority", "SetTitle", "AddNote", "AddPhoneArticle", "Answer", "MarkSpam",
    "Merge", "Unmerge", "Split", "Watch", "Unwatch", "RecordDelivery",
    # decisions
    "decide_create", "decide_create_by_agent", "decide_follow_up", "decide_lock", "decide_unlock", "decide_set_owner",
    "decide_set_responsible", "decide_watch", "decide_unwatch", "decide_move", "decide_set_state",
    "decide_set_priority", "decide_set_title", "decide_mark_spam", "decide_add_note",
    "decide_add_phone_article", "decide_answer", "decide_record_delivery", "decide_merge",
    "decide_unmerge", "decide_split", "answer_subject", "decide_record_notice", "decide_unlock_timeout",
    "decide_pending_due", "decide_escalation_settings", "decide_escalations", "escalation_settings_of",
    "ticket_attachments", "answer_attachments",
    # errors (all in services.tickets.errors)
    "TicketError",
]  # fmt: skip

# States an agent can choose (``new`` is only where tickets start; ``merged`` only by merging).
SETTABLE_STATES: tuple[str, ...] = (
    "open",
    *PENDING_STATES,
    "closed successful",
    "closed unsuccessful",
    "removed",
)
ANSWER_STATES: tuple[str, ...] = tuple(s for s in SETTABLE_STATES if s != "removed")
REOPENABLE_STATES: tuple[str, ...] = (*PENDING_STATES, "closed successful", "closed unsuccessful")
DEFAULT_MAIL_DOMAIN = "firstline.example"
SYSTEM_ACTOR = "system"  # who decides on mail from the router (the service names the real actor)


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class QueueGuard:
    """Where the acting agent may see tickets (``readable``) and where the command at hand is
    permitted (``permitted``), as the gateway works them out from the agent's groups.

    Checked on the ticket as loaded, in the command's own transaction: a ticket moved a moment
    before is judged by the queue it is in now, not the one a separate read saw.
    """

    readable: frozenset[str]
    permitted: frozenset[str]

    def admit(self, ticket: Ticket | None) -> None:
        if ticket is None:
            return  # the command's own rules answer for a ticket that does not exist
        if ticket.queue not in self.readable:
            raise TicketNotFound(f"no ticket {ticket.number}")
        if ticket.queue not in self.permitted:
            raise QueueNotPermitted(ticket.number, ticket.queue)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateFromMail:
    """A router decision with action ``new``; number and id come from the service."""

    routed: TicketRouted
    ticket_id: str
    ticket_number: str
    article_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateByAgent:
    """A phone or email ticket an agent opens (OTRS's AgentTicketPhone / AgentTicketEmail).

    ``phone``: the customer called; their call is the first article (inbound). ``email``: the
    agent writes to the customer; the mail is an ``AnswerSent``, so notify sends it like any
    answer. ``lock`` locks the ticket to its owner (``owner``, else the agent).
    """

    agent: str
    kind: Literal["phone", "email"]
    ticket_id: str
    ticket_number: str
    queue: str
    customer_email: str
    subject: str
    body: str
    customer_name: str | None = None
    priority: int = 3
    next_state: str = "open"
    pending_until: datetime | None = None
    lock: bool = False
    owner: str | None = None
    to: Sequence[str] | None = None  # email: defaults to the customer
    cc: Sequence[str] = ()
    agent_name: str | None = None
    article_id: str = field(default_factory=new_id)
    mail_domain: str = DEFAULT_MAIL_DOMAIN


@dataclass(frozen=True, slots=True, kw_only=True)
class FollowUpFromMail:
    """A router decision with action ``follow_up`` or ``reject`` for this ticket.

    ``follow_up_policy`` is the ticket's queue's (``QueueConfigured.follow_up_policy``), when the
    service knows it: the router decided on its copy of the ticket's state, which may lag (an
    agent closed the ticket a moment before the mail came), so the policy is applied again to
    the state the ticket really has.
    """

    routed: TicketRouted
    article_id: str = field(default_factory=new_id)
    follow_up_policy: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Lock:
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unlock:
    agent: str
    force: bool = False  # admins only: the gateway checks the right, the event records it


@dataclass(frozen=True, slots=True, kw_only=True)
class SetOwner:
    agent: str
    owner: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetResponsible:
    agent: str
    responsible: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Move:
    agent: str
    queue: str
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetState:
    agent: str
    state: str
    pending_until: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SetPriority:
    agent: str
    priority: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SetTitle:
    agent: str
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddNote:
    agent: str
    body: str
    subject: str = ""
    article_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class AddPhoneArticle:
    agent: str
    body: str
    subject: str = ""
    direction: str = "inbound"
    article_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """An answer to the customer. ``to`` defaults to the ticket's customer; ``subject`` to
    ``Re: <title>``; the ticket hook is added unless the subject already has it."""

    agent: str
    body: str
    subject: str | None = None
    to: Sequence[str] | None = None
    cc: Sequence[str] = ()
    template: str | None = None
    next_state: str = "open"
    pending_until: datetime | None = None
    customer_name: str | None = None
    agent_name: str | None = None  # the agent's display name for the signature; defaults to ``agent``
    attachments: Sequence[Attachment] = ()  # resolved by :func:`answer_attachments`
    article_id: str = field(default_factory=new_id)
    mail_domain: str = DEFAULT_MAIL_DOMAIN


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkSpam:
    agent: str
    junk_queue: str = "Junk"


@dataclass(frozen=True, slots=True, kw_only=True)
class Merge:
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unmerge:
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """Split one article off into a new ticket. The aggregate keeps no bodies, so the service
    passes the article's body (and attachments) from the event or the zoom read model."""

    agent: str
    article_id: str
    new_ticket_id: str
    new_ticket_number: str
    body: str
    body_html: str | None = None
    attachments: Sequence[Attachment] = ()
    title: str | None = None
    queue: str | None = None
    new_article_id: str = field(default_factory=new_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Watch:
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unwatch:
    agent: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordDelivery:
    """A result from notify (``delivery.events``), to be kept in the ticket's own stream."""

    result: AnswerDelivered | DeliveryFailed


# --------------------------------------------------------------------------- guards


def _existing(ticket: Ticket | None) -> Ticket:
    if ticket is None:
        raise TicketNotFound("no such ticket")
    return ticket


def _active(ticket: Ticket | None) -> Ticket:
    """The ticket, unless it is merged or removed: those take no commands."""
    t = _existing(ticket)
    if t.state == "merged" and t.merged_into is not None:
        raise TicketIsMerged(t.number, t.merged_into.into_ticket_id, t.merged_into.into_number)
    if t.state == "merged":
        raise InvalidState(f"ticket {t.number} is merged")
    if t.state == "removed":
        raise TicketIsRemoved(f"ticket {t.number} is removed")
    return t


def _actionable(ticket: Ticket | None, agent: str) -> Ticket:
    """The ticket, if ``agent`` may act on it: active, and not locked by someone else."""
    t = _active(ticket)
    if t.lock is not None and t.lock != agent:
        raise LockedByOther(t.number, t.lock)
    return t


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _check_target_state(
    state: str, pending_until: datetime | None, now: datetime, allowed: Collection[str]
) -> datetime | None:
    """Validate a state an agent chose; returns the pending time to record (None if not pending)."""
    if state not in allowed:
        raise InvalidState(f"state {state!r} cannot be set here; choose one of: {', '.join(allowed)}")
    if state not in PENDING_STATES:
        return None
    if pending_until is None:
        raise PendingTimeRequired(f"state {state!r} needs a pending time")
    if _aware(pending_until) <= _aware(now):
        raise PendingTimeInPast(f"pending time {pending_until.isoformat()} is not in the future")
    return pending_until


def _text(field_name: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidInput(field_name, "must not be empty")
    return value


# --------------------------------------------------------------------------- building blocks


class _Decision:
    """Collects the events of one decision, keeping the ticket they lead to at hand."""

    def __init__(self, ticket: Ticket, actor: str, now: datetime) -> None:
        self.ticket, self.actor, self.now = ticket, actor, now
        self.events: list[EventData] = []

    @classmethod
    def creating(cls, created: TicketCreated, now: datetime) -> _Decision:
        decision = cls(evolve(None, created, actor=SYSTEM_ACTOR, at=now, version=0), SYSTEM_ACTOR, now)
        decision.events.append(created)
        return decision

    def add(self, *events: EventData) -> None:
        for event in events:
            self.ticket = evolve(self.ticket, event, actor=self.actor, at=self.now, version=self.ticket.version + 1)
            self.events.append(event)


def _owner_events(t: Ticket, owner: str | None) -> list[EventData]:
    if t.owner == owner:
        return []
    return [OwnerChanged(ticket_id=t.ticket_id, owner=owner, previous=t.owner)]


def _lock_events(t: Ticket, agent: str) -> list[EventData]:
    """Lock to ``agent``; the owner changes first, so the lock holder is always the owner."""
    return [*_owner_events(t, agent), TicketLocked(ticket_id=t.ticket_id, agent=agent)]


UnlockReason = Literal["manual", "forced", "timeout", "moved", "closed", "owner_changed", "merged"]


def _unlock_events(t: Ticket, reason: UnlockReason) -> list[EventData]:
    if t.lock is None:
        return []
    return [TicketUnlocked(ticket_id=t.ticket_id, agent=t.lock, reason=reason)]


def _state_events(t: Ticket, state: str, pending_until: datetime | None) -> list[EventData]:
    """Change state (closing unlocks first); nothing when state and pending time are as asked."""
    if t.state == state and t.pending_until == pending_until:
        return []
    unlock = _unlock_events(t, "closed") if state in CLOSED_STATES else []
    change = StateChanged(
        ticket_id=t.ticket_id,
        from_state=t.state,
        to_state=state,  # type: ignore[arg-type]  # validated against the TicketState literal
        pending_until=pending_until,
    )
    return [*unlock, change]


def _move_events(t: Ticket, queue: str, reason: str | None) -> list[EventData]:
    """Move to ``queue``; as in OTRS, a moved ticket is no longer locked."""
    if t.queue == queue:
        return []
    moved = TicketMoved(ticket_id=t.ticket_id, from_queue=t.queue, to_queue=queue, reason=reason)
    return [moved, *_unlock_events(t, "moved")]


# --------------------------------------------------------------------------- mail from the router


def _format_address(name: str, email: str) -> str:
    if not name:
        return email
    if any(c in name for c in ',;:<>@()[]"\\'):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{email}>"


def _customer_id(email: str | None) -> str | None:
    """The customer's organisation: the domain of their address, lower-cased."""
    if not email or "@" not in email:
        return None
    return email.rsplit("@", 1)[1].lower() or None


def _mail_article(ticket_id: str, article_id: str, routed: TicketRouted) -> ArticleAdded:
    mail = routed.mail
    return ArticleAdded(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        ticket_id=ticket_id,
        article_id=article_id,
        channel="email",
        sender_type="customer",
        from_=_format_address(mail.from_.name, mail.from_.email) if mail.from_ else None,
        to=[_format_address(a.name, a.email) for a in mail.to],
        cc=[_format_address(a.name, a.email) for a in mail.cc],
        subject=mail.subject,
        body=mail.body_text,
        body_html=mail.body_html,
        mail_id=routed.mail_id,
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=list(mail.references),
        attachments=list(mail.attachments),
        flags=mail.flags,
        sender_not_on_ticket=routed.sender_not_on_ticket,
    )


def _auto_reply_to(routed: TicketRouted) -> str | None:
    """Where an auto reply may go: nowhere for spam, bounces, auto-replies, lists and loops."""
    flags = routed.mail.flags
    if routed.spam or flags.auto_submitted or flags.bounce or flags.mailing_list or flags.loop:
        return None
    mail = routed.mail
    if mail.reply_to and mail.reply_to[0].email:
        return mail.reply_to[0].email
    return _sender_email(routed)


def _sender_email(routed: TicketRouted) -> str | None:
    sender = routed.mail.from_
    return sender.email if sender and sender.email else None


AutoReplyKind = Literal["new_ticket", "follow_up_closed_reject", "follow_up_closed_new"]


def _auto_reply(t: Ticket, routed: TicketRouted, kind: AutoReplyKind) -> list[EventData]:
    recipient = _auto_reply_to(routed)
    if recipient is None:
        return []
    mail = routed.mail
    request = AutoReplyRequested(
        ticket_id=t.ticket_id,
        ticket_number=t.number,
        queue=t.queue,
        kind=kind,
        to=recipient,
        subject=answer_subject(t.number, mail.subject or t.title),
        in_reply_to=mail.message_id,
        references=_thread_of(mail.references, mail.message_id),
        flags=mail.flags,
        customer_name=mail.from_.name if mail.from_ and mail.from_.name else None,
        title=t.title,
        message_id=_auto_reply_message_id(t.ticket_id, kind, mail.message_id),
    )
    return [request]


def _auto_reply_message_id(ticket_id: str, kind: str, in_reply_to: str | None) -> str:
    """Deterministic, so a redelivered decision asks for the same mail, and the router can thread replies."""
    seed = uuid.uuid5(uuid.NAMESPACE_URL, f"firstline:auto-reply:{ticket_id}:{kind}:{in_reply_to or ''}")
    return f"<auto.{seed}@{DEFAULT_MAIL_DOMAIN}>"


def _thread_of(references: Sequence[str], message_id: str | None) -> list[str]:
    """References for a reply to ``message_id``: its own references, then itself."""
    if message_id is None:
        return list(references)
    return [*(r for r in references if r != message_id), message_id]


def _clamped_priority(priority: int) -> int:
    """A router's priority out of range is clamped: refusing it would lose the mail."""
    return min(max(priority, 1), 5)


def decide_create(ticket: Ticket | None, cmd: CreateFromMail, now: datetime) -> list[EventData]:
    """A new ticket from a mail: TicketCreated, the mail as first article, maybe an auto reply.

    Redelivery of the mail that created ``ticket`` decides nothing.
    """
    routed = cmd.routed
    if ticket is not None:
        if ticket.has_mail(routed.mail_id):
            return []
        raise TicketExists(f"ticket {ticket.number} already exists")
    if routed.action != "new":
        raise InvalidInput("routed.action", f"a new ticket needs action 'new', not {routed.action!r}")
    if not is_valid_ticket_number(cmd.ticket_number):
        raise InvalidInput("ticket_number", f"{cmd.ticket_number!r} is not a valid ticket number")
    customer = _sender_email(routed)
    created = TicketCreated(
        ticket_id=cmd.ticket_id,
        ticket_number=cmd.ticket_number,
        title=(routed.title or routed.mail.subject).strip() or "(no subject)",
        queue=routed.queue,
        priority=_clamped_priority(routed.priority),
        customer_email=customer,
        customer_id=_customer_id(customer),
        mail_id=routed.mail_id,
        spam=routed.spam,
    )
    d = _Decision.creating(created, now)
    d.add(_mail_article(cmd.ticket_id, cmd.article_id, routed))
    d.add(*_auto_reply(d.ticket, routed, "new_ticket"))
    return d.events


CREATE_STATES: tuple[str, ...] = ("new", *SETTABLE_STATES)


def _single_address(value: str) -> bool:
    """One plain address, ``local@domain``: what a ticket's customer must be for notify to write."""
    local, at_sign, domain = value.rpartition("@")
    plain = not any(c.isspace() or c in ',;<>()[]"\\' for c in value)
    return bool(at_sign and local and domain and "." in domain.strip(".") and plain)


def _check_new_ticket(cmd: CreateByAgent, now: datetime, known_queues: Collection[str] | None) -> datetime | None:
    """Every refusal before anything is decided; returns the pending time to record."""
    if known_queues is not None and cmd.queue not in known_queues:
        raise UnknownQueue(f"there is no queue {cmd.queue!r}")
    if not _single_address(cmd.customer_email.strip()):
        raise InvalidInput("customer.email", f"{cmd.customer_email!r} is not an email address")
    _text("subject", cmd.subject)
    _text("body", cmd.body)
    if isinstance(cmd.priority, bool) or cmd.priority not in PRIORITY_NAMES:
        raise InvalidPriority(f"priority must be 1 (very low) .. 5 (very high), not {cmd.priority!r}")
    if cmd.owner is not None:
        _text("owner", cmd.owner)
    if not is_valid_ticket_number(cmd.ticket_number):
        raise InvalidInput("ticket_number", f"{cmd.ticket_number!r} is not a valid ticket number")
    return _check_target_state(cmd.next_state, cmd.pending_until, now, CREATE_STATES)


def decide_create_by_agent(
    ticket: Ticket | None, cmd: CreateByAgent, now: datetime, known_queues: Collection[str] | None = None
) -> list[EventData]:
    """A ticket an agent opens: ``TicketCreated``, owner and lock, the first article (the
    customer's call, or the agent's mail as ``AnswerSent``), then the state chosen (closing
    unlocks first). The same command again (a retried request: same ticket and article ids)
    decides nothing; another command on an existing ticket id is ``TicketExists``."""
    if ticket is not None:
        if ticket.article(cmd.article_id) is not None:
            return []
        raise TicketExists(f"ticket {ticket.number} already exists")
    pending_until = _check_new_ticket(cmd, now, known_queues)
    email = cmd.customer_email.strip()
    created = TicketCreated(
        ticket_id=cmd.ticket_id,
        ticket_number=cmd.ticket_number,
        title=cmd.subject.strip(),
        queue=cmd.queue,
        priority=cmd.priority,
        state="new" if cmd.next_state == "new" else "open",
        customer_email=email,
        customer_id=_customer_id(email),
    )
    d = _Decision.creating(created, now)
    d.actor = cmd.agent
    owner = cmd.owner.strip() if cmd.owner else None
    if cmd.lock and cmd.next_state not in CLOSED_STATES:
        d.add(*_lock_events(d.ticket, owner or cmd.agent))
    else:
        d.add(*_owner_events(d.ticket, owner))
    d.add(_first_article(d.ticket, cmd, email))
    d.add(*_state_events(d.ticket, cmd.next_state, pending_until))
    return d.events


def _first_article(t: Ticket, cmd: CreateByAgent, email: str) -> EventData:
    if cmd.kind == "phone":
        return PhoneArticleAdded(
            ticket_id=t.ticket_id, article_id=cmd.article_id, direction="inbound", subject=cmd.subject, body=cmd.body
        )
    recipients = list(cmd.to) if cmd.to else [_format_address(cmd.customer_name or "", email)]
    return AnswerSent(
        ticket_id=t.ticket_id,
        ticket_number=t.number,
        article_id=cmd.article_id,
        queue=t.queue,
        to=recipients,
        cc=list(cmd.cc),
        subject=answer_subject(t.number, t.title, cmd.subject),
        body=cmd.body,
        message_id=f"<{cmd.article_id}@{cmd.mail_domain}>",
        customer_name=cmd.customer_name,
        title=t.title,
        agent_name=cmd.agent_name or cmd.agent,
    )


def decide_follow_up(ticket: Ticket | None, cmd: FollowUpFromMail, now: datetime) -> list[EventData]:
    """A customer's follow-up: the mail becomes an article; the router's decision says whether
    the ticket reopens, or (``reject``) the mail is kept but answered with a reject notice.

    A merged ticket raises :class:`TicketIsMerged`, naming the ticket the mail belongs to now.
    """
    t = _existing(ticket)
    routed = cmd.routed
    if routed.action not in ("follow_up", "reject"):
        raise InvalidInput("routed.action", f"a follow-up needs 'follow_up' or 'reject', not {routed.action!r}")
    if routed.ticket_number is not None and routed.ticket_number != t.number:
        raise InvalidInput("routed.ticket_number", f"is {routed.ticket_number}, not this ticket's {t.number}")
    if t.has_mail(routed.mail_id):
        return []
    t = _active(t)
    action, reopen = _follow_up_action(t, routed, cmd.follow_up_policy)
    d = _Decision(t, SYSTEM_ACTOR, now)
    d.add(_mail_article(t.ticket_id, cmd.article_id, routed))
    d.add(*_bounce_link(d.ticket, cmd.article_id, routed))
    if action == "reject":
        d.add(*_auto_reply(d.ticket, routed, "follow_up_closed_reject"))
    elif reopen and t.state in REOPENABLE_STATES:
        d.add(*_state_events(d.ticket, "open", None))
    return d.events


# --- bounces (issues 6, 10): a DSN of one of our answers is linked to that answer


def _bounce_link(t: Ticket, bounce_article_id: str, routed: TicketRouted) -> list[EventData]:
    """DeliveryBounced when the mail is a bounce of an answer of this ticket (by Message-ID)."""
    bounce = routed.bounce
    if bounce is None:
        return []
    wanted = bounce.message_id.strip().strip("<>")
    answer = next(
        (a for a in t.articles if a.kind == "answer" and (a.message_id or "").strip().strip("<>") == wanted), None
    )
    if answer is None:
        return []
    return [
        DeliveryBounced(
            ticket_id=t.ticket_id,
            article_id=answer.article_id,
            bounce_article_id=bounce_article_id,
            message_id=answer.message_id or wanted,
            status=bounce.status,
            diagnostic=bounce.diagnostic,
        )
    ]


_CLOSED_FOR_FOLLOW_UP = ("closed successful", "closed unsuccessful")


def _follow_up_action(t: Ticket, routed: TicketRouted, policy: str | None) -> tuple[str, bool]:
    """(action, reopen) for a follow-up: the router's, corrected by the queue's policy for the
    ticket's real state. As in OTRS, a pending ticket is reopened by a customer's mail; a closed
    one as its queue says: ``reopen``, ``reject`` (kept, answered with a notice) or
    ``new_ticket`` (:class:`FollowUpMakesNewTicket`: the service opens a new ticket)."""
    if policy is None or routed.action != "follow_up":
        return routed.action, routed.reopen
    if t.state in _CLOSED_FOR_FOLLOW_UP and policy == "reject":
        return "reject", False
    if t.state in _CLOSED_FOR_FOLLOW_UP and policy == "new_ticket":
        raise FollowUpMakesNewTicket(f"ticket {t.number} is {t.state}; its queue opens a new ticket for follow-ups")
    return "follow_up", routed.reopen or t.state in REOPENABLE_STATES


# --------------------------------------------------------------------------- lock and people


def decide_lock(ticket: Ticket | None, cmd: Lock, now: datetime) -> list[EventData]:
    t = _active(ticket)
    if t.lock == cmd.agent:
        raise AlreadyLocked(f"ticket {t.number} is already locked by you ({cmd.agent})")
    if t.lock is not None:
        raise LockedByOther(t.number, t.lock)
    if t.is_closed:
        raise InvalidState(f"ticket {t.number} is {t.state}; a closed ticket cannot be locked")
    return _lock_events(t, cmd.agent)


def decide_unlock(ticket: Ticket | None, cmd: Unlock, now: datetime) -> list[EventData]:
    """Only the holder unlocks; ``force`` (an admin) releases anyone's lock, recorded as forced."""
    t = _active(ticket)
    if t.lock is None:
        raise NotLocked(f"ticket {t.number} is not locked")
    if t.lock == cmd.agent:
        return _unlock_events(t, "manual")
    if not cmd.force:
        raise NotLockOwner(t.number, t.lock, cmd.agent)
    return _unlock_events(t, "forced")


def decide_set_owner(ticket: Ticket | None, cmd: SetOwner, now: datetime) -> list[EventData]:
    """A locked ticket stays locked, now by the new owner (unlock, owner, lock: explicit events,
    so projections never infer a lock); an unlocked one stays unlocked."""
    t = _actionable(ticket, cmd.agent)
    if cmd.owner is not None:
        _text("owner", cmd.owner)
    if t.owner == cmd.owner:
        return []
    d = _Decision(t, cmd.agent, now)
    was_locked = t.lock is not None
    d.add(*_unlock_events(d.ticket, "owner_changed"))
    d.add(*_owner_events(d.ticket, cmd.owner))
    if was_locked and cmd.owner is not None:
        d.add(TicketLocked(ticket_id=t.ticket_id, agent=cmd.owner))
    return d.events


def decide_set_responsible(ticket: Ticket | None, cmd: SetResponsible, now: datetime) -> list[EventData]:
    t = _actionable(ticket, cmd.agent)
    if cmd.responsible is not None:
        _text("responsible", cmd.responsible)
    if t.responsible == cmd.responsible:
        return []
    return [ResponsibleChanged(ticket_id=t.ticket_id, responsible=cmd.responsible, previous=t.responsible)]


def decide_watch(ticket: Ticket | None, cmd: Watch, now: datetime) -> list[EventData]:
    """Anyone may watch, even a ticket locked by someone else; watching twice changes nothing."""
    t = _active(ticket)
    if cmd.agent in t.watchers:
        return []
    return [WatchStarted(ticket_id=t.ticket_id, agent=cmd.agent)]


def decide_unwatch(ticket: Ticket | None, cmd: Unwatch, now: datetime) -> list[EventData]:
    """Allowed on merged and removed tickets too, so nobody is stuck watching one."""
    t = _existing(ticket)
    if cmd.agent not in t.watchers:
        return []
    return [WatchStopped(ticket_id=t.ticket_id, agent=cmd.agent)]


# --------------------------------------------------------------------------- ticket fields


def decide_move(
    ticket: Ticket | None, cmd: Move, now: datetime, known_queues: Collection[str] | None = None
) -> list[EventData]:
    """Move to another queue (and unlock). ``known_queues``, when given, must contain it."""
    t = _actionable(ticket, cmd.agent)
    _text("queue", cmd.queue)
    if known_queues is not None and cmd.queue not in known_queues:
        raise UnknownQueue(f"there is no queue {cmd.queue!r}")
    return _move_events(t, cmd.queue, cmd.reason)


def decide_set_state(ticket: Ticket | None, cmd: SetState, now: datetime) -> list[EventData]:
    """Set a state; pending states need a future pending time; closing unlocks."""
    t = _actionable(ticket, cmd.agent)
    pending_until = _check_target_state(cmd.state, cmd.pending_until, now, SETTABLE_STATES)
    return _state_events(t, cmd.state, pending_until)


def decide_set_priority(ticket: Ticket | None, cmd: SetPriority, now: datetime) -> list[EventData]:
    t = _actionable(ticket, cmd.agent)
    if isinstance(cmd.priority, bool) or cmd.priority not in PRIORITY_NAMES:
        raise InvalidPriority(f"priority must be 1 (very low) .. 5 (very high), not {cmd.priority!r}")
    if t.priority == cmd.priority:
        return []
    return [PriorityChanged(ticket_id=t.ticket_id, from_priority=t.priority, to_priority=cmd.priority)]


def decide_set_title(ticket: Ticket | None, cmd: SetTitle, now: datetime) -> list[EventData]:
    t = _actionable(ticket, cmd.agent)
    title = _text("title", cmd.title).strip()
    if t.title == title:
        return []
    return [TitleChanged(ticket_id=t.ticket_id, title=title)]


def decide_mark_spam(ticket: Ticket | None, cmd: MarkSpam, now: datetime) -> list[EventData]:
    """Spam, as OTRS's Junk queue is used: move to Junk, label it, close as unsuccessful.

    The label (``TicketMarkedSpam`` with the mail that opened the ticket) is what the router's
    classifier learns from. Marking a ticket that is already spam, in Junk and closed does nothing.
    """
    t = _actionable(ticket, cmd.agent)
    d = _Decision(t, cmd.agent, now)
    d.add(*_move_events(d.ticket, cmd.junk_queue, "spam"))
    if not t.spam:
        first_mail = next((a.mail_id for a in t.articles if a.mail_id is not None), None)
        d.add(TicketMarkedSpam(ticket_id=t.ticket_id, mail_id=first_mail))
    d.add(*_state_events(d.ticket, "closed unsuccessful", None))
    return d.events


# --------------------------------------------------------------------------- articles


def decide_add_note(ticket: Ticket | None, cmd: AddNote, now: datetime) -> list[EventData]:
    """An internal note. Allowed on a ticket locked by another agent (OTRS's ``note`` right)."""
    t = _active(ticket)
    body = _text("body", cmd.body)
    return [NoteAdded(ticket_id=t.ticket_id, article_id=cmd.article_id, subject=cmd.subject, body=body)]


def decide_add_phone_article(ticket: Ticket | None, cmd: AddPhoneArticle, now: datetime) -> list[EventData]:
    t = _actionable(ticket, cmd.agent)
    body = _text("body", cmd.body)
    if cmd.direction not in ("inbound", "outbound"):
        raise InvalidInput("direction", f"must be 'inbound' or 'outbound', not {cmd.direction!r}")
    call = PhoneArticleAdded(
        ticket_id=t.ticket_id,
        article_id=cmd.article_id,
        direction=cmd.direction,  # type: ignore[arg-type]  # checked just above
        subject=cmd.subject,
        body=body,
    )
    return [call]


_REPLY_PREFIX = "re:"


def answer_subject(number: str, title: str, subject: str | None = None) -> str:
    """The subject of a mail to the customer: ``subject`` if given, else ``Re: <title>``, with
    the ticket hook ``[Ticket#<number>]`` in front unless it is already in there."""
    hook = ticket_hook(number)
    if subject and subject.strip():
        text = subject.strip()
    else:
        text = title.strip()
        if text.lower().startswith(hook.lower()):
            text = text[len(hook) :].lstrip()
        if not text.lower().startswith(_REPLY_PREFIX):
            text = f"Re: {text}"
    return text if hook.lower() in text.lower() else f"{hook} {text}"


def _threading(t: Ticket) -> tuple[str | None, list[str]]:
    """In-Reply-To and References for an answer: the customer's last mail, and its thread."""
    last = t.last_customer_mail()
    if last is None or last.message_id is None:
        return None, []
    references = [r for r in last.references if r != last.message_id]
    return last.message_id, [*references, last.message_id]


def decide_answer(ticket: Ticket | None, cmd: Answer, now: datetime) -> list[EventData]:
    """Answer the customer (notify delivers ``AnswerSent``).

    An unlocked ticket is locked to the agent first (OTRS), unless the answer closes it, in
    which case the agent just becomes the owner. A closed ticket answered without closing is
    reopened before it is locked. Then the state the agent chose (default ``open``).
    """
    t = _actionable(ticket, cmd.agent)
    pending_until = _check_target_state(cmd.next_state, cmd.pending_until, now, ANSWER_STATES)
    body = _text("body", cmd.body)
    if cmd.to is not None:
        recipients = list(cmd.to)
    else:
        recipients = [t.customer_email] if t.customer_email else []
    if not recipients:
        raise NoRecipient(f"ticket {t.number} has no customer address; name a recipient")
    closing = cmd.next_state in CLOSED_STATES
    d = _Decision(t, cmd.agent, now)
    if t.is_closed and not closing:
        d.add(*_state_events(d.ticket, cmd.next_state, pending_until))
    if d.ticket.lock is None:
        d.add(*(_owner_events(d.ticket, cmd.agent) if closing else _lock_events(d.ticket, cmd.agent)))
    in_reply_to, references = _threading(t)
    d.add(
        AnswerSent(
            ticket_id=t.ticket_id,
            ticket_number=t.number,
            article_id=cmd.article_id,
            queue=t.queue,
            to=recipients,
            cc=list(cmd.cc),
            subject=answer_subject(t.number, t.title, cmd.subject),
            body=body,
            template=cmd.template,
            message_id=f"<{cmd.article_id}@{cmd.mail_domain}>",
            in_reply_to=in_reply_to,
            references=references,
            customer_name=cmd.customer_name,
            title=t.title,
            agent_name=cmd.agent_name or cmd.agent,
            attachments=list(cmd.attachments),
        )
    )
    d.add(*_state_events(d.ticket, cmd.next_state, pending_until))
    return d.events


def ticket_attachments(articles: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], Attachment]:
    """The attachments an answer may carry: every attachment of the ticket's articles (as the zoom
    lists them, rows of the articles read model), keyed by (mail id, part). A mail's attachment
    lives in the article's mail; an answer's own attachments name their mail themselves."""
    found: dict[tuple[str, str], Attachment] = {}
    for article in articles:
        for raw in article.get("attachments") or []:
            attachment = Attachment.model_validate(raw)
            mail_id = attachment.mail_id or article.get("mail_id")
            if mail_id and attachment.part:
                found.setdefault((mail_id, attachment.part), attachment.model_copy(update={"mail_id": mail_id}))
    return found


def answer_attachments(
    requested: Sequence[Mapping[str, Any]], available: Mapping[tuple[str, str], Attachment], max_bytes: int
) -> list[Attachment]:
    """The full entries for an answer's ``attachments: [{mail_id, part}]``.

    Each must be an attachment of this ticket (``available``, see :func:`ticket_attachments`),
    else :class:`InvalidInput` naming ``attachments[i]``; a repeated one is kept once. Together
    they may not exceed ``max_bytes`` (:class:`AttachmentsTooLarge`).
    """
    chosen: list[Attachment] = []
    seen: set[tuple[str, str]] = set()
    for index, ref in enumerate(requested):
        key = (str(ref.get("mail_id") or ""), str(ref.get("part") or ""))
        attachment = available.get(key)
        if attachment is None:
            raise InvalidInput(
                f"attachments[{index}]", f"part {key[1]!r} of mail {key[0]!r} is not an attachment of this ticket"
            )
        if key not in seen:
            seen.add(key)
            chosen.append(attachment)
    total = sum(a.size for a in chosen)
    if total > max_bytes:
        raise AttachmentsTooLarge(
            "attachments", f"together {total} bytes, more than the {max_bytes} an answer may carry"
        )
    return chosen


def decide_record_delivery(ticket: Ticket | None, cmd: RecordDelivery, now: datetime) -> list[EventData]:
    """Keep notify's delivery result in the ticket's stream. Works on any ticket (it is a fact,
    not an agent's act); a result that changes nothing (redelivery, failure after delivery) is
    dropped."""
    t = _existing(ticket)
    result = cmd.result
    if result.ticket_id != t.ticket_id:
        raise InvalidInput("result.ticket_id", f"is {result.ticket_id}, not this ticket's {t.ticket_id}")
    article = t.article(result.article_id) if result.article_id is not None else None
    if article is None or article.kind != "answer":
        raise UnknownArticle(f"ticket {t.number} has no answer {result.article_id}")
    if article.delivery in ("delivered", "bounced"):  # a late result never undoes a bounce
        return []
    if isinstance(result, DeliveryFailed) and article.delivery == "failed":
        detail = f"{result.reason} (permanent)" if result.permanent else result.reason
        if article.delivery_detail == detail:
            return []
    return [result]


# --------------------------------------------------------------------------- merge and split


def decide_merge(
    source: Ticket | None, target: Ticket | None, cmd: Merge, now: datetime
) -> tuple[list[EventData], list[EventData]]:
    """Merge ``source`` into ``target``: (events for source's stream, events for target's).

    The source is unlocked and set to ``merged``; the target lists the source's articles. Both
    histories are kept, and :func:`decide_unmerge` undoes it with new events.
    """
    s, tgt = _existing(source), _existing(target)
    if s.ticket_id == tgt.ticket_id:
        raise CannotMergeIntoSelf(f"ticket {s.number} cannot be merged into itself")
    s = _actionable(s, cmd.agent)
    tgt = _active(tgt)
    d = _Decision(s, cmd.agent, now)
    d.add(*_unlock_events(d.ticket, "closed"))
    d.add(TicketMerged(ticket_id=s.ticket_id, into_ticket_id=tgt.ticket_id, into_ticket_number=tgt.number))
    d.add(*_state_events(d.ticket, "merged", None))
    absorbed = TicketAbsorbed(
        ticket_id=tgt.ticket_id,
        source_ticket_id=s.ticket_id,
        source_ticket_number=s.number,
        article_ids=[a.article_id for a in s.articles],
    )
    return d.events, [absorbed]


def decide_unmerge(
    source: Ticket | None, target: Ticket | None, cmd: Unmerge, now: datetime
) -> tuple[list[EventData], list[EventData]]:
    """Undo a merge: the source gets back the state it had; the target no longer lists it.

    The target side is written whatever the target's state or lock: it only forgets articles
    that were never its own.
    """
    s, tgt = _existing(source), _existing(target)
    merge = s.merged_into
    if s.state != "merged" or merge is None or merge.into_ticket_id != tgt.ticket_id:
        raise NotMerged(f"ticket {s.number} is not merged into ticket {tgt.number}")
    d = _Decision(s, cmd.agent, now)
    d.add(*_state_events(d.ticket, merge.previous_state, merge.previous_pending_until))
    d.add(
        TicketUnmerged(
            ticket_id=s.ticket_id,
            from_ticket_id=tgt.ticket_id,
            ticket_number=s.number,
            other_ticket_number=tgt.number,
            side="source",
        )
    )
    target_side = TicketUnmerged(
        ticket_id=tgt.ticket_id,
        from_ticket_id=s.ticket_id,
        ticket_number=tgt.number,
        other_ticket_number=s.number,
        side="target",
    )
    return d.events, [target_side]


_KIND_CHANNEL = {"email": "email", "answer": "email", "phone": "phone", "note": "internal"}


def decide_split(ticket: Ticket | None, cmd: Split, now: datetime) -> tuple[list[EventData], list[EventData]]:
    """Split an article off into a new ticket: (events for this ticket, events for the new one).

    The new ticket takes the customer, queue (unless given) and priority of this one and starts
    ``open``: an agent made it on purpose. The copied article keeps the mail's headers for
    threading but not its ``mail_id``, which stays with the original article.
    """
    t = _actionable(ticket, cmd.agent)
    article = t.article(cmd.article_id)
    if article is None:
        raise UnknownArticle(f"ticket {t.number} has no article {cmd.article_id}")
    if not is_valid_ticket_number(cmd.new_ticket_number):
        raise InvalidInput("new_ticket_number", f"{cmd.new_ticket_number!r} is not a valid ticket number")
    split = TicketSplit(
        ticket_id=t.ticket_id,
        article_id=article.article_id,
        new_ticket_id=cmd.new_ticket_id,
        new_ticket_number=cmd.new_ticket_number,
    )
    created = TicketCreated(
        ticket_id=cmd.new_ticket_id,
        ticket_number=cmd.new_ticket_number,
        title=(cmd.title or article.subject or t.title).strip() or t.title,
        queue=cmd.queue or t.queue,
        priority=t.priority,
        state="open",
        customer_email=t.customer_email,
        customer_id=t.customer_id,
    )
    copy = ArticleAdded(  # type: ignore[call-arg]  # ``from_`` is accepted: populate_by_name
        ticket_id=cmd.new_ticket_id,
        article_id=cmd.new_article_id,
        channel=_KIND_CHANNEL[article.kind],  # type: ignore[arg-type]
        sender_type=article.sender_type,
        visible_to_customer=article.visible_to_customer,
        from_=article.sender,
        to=list(article.to),
        cc=list(article.cc),
        subject=article.subject,
        body=cmd.body,
        body_html=cmd.body_html,
        message_id=article.message_id,
        in_reply_to=article.in_reply_to,
        references=list(article.references),
        attachments=list(cmd.attachments),
        flags=article.flags,
    )
    return [split], [created, copy]


# --------------------------------------------------------------------------- notify's other facts

Notice = AutoReplySent | AutoReplySuppressed | AgentNotified | DeliveryFailed


def decide_record_notice(ticket: Ticket | None, notice: Notice, now: datetime) -> list[EventData]:
    """Keep what notify did about a ticket (auto reply sent or suppressed, agent notified, a
    mail other than an answer that could not be delivered) in its history. Like deliveries, a
    fact from outside: recorded on any existing ticket."""
    t = _existing(ticket)
    if notice.ticket_id != t.ticket_id:
        raise InvalidInput("notice.ticket_id", f"is {notice.ticket_id}, not this ticket's {t.ticket_id}")
    return [notice]


# --------------------------------------------------------------------------- time-driven


def decide_unlock_timeout(ticket: Ticket | None, now: datetime, timeout: timedelta) -> list[EventData]:
    """OTRS's unlock timeout: a lock left untouched for ``timeout`` is released (reason
    ``timeout``). Pending tickets keep their lock; a zero timeout means never."""
    t = _existing(ticket)
    if t.lock is None or t.is_pending or t.is_closed or timeout <= timedelta(0):
        return []
    if _aware(now) - _aware(t.changed_at) < timeout:
        return []
    return [TicketUnlocked(ticket_id=t.ticket_id, agent=t.lock, reason="timeout")]


def decide_pending_due(ticket: Ticket | None, now: datetime) -> list[EventData]:
    """A pending time reached: a reminder (once per pending time) or the automatic close."""
    t = _existing(ticket)
    due = t.timer_due_at
    if due is None or _aware(due) > _aware(now):
        return []
    if t.state == "pending reminder":
        return [PendingReminderReached(ticket_id=t.ticket_id, pending_until=due)]
    to_state: TicketState = "closed successful" if t.state == "pending auto close+" else "closed unsuccessful"
    d = _Decision(t, SYSTEM_ACTOR, now)
    d.add(PendingAutoCloseReached(ticket_id=t.ticket_id, to_state=to_state))
    d.add(*_state_events(d.ticket, to_state, None))
    return d.events


# --------------------------------------------------------------------------- escalation


def escalation_settings_of(queue: QueueConfigured | None) -> EscalationSettings | None:
    """A queue's escalation times (None for an unknown queue: nothing applies)."""
    if queue is None:
        return None
    return EscalationSettings(
        queue=queue.name,
        first_response_minutes=queue.first_response_minutes,
        update_minutes=queue.update_minutes,
        solution_minutes=queue.solution_minutes,
        warning_percent=queue.escalation_warning_percent,
    )


def decide_escalation_settings(ticket: Ticket | None, settings: EscalationSettings | None) -> list[EventData]:
    """Apply the ticket's queue's escalation times when they differ from those it runs on (a new
    ticket, a move, a reopen, a queue whose times changed; ``None``, an unknown queue, turns
    them off). Closed tickets are left alone: they get their queue's times when reopened."""
    if ticket is None or ticket.is_closed:
        return []
    target = settings or EscalationSettings(queue=ticket.queue)
    if target.key == ticket.escalation_settings_key:
        return []
    applied = EscalationSettingsApplied(
        ticket_id=ticket.ticket_id,
        queue=target.queue,
        first_response_minutes=target.first_response_minutes,
        update_minutes=target.update_minutes,
        solution_minutes=target.solution_minutes,
        warning_percent=target.warning_percent,
    )
    return [applied]


def decide_escalations(ticket: Ticket | None, settings: EscalationSettings | None, now: datetime) -> list[EventData]:
    """The timer's decision: apply changed queue times first, then, for every running clock, an
    ``EscalationWarning`` once the warning share of its time has passed and an
    ``EscalationBreached`` once it is due, each once per due time. A clock found already past due
    gets only the breach."""
    t = _existing(ticket)
    d = _Decision(t, SYSTEM_ACTOR, now)
    d.add(*decide_escalation_settings(d.ticket, settings))
    moment = _aware(now)
    for clock in d.ticket.escalations():
        if clock.breached:
            continue
        if clock.due_at <= moment:
            d.add(EscalationBreached(ticket_id=t.ticket_id, kind=clock.kind, due_at=clock.due_at))
        elif not clock.warned and clock.warn_at is not None and clock.warn_at <= moment:
            d.add(EscalationWarning(ticket_id=t.ticket_id, kind=clock.kind, due_at=clock.due_at))
    return d.events
