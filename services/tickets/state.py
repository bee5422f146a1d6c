"""The ticket as a fold of its events: state, ``apply``, ``fold``, time travel and snapshots.

State is immutable: applying an event returns a new :class:`Ticket`. Nothing here decides
anything; ``apply`` records facts, even ones today's rules would refuse, because old events
must always replay. Decisions live in ``services.tickets.domain``.

Article bodies are not kept in the state: they are in the events (and the zoom read model), and
keeping them out keeps snapshots small and free of customer text that erasure must reach.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from shared.envelope import Envelope
from shared.events import (
    CLOSED_STATES,
    PENDING_STATES,
    AnswerDelivered,
    AnswerSent,
    ArticleAdded,
    DeliveryBounced,
    DeliveryFailed,
    EscalationBreached,
    EscalationKind,
    EscalationSettingsApplied,
    EscalationWarning,
    EventData,
    MailFlags,
    NoteAdded,
    OwnerChanged,
    PendingReminderReached,
    PhoneArticleAdded,
    PriorityChanged,
    ResponsibleChanged,
    StateChanged,
    TicketAbsorbed,
    TicketCreated,
    TicketLocked,
    TicketMarkedSpam,
    TicketMerged,
    TicketMoved,
    TicketSplit,
    TicketState,
    TicketUnlocked,
    TicketUnmerged,
    TitleChanged,
    WatchStarted,
    WatchStopped,
)

SNAPSHOT_FORMAT = 1
PRIORITY_NAMES = {1: "very low", 2: "low", 3: "normal", 4: "high", 5: "very high"}

ArticleKind = Literal["email", "phone", "note", "answer"]
DeliveryStatus = Literal["queued", "delivered", "failed", "bounced"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Article(_Frozen):
    """What the aggregate remembers of an article: enough to decide and to list, no body."""

    article_id: str
    kind: ArticleKind
    sender_type: Literal["customer", "agent", "system"]
    visible_to_customer: bool = True
    sender: str | None = None  # the From of a mail, the agent for notes, phone calls and answers
    to: tuple[str, ...] = ()
    cc: tuple[str, ...] = ()
    subject: str = ""
    mail_id: str | None = None
    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    flags: MailFlags = MailFlags()
    direction: Literal["inbound", "outbound"] | None = None  # phone articles
    created_at: datetime
    created_by: str
    delivery: DeliveryStatus | None = None  # answers only
    delivery_detail: str | None = None
    bounce_of: str | None = None  # a bounce mail: the answer article it returned (DeliveryBounced)


class EscalationSettings(_Frozen):
    """A queue's escalation times as they apply to a ticket (``EscalationSettingsApplied``)."""

    queue: str
    first_response_minutes: int = 0
    update_minutes: int = 0
    solution_minutes: int = 0
    warning_percent: int = 80

    @property
    def key(self) -> str:
        """Compact and comparable (the list's ``escalation_settings``): "" when all are off."""
        return escalation_key(
            self.first_response_minutes, self.update_minutes, self.solution_minutes, self.warning_percent
        )

    def minutes(self, kind: EscalationKind) -> int:
        return max(getattr(self, f"{kind}_minutes"), 0)


def escalation_key(first_response: int, update: int, solution: int, warning_percent: int) -> str:
    if first_response <= 0 and update <= 0 and solution <= 0:
        return ""
    return f"{max(first_response, 0)}/{max(update, 0)}/{max(solution, 0)}/{warning_percent}"


class EscalationMark(_Frozen):
    """A warning or breach already emitted for one kind and due time (each is emitted once)."""

    kind: EscalationKind
    level: Literal["warning", "breach"]
    due_at: datetime


ESCALATION_KINDS: tuple[EscalationKind, ...] = ("first_response", "update", "solution")


