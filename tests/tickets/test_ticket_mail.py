"""New tickets and follow-ups from the router's decisions."""

import pytest

from services.tickets.domain import (
    CreateFromMail,
    FollowUpFromMail,
    Merge,
    SetState,
    decide_create,
    decide_follow_up,
    decide_merge,
    decide_set_state,
)
from services.tickets.errors import (
    FollowUpMakesNewTicket,
    InvalidInput,
    TicketExists,
    TicketIsMerged,
    TicketIsRemoved,
)
from shared.events import AutoReplyRequested, MailFlags, StateChanged, TicketCreated

from .helpers import T0, at, new_ticket, number, routed, types


def test_new_ticket_from_mail() -> None:
    stream = new_ticket(queue="Info-en", priority=4, reply_to="carol.reply@example.org")
    ticket = stream.current
    assert stream.types() == [
        "TicketCreated",
        "ArticleAdded",
        "AutoReplyRequested",
    ]
    assert ticket.number == number(1)
    assert (ticket.title, ticket.queue, ticket.priority, ticket.state) == (
        "My account is blocked",
        "Info-en",
        4,
        "new",
    )
    assert (ticket.customer_email, ticket.customer_id) == ("carol@example.org", "example.org")
    assert ticket.lock is None and ticket.owner is None
    (article,) = ticket.articles
    assert (article.kind, article.sender_type, article.mail_id) == ("email", "customer", "mail-1")
    assert article.sender == "Carol <carol@example.org>"
    assert ticket.created_at == ticket.changed_at == T0
    assert ticket.version == 3
    reply = stream.envelopes[2].payload()
    assert isinstance(reply, AutoReplyRequested)
    assert reply.kind == "new_ticket"
    assert reply.to == "carol.reply@example.org"
    assert reply.subject == f"[Ticket#{number(1)}] Re: My account is blocked"
    assert reply.in_reply_to == "<m1@example.org>"


@pytest.mark.parametrize(
    "flags",
    [
        MailFlags(auto_submitted=True),
        MailFlags(bounce=True),
        MailFlags(mailing_list=True),
        MailFlags(loop=True),
    ],
)
def test_no_auto_reply_to_automatic_mail(flags: MailFlags) -> None:
    stream = new_ticket(flags=flags)
    assert stream.types() == ["TicketCreated", "ArticleAdded"]


def test_spam_gets_no_auto_reply_and_is_labelled() -> None:
    stream = new_ticket(spam=True, queue="Junk")
    assert stream.types() == ["TicketCreated", "ArticleAdded"]
    assert stream.current.spam


def test_title_falls_back_to_placeholder_and_priority_is_clamped() -> None:
    events = decide_create(
        None,
        CreateFromMail(routed=routed(subject="   ", priority=9), ticket_id="t", ticket_number=number(1)),
        T0,
    )
    created = events[0]
    assert isinstance(created, TicketCreated)
    assert (created.title, created.priority) == ("(no subject)", 5)


def test_create_refuses_bad_input() -> None:
    with pytest.raises(InvalidInput, match="ticket_number"):
        decide_create(None, CreateFromMail(routed=routed(), ticket_id="t", ticket_number="123"), T0)
    follow_up = routed(action="follow_up")
    with pytest.raises(InvalidInput, match="routed.action"):
        decide_create(None, CreateFromMail(routed=follow_up, ticket_id="t", ticket_number=number(1)), T0)


def test_redelivered_creating_mail_changes_nothing() -> None:
    stream = new_ticket()
    again = CreateFromMail(routed=routed(), ticket_id="t-1", ticket_number=number(1))
    assert decide_create(stream.current, again, at(5)) == []
    other_mail = CreateFromMail(routed=routed("mail-2"), ticket_id="t-1", ticket_number=number(1))
    with pytest.raises(TicketExists):
        decide_create(stream.current, other_mail, at(5))


def follow_up(mail_id: str = "mail-2", **kwargs: object) -> FollowUpFromMail:
    args: dict = {"action": "follow_up", "ticket_number": number(1), "message_id": "<m2@example.org>"}
    args.update(kwargs)
    return FollowUpFromMail(routed=routed(mail_id, **args), article_id=f"article-{mail_id}")


def test_follow_up_adds_an_article() -> None:
    stream = new_ticket()
    events = decide_follow_up(stream.current, follow_up(), at(1))
    assert types(events) == ["ArticleAdded"]
    ticket = stream.record(events, actor="router", when=at(1))
    assert [a.mail_id for a in ticket.articles] == ["mail-1", "mail-2"]
    assert ticket.state == "new"


def test_follow_up_redelivery_is_idempotent() -> None:
    stream = new_ticket()
    stream.record(decide_follow_up(stream.current, follow_up(), at(1)), actor="router", when=at(1))
    assert decide_follow_up(stream.current, follow_up(), at(2)) == []
    assert decide_follow_up(stream.current, follow_up("mail-1"), at(2)) == []


