"""Who gets which agent notice: the pure decisions of services/notify/recipients.py."""

from __future__ import annotations

from typing import Any

import pytest

from services.notify.recipients import AgentProfile, Notice, TicketCopy, fold, notice_for, recipients

ALL = frozenset(
    {"new_ticket", "follow_up", "unlocked_timeout", "pending_reminder", "escalation_warning", "escalation_breach"}
)


def agent(name: str, **changes: Any) -> AgentProfile:
    fields: dict[str, Any] = {
        "username": name,
        "email": f"{name}@firstline.example",
        "name": name.title(),
        "notifications": ALL,
        "my_queues": frozenset({"Press"}),
        "readable_queues": frozenset({"Press", "Raw"}),
    }
    return AgentProfile(**(fields | changes))


TICKET = TicketCopy("t1", "2025030410111213", "Interview", "Press", owner="olga", lock_holder="olga", articles=1)
CREATED = {"ticket_id": "t1", "ticket_number": "2025030410111213", "title": "Interview", "queue": "Press"}


def names(found: list[AgentProfile]) -> list[str]:
    return [a.username for a in found]


# --------------------------------------------------------------------------- the ticket copy


def test_fold_follows_the_ticket() -> None:
    t = fold(None, "TicketCreated", {**CREATED, "customer_email": "jane@example.org", "priority": 2})
    assert t == TicketCopy("t1", "2025030410111213", "Interview", "Press", priority=2, customer="jane@example.org")
    assert fold(None, "ArticleAdded", {"ticket_id": "t1"}) is None
    steps: list[tuple[str, dict[str, Any]]] = [
        ("ArticleAdded", {}),
        ("OwnerChanged", {"owner": "olga"}),
        ("TicketLocked", {"agent": "olga"}),
        ("TicketMoved", {"to_queue": "Raw"}),
        ("StateChanged", {"to_state": "open"}),
        ("PriorityChanged", {"to_priority": 5}),
        ("TitleChanged", {"title": "Interview (urgent)"}),
        ("TicketMarkedSpam", {}),
    ]
    for event_type, data in steps:
        t = fold(t, event_type, {"ticket_id": "t1", **data})
    assert t is not None
    assert t.spam
    assert (t.articles, t.owner, t.lock_holder, t.queue, t.state, t.priority, t.title) == (
        1,
        "olga",
        "olga",
        "Raw",
        "open",
        5,
        "Interview (urgent)",
    )
    t = fold(t, "TicketUnlocked", {"ticket_id": "t1", "agent": "olga", "reason": "timeout"})
    assert t is not None and t.lock_holder is None and t.owner == "olga"


# --------------------------------------------------------------------------- which notice


def test_new_ticket_goes_to_the_queue_watchers_unless_spam() -> None:
    assert notice_for("TicketCreated", CREATED, None) == Notice("new_ticket", watchers=True)
    assert notice_for("TicketCreated", {**CREATED, "spam": True}, None) is None
    assert notice_for("TicketCreated", {**CREATED, "queue": "Junk"}, None) is None
    assert notice_for("TicketCreated", {**CREATED, "queue": "Spam"}, None, junk_queue="Spam") is None


def test_follow_up_only_for_a_customer_article_after_the_first() -> None:
    article = {"ticket_id": "t1", "sender_type": "customer", "from": "Jane <jane@example.org>", "body": "Again"}
    notice = notice_for("ArticleAdded", article, TICKET)
    assert notice is not None and notice.kind == "follow_up" and notice.direct == ("olga",) and not notice.watchers
    assert "From:    Jane <jane@example.org>" in notice.detail and "Again" in notice.detail
    assert notice_for("ArticleAdded", article, TicketCopy("t1", "1", "x", "Press", articles=0)) is None
    assert notice_for("ArticleAdded", {**article, "sender_type": "agent"}, TICKET) is None
    assert notice_for("ArticleAdded", article, None) is None
    other = TicketCopy("t1", "1", "x", "Press", owner="olga", lock_holder="lars", articles=2)
    assert notice_for("ArticleAdded", article, other) == Notice("follow_up", ("olga", "lars"), detail=notice.detail)


def test_long_follow_ups_are_shortened() -> None:
    body = "\n".join(f"line {i}" for i in range(100))
    notice = notice_for("ArticleAdded", {"ticket_id": "t1", "body": body}, TICKET)
    assert notice is not None and "line 19" in notice.detail and "line 20" not in notice.detail
    notice = notice_for("ArticleAdded", {"ticket_id": "t1", "body": "x" * 5000}, TICKET)
    assert notice is not None and len(notice.detail) < 1100