class Escalation(_Frozen):
    """One running escalation clock of a ticket."""

    kind: EscalationKind
    due_at: datetime
    warn_at: datetime | None  # None: no warning (percent 0 or >= 100)
    warned: bool
    breached: bool

    @property
    def next_at(self) -> datetime | None:
        """When a timer must next act on it: the warning, then the breach."""
        if not self.breached and not self.warned and self.warn_at is not None and self.warn_at < self.due_at:
            return self.warn_at
        return None if self.breached else self.due_at


class MergeInfo(_Frozen):
    """Where a merged ticket went, and what it was before, so an unmerge can restore it."""

    into_ticket_id: str
    into_number: str
    previous_state: TicketState
    previous_pending_until: datetime | None = None


class AbsorbedTicket(_Frozen):
    ticket_id: str
    number: str
    article_ids: tuple[str, ...] = ()


class SplitOff(_Frozen):
    article_id: str
    new_ticket_id: str
    new_number: str


class Ticket(_Frozen):
    ticket_id: str
    number: str
    title: str
    queue: str
    priority: int
    state: TicketState
    pending_until: datetime | None = None
    lock: str | None = None  # the agent holding the lock; OTRS: the lock holder is the owner
    owner: str | None = None
    responsible: str | None = None
    customer_email: str | None = None
    customer_id: str | None = None
    articles: tuple[Article, ...] = ()
    watchers: tuple[str, ...] = ()
    merged_into: MergeInfo | None = None
    absorbed: tuple[AbsorbedTicket, ...] = ()
    splits: tuple[SplitOff, ...] = ()
    spam: bool = False
    reminder_reached_for: datetime | None = None  # the pending time whose reminder was sent
    # Escalation (see ``escalations``): the queue's times, and the facts the due times run from.
    escalation: EscalationSettings | None = None
    first_response_at: datetime | None = None  # the first answer or outbound call
    update_from: datetime | None = None  # the oldest customer contact no agent contact followed
    update_from_paused: float = 0.0  # ``paused_seconds`` when ``update_from`` was set
    paused_since: datetime | None = None  # in a pending state since (the clocks stand still)
    paused_seconds: float = 0.0  # pending time so far, added to every due time
    escalation_marks: tuple[EscalationMark, ...] = ()
    created_at: datetime
    changed_at: datetime
    version: int

    @property
    def is_closed(self) -> bool:
        return self.state in CLOSED_STATES

    @property
    def is_pending(self) -> bool:
        return self.state in PENDING_STATES

    @property
    def timer_due_at(self) -> datetime | None:
        """When a timer must next look at this ticket: a pending time not yet acted on."""
        if self.state in ("pending auto close+", "pending auto close-"):
            return self.pending_until
        if self.state == "pending reminder" and self.reminder_reached_for != self.pending_until:
            return self.pending_until
        return None

    @property
    def escalation_settings_key(self) -> str:
        return self.escalation.key if self.escalation else ""

    def escalations(self) -> list[Escalation]:
        """The running escalation clocks, OTRS's way: first response due at creation + its minutes
        until the first answer (or outbound call); update due at the oldest customer contact not
        yet followed by an agent's answer or call + its minutes; solution due at creation + its
        minutes until closed. None run on closed, merged or removed tickets, and none while
        pending: pending time is added to the due times, so the clocks stand still (Znuny's
        escalation suspend); a kind with 0 minutes is off."""
        settings = self.escalation
        if settings is None or self.is_closed or self.is_pending:
            return []
        bases: dict[EscalationKind, tuple[datetime | None, float]] = {
            "first_response": (None if self.first_response_at else self.created_at, 0.0),
            "update": (self.update_from, self.update_from_paused),
            "solution": (self.created_at, 0.0),
        }
        clocks = (self._clock(kind, *bases[kind], settings) for kind in ESCALATION_KINDS)
        return [c for c in clocks if c is not None]

    def _clock(
        self, kind: EscalationKind, base: datetime | None, paused_before: float, settings: EscalationSettings
    ) -> Escalation | None:
        """One clock from ``base``: its minutes later, plus the time spent pending since ``base``."""
        minutes = settings.minutes(kind)
        if base is None or minutes == 0:
            return None
        due = _utc(base) + timedelta(minutes=minutes, seconds=self.paused_seconds - paused_before)
        percent = settings.warning_percent
        warn = due - timedelta(minutes=minutes * (100 - percent) / 100) if 0 < percent < 100 else None
        warned, breached = self.marked(kind, "warning", due), self.marked(kind, "breach", due)
        return Escalation(kind=kind, due_at=due, warn_at=warn, warned=warned, breached=breached)

    def marked(self, kind: EscalationKind, level: str, due_at: datetime) -> bool:
        return any(m.kind == kind and m.level == level and _utc(m.due_at) == due_at for m in self.escalation_marks)

    @property
    def escalation_due(self) -> Escalation | None:
        """The earliest running clock ("escalation in"): the list's ``escalation_due_at``/``kind``."""
        return min(self.escalations(), key=lambda c: c.due_at, default=None)

    @property
    def escalation_next_at(self) -> datetime | None:
        """When the timer must next look at this ticket's escalations."""
        moments = [c.next_at for c in self.escalations() if c.next_at is not None]
        return min(moments, default=None)

    def article(self, article_id: str) -> Article | None:
        return next((a for a in self.articles if a.article_id == article_id), None)

    def has_mail(self, mail_id: str) -> bool:
        return any(a.mail_id == mail_id for a in self.articles)

    def last_customer_mail(self) -> Article | None:
        """The customer's latest real mail (no bounce or auto-reply): what an answer replies to."""
        for article in reversed(self.articles):
            flags = article.flags
            automatic = flags.auto_submitted or flags.bounce or flags.loop
            if article.kind == "email" and article.sender_type == "customer" and not automatic:
                return article
        return None