@pytest.mark.parametrize("state", ["closed successful", "closed unsuccessful", "pending reminder"])
def test_follow_up_reopens_when_the_router_says_so(state: str) -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state=state, pending_until=at(60)), at(1)))
    events = decide_follow_up(stream.current, follow_up(reopen=True), at(2))
    assert types(events) == ["ArticleAdded", "StateChanged"]
    assert isinstance(events[1], StateChanged)
    assert (events[1].from_state, events[1].to_state) == (state, "open")
    ticket = stream.record(events, when=at(2))
    assert ticket.state == "open" and ticket.pending_until is None


def test_follow_up_does_not_reopen_without_the_decision_or_when_open() -> None:
    stream = new_ticket()
    assert types(decide_follow_up(stream.current, follow_up(reopen=True), at(1))) == ["ArticleAdded"]
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="closed successful"), at(1)))
    assert types(decide_follow_up(stream.current, follow_up(reopen=False), at(2))) == ["ArticleAdded"]


def test_rejected_follow_up_is_kept_and_answered_with_a_reject_notice() -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="closed successful"), at(1)))
    events = decide_follow_up(stream.current, follow_up(action="reject", reopen=True), at(2))
    assert types(events) == ["ArticleAdded", "AutoReplyRequested"]
    assert isinstance(events[1], AutoReplyRequested)
    assert events[1].kind == "follow_up_closed_reject"
    assert stream.record(events, when=at(2)).state == "closed successful"


def test_rejected_automatic_mail_gets_no_notice() -> None:
    stream = new_ticket()
    events = decide_follow_up(stream.current, follow_up(action="reject", flags=MailFlags(bounce=True)), at(1))
    assert types(events) == ["ArticleAdded"]


def test_follow_up_for_another_ticket_or_action_is_refused() -> None:
    stream = new_ticket()
    with pytest.raises(InvalidInput, match="ticket_number"):
        decide_follow_up(stream.current, follow_up(ticket_number=number(2)), at(1))
    with pytest.raises(InvalidInput, match="action"):
        decide_follow_up(stream.current, follow_up(action="new"), at(1))


def test_follow_up_to_merged_ticket_names_the_target() -> None:
    source, target = new_ticket("t-1", 1), new_ticket("t-2", 2)
    source_events, _ = decide_merge(source.current, target.current, Merge(agent="alice"), at(1))
    source.record(source_events, when=at(1))
    with pytest.raises(TicketIsMerged) as refused:
        decide_follow_up(source.current, follow_up(), at(2))
    assert (refused.value.into_ticket_id, refused.value.into_number) == ("t-2", number(2))
    assert refused.value.code == "ticket_merged"


def test_follow_up_to_removed_ticket_is_refused() -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="removed"), at(1)))
    with pytest.raises(TicketIsRemoved):
        decide_follow_up(stream.current, follow_up(), at(2))


def with_policy(policy: str, **kwargs: object) -> FollowUpFromMail:
    cmd = follow_up(**kwargs)
    return FollowUpFromMail(routed=cmd.routed, article_id=cmd.article_id, follow_up_policy=policy)


@pytest.mark.parametrize("state", ["closed successful", "pending reminder", "pending auto close-"])
def test_the_queue_policy_reopens_what_the_router_thought_open(state: str) -> None:
    """The router's copy of the state may lag (closed a moment before the mail came)."""
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state=state, pending_until=at(60)), at(1)))
    events = decide_follow_up(stream.current, with_policy("reopen", reopen=False), at(2))
    assert types(events) == ["ArticleAdded", "StateChanged"]
    assert stream.record(events, when=at(2)).state == "open"


def test_the_queue_policy_leaves_an_open_ticket_as_it_is() -> None:
    stream = new_ticket()
    assert types(decide_follow_up(stream.current, with_policy("reject"), at(1))) == ["ArticleAdded"]
    assert types(decide_follow_up(stream.current, with_policy("new_ticket"), at(1))) == ["ArticleAdded"]


def test_the_queue_policy_rejects_or_opens_a_new_ticket_for_a_closed_one() -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="closed unsuccessful"), at(1)))
    rejected = decide_follow_up(stream.current, with_policy("reject"), at(2))
    assert types(rejected) == ["ArticleAdded", "AutoReplyRequested"]
    assert isinstance(rejected[1], AutoReplyRequested) and rejected[1].kind == "follow_up_closed_reject"
    with pytest.raises(FollowUpMakesNewTicket):
        decide_follow_up(stream.current, with_policy("new_ticket"), at(2))
    pending = new_ticket("t-2", 2)
    until = SetState(agent="alice", state="pending reminder", pending_until=at(60))
    pending.record(decide_set_state(pending.current, until, at(1)))
    reopened = decide_follow_up(pending.current, with_policy("reject", ticket_number=number(2)), at(2))
    assert types(reopened) == ["ArticleAdded", "StateChanged"]
