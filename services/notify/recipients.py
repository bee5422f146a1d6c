"""Who gets which agent notice (pure: no I/O).

Notify keeps a small copy of each ticket (:class:`TicketCopy`, folded from ``ticket.events`` by
:func:`fold`) and of the agent directory (:class:`AgentProfile`, from ``AgentProfileChanged``).
For each ticket event, :func:`notice_for` says which notice it is, if any, and who is asked
for directly (owner, lock holder) and whether the agents watching the queue ("My Queues") are;
:func:`recipients` then keeps only the agents who may and want to get it:

* valid, with an e-mail address, with the notice kind on in their preferences;
* able to read the ticket's queue (``readable_queues``, computed by the gateway);
* not the agent who caused the event;
* each once.

=================== ======================================= =====================================
kind                event                                   who
=================== ======================================= =====================================
new_ticket          TicketCreated (not spam, not junk)      agents with the queue in my_queues
follow_up           ArticleAdded from the customer, on a    the owner and lock holder
                    ticket with an article already
unlocked_timeout    TicketUnlocked, reason ``timeout``      the agent whose lock ran out
pending_reminder    PendingReminderReached                  the owner (or lock holder); if there
                                                            is neither, my_queues agents
escalation_warning  EscalationWarning                       owner, lock holder, my_queues agents
escalation_breach   EscalationBreached                      owner, lock holder, my_queues agents
=================== ======================================= =====================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from services.notify.notices import AgentNoticeKind, TicketSummary

DETAIL_MAX_CHARS = 1000
DETAIL_MAX_LINES = 20


@dataclass(frozen=True)
class AgentProfile:
    username: str
    email: str | None
    name: str = ""
    valid: bool = True
    notifications: frozenset[str] = frozenset()
    my_queues: frozenset[str] = frozenset()
    readable_queues: frozenset[str] = frozenset()


@dataclass(frozen=True)
class TicketCopy:
    ticket_id: str
    ticket_number: str
    title: str
    queue: str
    state: str = "new"
    priority: int = 3
    owner: str | None = None
    lock_holder: str | None = None
    customer: str | None = None
    spam: bool = False
    articles: int = 0

    def summary(self, detail: str = "") -> TicketSummary:
        return TicketSummary(
            ticket_number=self.ticket_number,
            title=self.title,
            queue=self.queue,
            state=self.state,
            priority=self.priority,
            customer=self.customer or "",
            owner=self.owner,
            detail=detail,
        )


@dataclass(frozen=True)
class Notice:
    """A notice to send about a ticket: to ``direct`` agents, and to the queue's watchers if ``watchers``."""

    kind: AgentNoticeKind
    direct: tuple[str, ...] = ()
    watchers: bool = False
    detail: str = ""


# Articles of any kind: a customer mail is a follow-up when the ticket has one already (a ticket
# opened by a phone call or an agent's mail has no customer ArticleAdded before the reply).
ARTICLE_EVENTS = frozenset({"ArticleAdded", "PhoneArticleAdded", "AnswerSent", "NoteAdded"})
# The ticket events that change the copy (others leave it alone).
FOLDED = ARTICLE_EVENTS | frozenset(
    {
        "TicketCreated",
        "TicketLocked",
        "TicketUnlocked",
        "OwnerChanged",
        "TicketMoved",
        "StateChanged",
        "PriorityChanged",
        "TitleChanged",
        "TicketMarkedSpam",
    }
)
# The ticket events that may cause a notice.
NOTICE_EVENTS = frozenset(
    {
        "TicketCreated",
        "ArticleAdded",
        "TicketUnlocked",
        "PendingReminderReached",
        "EscalationWarning",
        "EscalationBreached",
    }
)