# --------------------------------------------------------------------------- apply

# The timer's escalation events don't count as a change: the unlock timeout (and the list's
# "changed" order) measure what people did to the ticket.
_BOOKKEEPING = (EscalationSettingsApplied, EscalationWarning, EscalationBreached)

_Updates = dict[str, Any]
_Handler = Callable[[Ticket, Any, str, datetime], _Updates]
_HANDLERS: dict[type[EventData], _Handler] = {}


def _handles(event_type: type[EventData]) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        _HANDLERS[event_type] = fn
        return fn

    return register


def apply(ticket: Ticket | None, envelope: Envelope) -> Ticket:
    """The ticket after one more event of its stream."""
    return evolve(
        ticket,
        envelope.payload(),
        actor=envelope.actor,
        at=envelope.occurred_at,
        version=envelope.stream_version,
    )


def evolve(ticket: Ticket | None, event: EventData, *, actor: str, at: datetime, version: int) -> Ticket:
    """``apply`` without an envelope: used by decisions to look at the state an event leads to.

    Event types the ticket does not track (router decisions, auto-reply results, ...) still
    advance ``version`` and ``changed_at``, so a stream may carry them.
    """
    if isinstance(event, TicketCreated):
        if ticket is not None:
            raise ValueError(f"stream of ticket {ticket.number} has a second TicketCreated")
        return _created(event, at, version)
    if ticket is None:
        raise ValueError(f"{event.TYPE} before TicketCreated")
    handler = _HANDLERS.get(type(event))
    updates = handler(ticket, event, actor, at) if handler else {}
    changed_at = ticket.changed_at if isinstance(event, _BOOKKEEPING) else at
    return ticket.model_copy(update={**updates, "changed_at": changed_at, "version": version})


def fold(envelopes: Iterable[Envelope], start: Ticket | None = None) -> Ticket | None:
    """Replay a stream (or, after a snapshot ``start``, its tail) into the current ticket."""
    ticket = start
    for envelope in envelopes:
        ticket = apply(ticket, envelope)
    return ticket


def state_at(envelopes: Iterable[Envelope], at: datetime) -> Ticket | None:
    """The ticket as it was at ``at``: the fold of the events that occurred at or before it.

    Events are taken in stream order; a naive ``at`` is read as UTC. None when the ticket did
    not exist yet.
    """
    limit = _utc(at)
    return fold(e for e in envelopes if _utc(e.occurred_at) <= limit)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# --------------------------------------------------------------------------- snapshots


