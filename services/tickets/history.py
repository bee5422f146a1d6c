"""One human-readable line per event, for the ticket history screen and audit reports.

``describe`` never fails: an event it cannot read (unknown type, no upcaster) is shown by its
type name, so one odd event cannot hide a ticket's history.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from services.tickets.state import PRIORITY_NAMES
from shared.envelope import Envelope
from shared.events import (
    AgentNotified,
    AnswerDelivered,
    AnswerSent,
    ArticleAdded,
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
    TicketUnlocked,
    TicketUnmerged,
    TitleChanged,
    WatchStarted,
    WatchStopped,
)

_Describer = Callable[[Any, str], str]
_DESCRIBERS: dict[type[EventData], _Describer] = {}


def _describes(event_type: type[EventData]) -> Callable[[_Describer], _Describer]:
    def register(fn: _Describer) -> _Describer:
        _DESCRIBERS[event_type] = fn
        return fn

    return register


def describe(envelope: Envelope) -> str:
    """E.g. "Locked by alice", "Moved from Raw to Info-en", "State changed from new to open"."""
    try:
        event = envelope.payload()
    except Exception:  # an unreadable event still gets a line; the raw view shows the rest
        return f"{envelope.type} (schema v{envelope.schema_version})"
    describer = _DESCRIBERS.get(type(event))
    return describer(event, envelope.actor) if describer else envelope.type


def _priority(value: int) -> str:
    name = PRIORITY_NAMES.get(value)
    return f"{value} {name}" if name else str(value)


def _quoted(subject: str) -> str:
    return f': "{subject}"' if subject else ""


def _person(name: str | None) -> str:
    return name if name else "nobody"


@_describes(TicketRouted)
def _routed(e: TicketRouted, actor: str) -> str:
    where = {"new": "a new ticket", "follow_up": "a follow-up", "ignore": "ignored", "reject": "rejected"}
    return f"Mail {e.mail_id} routed to {e.queue} as {where[e.action]}"


@_describes(TicketCreated)
def _created(e: TicketCreated, actor: str) -> str:
    customer = f" for {e.customer_email}" if e.customer_email else ""
    spam = ", as spam" if e.spam else ""
    details = f"{e.state}, priority {_priority(e.priority)}{spam}"
    return f"Ticket {e.ticket_number} created in {e.queue}{customer} ({details})"


@_describes(ArticleAdded)
def _article(e: ArticleAdded, actor: str) -> str:
    if e.channel == "email" and e.sender_type == "customer":
        return f"Mail from {e.from_ or 'unknown sender'} added{_quoted(e.subject)}"
    kind = {"email": "Email", "phone": "Phone", "internal": "Internal"}[e.channel]
    return f"{kind} article by {e.from_ or actor} added{_quoted(e.subject)}"


@_describes(NoteAdded)
def _note(e: NoteAdded, actor: str) -> str:
    return f"Note added by {actor}{_quoted(e.subject)}"


@_describes(PhoneArticleAdded)
def _phone(e: PhoneArticleAdded, actor: str) -> str:
    return f"Phone call ({e.direction}) recorded by {actor}{_quoted(e.subject)}"


@_describes(AnswerSent)
def _answer(e: AnswerSent, actor: str) -> str:
    return f"Answer by {actor} to {', '.join(e.to)} queued for delivery{_quoted(e.subject)}"


@_describes(AnswerDelivered)
def _delivered(e: AnswerDelivered, actor: str) -> str:
    return f"Answer {e.message_id} delivered ({e.relay_response})"


@_describes(DeliveryBounced)
def _bounced(e: DeliveryBounced, actor: str) -> str:
    said = " ".join(p for p in (e.status, e.diagnostic) if p) or "no reason given"
    return f"Answer {e.message_id} bounced: {said} (bounce mail is article {e.bounce_article_id})"


@_describes(DeliveryFailed)
def _failed(e: DeliveryFailed, actor: str) -> str:
    kind = "permanently" if e.permanent else "temporarily"
    return f"Delivery of answer {e.message_id} failed {kind}: {e.reason}"


@_describes(AutoReplyRequested)
def _auto_reply(e: AutoReplyRequested, actor: str) -> str:
    return f"Auto reply ({e.kind.replace('_', ' ')}) requested to {e.to}"


@_describes(AutoReplySent)
def _auto_reply_sent(e: AutoReplySent, actor: str) -> str:
    return f"Auto reply ({e.kind.replace('_', ' ')}) sent to {e.to}"


@_describes(AutoReplySuppressed)
def _auto_reply_suppressed(e: AutoReplySuppressed, actor: str) -> str:
    return f"Auto reply ({e.kind.replace('_', ' ')}) to {e.to} suppressed: {e.reason}"


@_describes(TicketLocked)
def _locked(e: TicketLocked, actor: str) -> str:
    return f"Locked by {e.agent}"


_UNLOCK_REASONS = {
    "timeout": "lock timeout",
    "moved": "moved to another queue",
    "closed": "ticket closed",
    "owner_changed": "owner changed",
}


@_describes(TicketUnlocked)
def _unlocked(e: TicketUnlocked, actor: str) -> str:
    if e.reason == "forced":
        return f"Lock of {_person(e.agent)} released by {actor} (forced)"
    if e.reason == "manual":
        return f"Unlocked by {actor}"
    return f"Unlocked ({_UNLOCK_REASONS.get(e.reason, e.reason)})"


@_describes(OwnerChanged)
def _owner(e: OwnerChanged, actor: str) -> str:
    if e.previous is None:
        return f"Owner set to {_person(e.owner)}"
    return f"Owner changed from {e.previous} to {_person(e.owner)}"


@_describes(ResponsibleChanged)
def _responsible(e: ResponsibleChanged, actor: str) -> str:
    if e.previous is None:
        return f"Responsible set to {_person(e.responsible)}"
    return f"Responsible changed from {e.previous} to {_person(e.responsible)}"


@_describes(TicketMoved)
def _moved(e: TicketMoved, actor: str) -> str:
    reason = f" ({e.reason})" if e.reason else ""
    return f"Moved from {e.from_queue} to {e.to_queue}{reason}"


@_describes(StateChanged)
def _state(e: StateChanged, actor: str) -> str:
    until = f" until {e.pending_until.isoformat()}" if e.pending_until else ""
    if e.from_state == e.to_state:
        return f"Pending time of {e.to_state} set{until}"
    return f"State changed from {e.from_state} to {e.to_state}{until}"


@_describes(PriorityChanged)
def _priority_changed(e: PriorityChanged, actor: str) -> str:
    return f"Priority changed from {_priority(e.from_priority)} to {_priority(e.to_priority)}"


@_describes(TitleChanged)
def _title(e: TitleChanged, actor: str) -> str:
    return f'Title changed to "{e.title}"'


@_describes(TicketMarkedSpam)
def _spam(e: TicketMarkedSpam, actor: str) -> str:
    return f"Marked as spam by {actor}"


@_describes(TicketMerged)
def _merged(e: TicketMerged, actor: str) -> str:
    return f"Merged into ticket {e.into_ticket_number}"


@_describes(TicketAbsorbed)
def _absorbed(e: TicketAbsorbed, actor: str) -> str:
    articles = "1 article" if len(e.article_ids) == 1 else f"{len(e.article_ids)} articles"
    return f"Ticket {e.source_ticket_number} merged into this one ({articles})"


@_describes(TicketUnmerged)
def _unmerged(e: TicketUnmerged, actor: str) -> str:
    return f"Merge with ticket {e.other_ticket_number or e.from_ticket_id} undone by {actor}"


@_describes(TicketSplit)
def _split(e: TicketSplit, actor: str) -> str:
    return f"Article {e.article_id} split off into new ticket {e.new_ticket_number}"


@_describes(WatchStarted)
def _watch(e: WatchStarted, actor: str) -> str:
    return f"{e.agent} started watching"


@_describes(WatchStopped)
def _unwatch(e: WatchStopped, actor: str) -> str:
    return f"{e.agent} stopped watching"


@_describes(PendingReminderReached)
def _reminder(e: PendingReminderReached, actor: str) -> str:
    return f"Pending reminder reached ({e.pending_until.isoformat()})"


@_describes(PendingAutoCloseReached)
def _auto_close(e: PendingAutoCloseReached, actor: str) -> str:
    return f"Pending auto close reached: closing as {e.to_state}"


_ESCALATION_KINDS = {"first_response": "first response", "update": "update", "solution": "solution"}


def _due(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment.utcoffset() in (None, timedelta(0)) else moment.isoformat()


@_describes(EscalationSettingsApplied)
def _escalation_settings(e: EscalationSettingsApplied, actor: str) -> str:
    times = [
        f"{label} {minutes} min"
        for label, minutes in (
            ("first response", e.first_response_minutes),
            ("update", e.update_minutes),
            ("solution", e.solution_minutes),
        )
        if minutes > 0
    ]
    if not times:
        return f"Escalation off (queue {e.queue})"
    warning = f", warning at {e.warning_percent} %" if 0 < e.warning_percent < 100 else ""
    return f"Escalation times of queue {e.queue}: {', '.join(times)}{warning}"


@_describes(EscalationWarning)
def _escalation_warning(e: EscalationWarning, actor: str) -> str:
    return f"Escalation warning: {_ESCALATION_KINDS[e.kind]} time due at {_due(e.due_at)}"


@_describes(EscalationBreached)
def _escalation_breached(e: EscalationBreached, actor: str) -> str:
    return f"Escalation: {_ESCALATION_KINDS[e.kind]} time breached (was due at {_due(e.due_at)})"


@_describes(AgentNotified)
def _notified(e: AgentNotified, actor: str) -> str:
    detail = f": {e.detail}" if e.detail else ""
    return f"{e.agent} notified ({e.kind.replace('_', ' ')}){detail}"