def fold(ticket: TicketCopy | None, event_type: str, data: Mapping[str, Any]) -> TicketCopy | None:
    """The copy after one event (``None`` stays ``None`` until the ticket's ``TicketCreated``)."""
    if event_type == "TicketCreated":
        return TicketCopy(
            ticket_id=data["ticket_id"],
            ticket_number=data["ticket_number"],
            title=data.get("title", ""),
            queue=data["queue"],
            state=data.get("state", "new"),
            priority=data.get("priority", 3),
            customer=data.get("customer_email"),
            spam=bool(data.get("spam", False)),
        )
    if ticket is None:
        return None
    if event_type in ARTICLE_EVENTS:
        return replace(ticket, articles=ticket.articles + 1)
    if event_type == "TicketLocked":
        return replace(ticket, lock_holder=data["agent"])
    if event_type == "TicketUnlocked":
        return replace(ticket, lock_holder=None)
    if event_type == "OwnerChanged":
        return replace(ticket, owner=data.get("owner"))
    if event_type == "TicketMoved":
        return replace(ticket, queue=data["to_queue"])
    if event_type == "StateChanged":
        return replace(ticket, state=data["to_state"])
    if event_type == "PriorityChanged":
        return replace(ticket, priority=data["to_priority"])
    if event_type == "TitleChanged":
        return replace(ticket, title=data["title"])
    if event_type == "TicketMarkedSpam":
        return replace(ticket, spam=True)
    return ticket


def notice_for(
    event_type: str, data: Mapping[str, Any], before: TicketCopy | None, *, junk_queue: str = "Junk"
) -> Notice | None:
    """The notice an event calls for, judged on the ticket as it was before the event."""
    if event_type == "TicketCreated":
        if data.get("spam") or data.get("queue") == junk_queue:
            return None
        return Notice("new_ticket", watchers=True)
    if before is None:  # a ticket notify never saw created: nobody to tell about it
        return None
    if event_type == "ArticleAdded":
        if data.get("sender_type", "customer") != "customer" or before.articles == 0:
            return None
        return Notice("follow_up", direct=_present(before.owner, before.lock_holder), detail=_excerpt(data))
    if event_type == "TicketUnlocked":
        previous = data.get("agent") or before.lock_holder
        if data.get("reason") != "timeout" or not previous:
            return None
        return Notice("unlocked_timeout", direct=(previous,))
    if event_type == "PendingReminderReached":
        detail = f"Pending until: {data.get('pending_until', '')}"
        direct = _present(before.owner, before.lock_holder)
        return Notice("pending_reminder", direct=direct, watchers=not direct, detail=detail)
    if event_type in ("EscalationWarning", "EscalationBreached"):
        kind: AgentNoticeKind = "escalation_warning" if event_type == "EscalationWarning" else "escalation_breach"
        what = str(data.get("kind", "")).replace("_", " ")
        detail = (
            f"Escalation ({what}) {'due' if kind == 'escalation_warning' else 'was due'} at {data.get('due_at', '')}"
        )
        return Notice(kind, direct=_present(before.owner, before.lock_holder), watchers=True, detail=detail)
    return None


def recipients(notice: Notice, queue: str, agents: Iterable[AgentProfile], *, actor: str) -> list[AgentProfile]:
    """The agents who get ``notice`` about a ticket in ``queue``, sorted by username.

    ``agents``: at least the direct candidates and the agents watching ``queue`` (more is fine).
    """
    direct = {name.lower() for name in notice.direct}  # usernames are case-insensitive, as at login
    chosen: dict[str, AgentProfile] = {}
    for agent in agents:
        asked = agent.username.lower() in direct or (notice.watchers and queue in agent.my_queues)
        if not asked or agent.username in chosen:
            continue
        if agent.username.lower() == actor.lower():
            continue
        if not agent.valid or not agent.email or notice.kind not in agent.notifications:
            continue
        if queue not in agent.readable_queues:
            continue
        chosen[agent.username] = agent
    return [chosen[name] for name in sorted(chosen)]


def _present(*names: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for name in names:
        if name and name not in out:
            out.append(name)
    return tuple(out)


def _excerpt(data: Mapping[str, Any]) -> str:
    """What the customer wrote, shortened: who from, the subject, the first lines of the body."""
    lines = [f"From:    {data['from']}"] if data.get("from") else []
    if data.get("subject"):
        lines.append(f"Subject: {data['subject']}")
    body = "\n".join(str(data.get("body") or "").strip().splitlines()[:DETAIL_MAX_LINES])
    if len(body) > DETAIL_MAX_CHARS:
        body = body[:DETAIL_MAX_CHARS].rstrip() + " …"
    if body:
        lines += ["", body]
    return "\n".join(lines)