def to_snapshot(ticket: Ticket) -> dict[str, Any]:
    """JSON-ready state for the snapshot store; ``from_snapshot`` gives back an equal ticket."""
    return {"format": SNAPSHOT_FORMAT, "ticket": ticket.model_dump(mode="json")}


def from_snapshot(snapshot: dict[str, Any]) -> Ticket:
    """Raises ``ValueError`` for a snapshot of another format: rebuild from the events then."""
    if snapshot.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"unknown ticket snapshot format {snapshot.get('format')!r}")
    return Ticket.model_validate(snapshot["ticket"])


# --------------------------------------------------------------------------- event handlers


def _created(event: TicketCreated, at: datetime, version: int) -> Ticket:
    return Ticket(
        ticket_id=event.ticket_id,
        number=event.ticket_number,
        title=event.title,
        queue=event.queue,
        priority=event.priority,
        state=event.state,
        customer_email=event.customer_email,
        customer_id=event.customer_id,
        spam=event.spam,
        paused_since=at if event.state in PENDING_STATES else None,
        created_at=at,
        changed_at=at,
        version=version,
    )


_CHANNEL_KIND: dict[str, ArticleKind] = {"email": "email", "phone": "phone", "internal": "note"}


@_handles(ArticleAdded)
def _article_added(ticket: Ticket, e: ArticleAdded, actor: str, at: datetime) -> _Updates:
    article = Article(
        article_id=e.article_id,
        kind=_CHANNEL_KIND[e.channel],
        sender_type=e.sender_type,
        visible_to_customer=e.visible_to_customer,
        sender=e.from_,
        to=tuple(e.to),
        cc=tuple(e.cc),
        subject=e.subject,
        mail_id=e.mail_id,
        message_id=e.message_id,
        in_reply_to=e.in_reply_to,
        references=tuple(e.references),
        flags=e.flags,
        created_at=at,
        created_by=actor,
    )
    contact = _contact(ticket, e.sender_type, at) if e.channel != "internal" else {}
    return {"articles": (*ticket.articles, article), **contact}


def _contact(ticket: Ticket, sender_type: str, at: datetime) -> _Updates:
    """A contact with the customer, for the escalation clocks: the customer's starts the update
    clock (unless one already runs); an agent's meets the first response and stops it."""
    if sender_type == "customer":
        if ticket.update_from is not None:
            return {}
        return {"update_from": at, "update_from_paused": ticket.paused_seconds}
    if sender_type == "agent":
        return {"first_response_at": ticket.first_response_at or at, "update_from": None, "update_from_paused": 0.0}
    return {}


@_handles(NoteAdded)
def _note_added(ticket: Ticket, e: NoteAdded, actor: str, at: datetime) -> _Updates:
    note = Article(
        article_id=e.article_id,
        kind="note",
        sender_type="agent",
        visible_to_customer=False,
        sender=actor,
        subject=e.subject,
        created_at=at,
        created_by=actor,
    )
    return {"articles": (*ticket.articles, note)}


@_handles(PhoneArticleAdded)
def _phone_added(ticket: Ticket, e: PhoneArticleAdded, actor: str, at: datetime) -> _Updates:
    call = Article(
        article_id=e.article_id,
        kind="phone",
        sender_type="customer" if e.direction == "inbound" else "agent",
        sender=actor,
        subject=e.subject,
        direction=e.direction,
        created_at=at,
        created_by=actor,
    )
    return {"articles": (*ticket.articles, call), **_contact(ticket, call.sender_type, at)}


@_handles(AnswerSent)
def _answer_sent(ticket: Ticket, e: AnswerSent, actor: str, at: datetime) -> _Updates:
    answer = Article(
        article_id=e.article_id,
        kind="answer",
        sender_type="agent",
        sender=actor,
        to=tuple(e.to),
        cc=tuple(e.cc),
        subject=e.subject,
        message_id=e.message_id,
        in_reply_to=e.in_reply_to,
        references=tuple(e.references),
        created_at=at,
        created_by=actor,
        delivery="queued",
    )
    return {"articles": (*ticket.articles, answer), **_contact(ticket, "agent", at)}