def test_unlock_by_timeout_tells_the_previous_holder() -> None:
    unlocked = {"ticket_id": "t1", "agent": "olga", "reason": "timeout"}
    assert notice_for("TicketUnlocked", unlocked, TICKET) == Notice("unlocked_timeout", ("olga",))
    assert notice_for("TicketUnlocked", {**unlocked, "reason": "manual"}, TICKET) is None


def test_pending_reminder_goes_to_the_owner_else_the_watchers() -> None:
    due = {"ticket_id": "t1", "pending_until": "2025-03-04T10:00:00Z"}
    owned = notice_for("PendingReminderReached", due, TICKET)
    assert owned is not None and owned.direct == ("olga",) and not owned.watchers
    assert "2025-03-04T10:00:00Z" in owned.detail
    nobody = notice_for("PendingReminderReached", due, TicketCopy("t1", "1", "x", "Press"))
    assert nobody is not None and nobody.direct == () and nobody.watchers


@pytest.mark.parametrize(
    ("event_type", "kind"), [("EscalationWarning", "escalation_warning"), ("EscalationBreached", "escalation_breach")]
)
def test_escalations_go_to_owner_and_watchers(event_type: str, kind: str) -> None:
    data = {"ticket_id": "t1", "kind": "first_response", "due_at": "2025-03-04T12:00:00Z"}
    notice = notice_for(event_type, data, TICKET)
    assert notice is not None and notice.kind == kind and notice.direct == ("olga",) and notice.watchers
    assert "first response" in notice.detail and "2025-03-04T12:00:00Z" in notice.detail


def test_other_events_are_no_notice() -> None:
    assert notice_for("NoteAdded", {"ticket_id": "t1"}, TICKET) is None
    assert notice_for("OwnerChanged", {"ticket_id": "t1", "owner": "x"}, TICKET) is None


# --------------------------------------------------------------------------- who


def test_recipients_filter() -> None:
    agents = [
        agent("ann"),
        agent("bob", notifications=ALL - {"new_ticket"}),  # preference off
        agent("cat", readable_queues=frozenset({"Raw"})),  # watches Press but may no longer read it
        agent("dan", valid=False),
        agent("eve", email=None),
        agent("fay", my_queues=frozenset({"Raw"})),  # watches another queue
        agent("gus"),  # the actor
    ]
    found = recipients(Notice("new_ticket", watchers=True), "Press", agents, actor="gus")
    assert names(found) == ["ann"]


def test_direct_recipients_need_access_and_the_preference_too() -> None:
    agents = [
        agent("olga", my_queues=frozenset()),
        agent("lars", readable_queues=frozenset()),
        agent("mia"),  # a watcher, but the notice is not for watchers
    ]
    found = recipients(Notice("follow_up", ("olga", "lars")), "Press", agents, actor="system:router")
    assert names(found) == ["olga"]
    off = [agent("olga", notifications=frozenset({"new_ticket"}))]
    assert recipients(Notice("follow_up", ("olga",)), "Press", off, actor="x") == []


def test_each_agent_once_and_the_actor_never() -> None:
    agents = [agent("olga"), agent("olga"), agent("ann")]
    notice = Notice("escalation_breach", ("olga",), watchers=True)
    assert names(recipients(notice, "Press", agents, actor="system:tickets")) == ["ann", "olga"]
    assert names(recipients(notice, "Press", agents, actor="OLGA")) == ["ann"]


def test_usernames_match_case_insensitively() -> None:
    found = recipients(Notice("follow_up", ("Olga",)), "Press", [agent("olga")], actor="system:router")
    assert names(found) == ["olga"]


@pytest.mark.parametrize("opening", ["PhoneArticleAdded", "AnswerSent", "NoteAdded"])
def test_a_customer_mail_after_any_article_is_a_follow_up(opening: str) -> None:
    """A ticket opened by a phone call or an agent's mail: the customer's first mail follows up."""
    t = fold(None, "TicketCreated", {**CREATED, "state": "open"})
    t = fold(t, "OwnerChanged", {"ticket_id": "t1", "owner": "olga"})
    t = fold(t, opening, {"ticket_id": "t1", "body": "x"})
    notice = notice_for("ArticleAdded", {"ticket_id": "t1", "sender_type": "customer", "body": "Hi"}, t)
    assert notice is not None and notice.kind == "follow_up" and notice.direct == ("olga",)