def _set_delivery(ticket: Ticket, article_id: str, status: DeliveryStatus, detail: str) -> _Updates:
    update = {"delivery": status, "delivery_detail": detail}
    articles = tuple(a.model_copy(update=update) if a.article_id == article_id else a for a in ticket.articles)
    return {"articles": articles}


# Bounces (issues 6, 10): the answer's delivery becomes "bounced"; the bounce article points to it.
@_handles(DeliveryBounced)
def _bounced(ticket: Ticket, e: DeliveryBounced, actor: str, at: datetime) -> _Updates:
    detail = bounce_detail(e)
    articles = tuple(
        a.model_copy(update={"delivery": "bounced", "delivery_detail": detail})
        if a.article_id == e.article_id
        else a.model_copy(update={"bounce_of": e.article_id})
        if a.article_id == e.bounce_article_id
        else a
        for a in ticket.articles
    )
    return {"articles": articles}


def bounce_detail(e: DeliveryBounced) -> str:
    """The answer's delivery detail after a bounce: "bounced: 5.1.1 550 ... (bounce article X)"."""
    said = " ".join(p for p in (e.status, e.diagnostic) if p) or "no reason given"
    return f"bounced: {said} (bounce article {e.bounce_article_id})"


@_handles(AnswerDelivered)
def _delivered(ticket: Ticket, e: AnswerDelivered, actor: str, at: datetime) -> _Updates:
    return _set_delivery(ticket, e.article_id, "delivered", e.relay_response)


@_handles(DeliveryFailed)
def _failed(ticket: Ticket, e: DeliveryFailed, actor: str, at: datetime) -> _Updates:
    if e.article_id is None:  # not an answer (an auto reply, a notice): no article to mark
        return {}
    detail = f"{e.reason} (permanent)" if e.permanent else e.reason
    return _set_delivery(ticket, e.article_id, "failed", detail)


@_handles(TicketLocked)
def _locked(ticket: Ticket, e: TicketLocked, actor: str, at: datetime) -> _Updates:
    return {"lock": e.agent}


@_handles(TicketUnlocked)
def _unlocked(ticket: Ticket, e: TicketUnlocked, actor: str, at: datetime) -> _Updates:
    return {"lock": None}


@_handles(OwnerChanged)
def _owner(ticket: Ticket, e: OwnerChanged, actor: str, at: datetime) -> _Updates:
    return {"owner": e.owner}


@_handles(ResponsibleChanged)
def _responsible(ticket: Ticket, e: ResponsibleChanged, actor: str, at: datetime) -> _Updates:
    return {"responsible": e.responsible}


@_handles(TicketMoved)
def _moved(ticket: Ticket, e: TicketMoved, actor: str, at: datetime) -> _Updates:
    return {"queue": e.to_queue}


@_handles(StateChanged)
def _state(ticket: Ticket, e: StateChanged, actor: str, at: datetime) -> _Updates:
    pending_until = e.pending_until if e.to_state in PENDING_STATES else None
    return {"state": e.to_state, "pending_until": pending_until, **_pause(ticket, e.to_state, at)}


def _pause(ticket: Ticket, to_state: str, at: datetime) -> _Updates:
    """Pending states stop the escalation clocks; leaving them adds the time to ``paused_seconds``."""
    pending = to_state in PENDING_STATES
    if pending and ticket.paused_since is None:
        return {"paused_since": at}
    if not pending and ticket.paused_since is not None:
        paused = max((_utc(at) - _utc(ticket.paused_since)).total_seconds(), 0.0)
        return {"paused_since": None, "paused_seconds": ticket.paused_seconds + paused}
    return {}


@_handles(PriorityChanged)
def _priority(ticket: Ticket, e: PriorityChanged, actor: str, at: datetime) -> _Updates:
    return {"priority": e.to_priority}


@_handles(TitleChanged)
def _title(ticket: Ticket, e: TitleChanged, actor: str, at: datetime) -> _Updates:
    return {"title": e.title}


@_handles(TicketMarkedSpam)
def _spam(ticket: Ticket, e: TicketMarkedSpam, actor: str, at: datetime) -> _Updates:
    return {"spam": True}


@_handles(TicketMerged)
def _merged(ticket: Ticket, e: TicketMerged, actor: str, at: datetime) -> _Updates:
    info = MergeInfo(
        into_ticket_id=e.into_ticket_id,
        into_number=e.into_ticket_number,
        previous_state=ticket.state,
        previous_pending_until=ticket.pending_until,
    )
    return {"merged_into": info}


@_handles(TicketAbsorbed)
def _absorbed(ticket: Ticket, e: TicketAbsorbed, actor: str, at: datetime) -> _Updates:
    entry = AbsorbedTicket(
        ticket_id=e.source_ticket_id, number=e.source_ticket_number, article_ids=tuple(e.article_ids)
    )
    others = tuple(a for a in ticket.absorbed if a.ticket_id != e.source_ticket_id)
    return {"absorbed": (*others, entry)}


@_handles(TicketUnmerged)
def _unmerged(ticket: Ticket, e: TicketUnmerged, actor: str, at: datetime) -> _Updates:
    """One event type for both sides: ``from_ticket_id`` is the other ticket of the merge."""
    if ticket.merged_into is not None and ticket.merged_into.into_ticket_id == e.from_ticket_id:
        return {"merged_into": None}
    return {"absorbed": tuple(a for a in ticket.absorbed if a.ticket_id != e.from_ticket_id)}


@_handles(TicketSplit)
def _split(ticket: Ticket, e: TicketSplit, actor: str, at: datetime) -> _Updates:
    entry = SplitOff(article_id=e.article_id, new_ticket_id=e.new_ticket_id, new_number=e.new_ticket_number)
    return {"splits": (*ticket.splits, entry)}


@_handles(WatchStarted)
def _watch(ticket: Ticket, e: WatchStarted, actor: str, at: datetime) -> _Updates:
    if e.agent in ticket.watchers:
        return {}
    return {"watchers": (*ticket.watchers, e.agent)}


@_handles(WatchStopped)
def _unwatch(ticket: Ticket, e: WatchStopped, actor: str, at: datetime) -> _Updates:
    return {"watchers": tuple(w for w in ticket.watchers if w != e.agent)}


@_handles(PendingReminderReached)
def _reminder(ticket: Ticket, e: PendingReminderReached, actor: str, at: datetime) -> _Updates:
    return {"reminder_reached_for": e.pending_until}


@_handles(EscalationSettingsApplied)
def _escalation_settings(ticket: Ticket, e: EscalationSettingsApplied, actor: str, at: datetime) -> _Updates:
    settings = EscalationSettings(
        queue=e.queue,
        first_response_minutes=e.first_response_minutes,
        update_minutes=e.update_minutes,
        solution_minutes=e.solution_minutes,
        warning_percent=e.warning_percent,
    )
    return {"escalation": settings}


def _mark(ticket: Ticket, mark: EscalationMark) -> _Updates:
    """Keep the latest mark per (kind, level): an older due time can never come back as due."""
    others = tuple(m for m in ticket.escalation_marks if (m.kind, m.level) != (mark.kind, mark.level))
    return {"escalation_marks": (*others, mark)}


@_handles(EscalationWarning)
def _escalation_warning(ticket: Ticket, e: EscalationWarning, actor: str, at: datetime) -> _Updates:
    return _mark(ticket, EscalationMark(kind=e.kind, level="warning", due_at=e.due_at))


@_handles(EscalationBreached)
def _escalation_breached(ticket: Ticket, e: EscalationBreached, actor: str, at: datetime) -> _Updates:
    return _mark(ticket, EscalationMark(kind=e.kind, level="breach", due_at=e.due_at))
