"""Answers: locking, recipients, subject hook, threading headers, the state the agent chose."""

import pytest

from services.tickets.domain import (
    Answer,
    FollowUpFromMail,
    Lock,
    SetState,
    answer_subject,
    decide_answer,
    decide_follow_up,
    decide_lock,
    decide_set_state,
)
from services.tickets.errors import InvalidInput, InvalidState, NoRecipient, PendingTimeRequired
from shared.events import AnswerSent, MailFlags, StateChanged

from .helpers import at, new_ticket, number, routed, types


def sent(events: list) -> AnswerSent:  # type: ignore[type-arg]
    (answer,) = [e for e in events if isinstance(e, AnswerSent)]
    return answer


def test_answer_locks_an_unlocked_ticket_and_opens_it() -> None:
    stream = new_ticket()
    events = decide_answer(stream.current, Answer(agent="alice", body="Unblocked.", article_id="a2"), at(1))
    assert types(events) == ["OwnerChanged", "TicketLocked", "AnswerSent", "StateChanged"]
    ticket = stream.record(events, when=at(1))
    assert (ticket.lock, ticket.owner, ticket.state) == ("alice", "alice", "open")
    answer = ticket.article("a2")
    assert answer is not None
    assert (answer.kind, answer.delivery, answer.to) == ("answer", "queued", ("carol@example.org",))


def test_answer_by_the_holder_does_not_lock_again() -> None:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)))
    events = decide_answer(stream.current, Answer(agent="alice", body="Hi"), at(2))
    assert types(events) == ["AnswerSent", "StateChanged"]


def test_answer_fields_and_threading() -> None:
    stream = new_ticket(message_id="<m1@example.org>", references=["<m0@example.org>"])
    stream.record(
        decide_follow_up(
            stream.current,
            FollowUpFromMail(
                routed=routed(
                    "mail-2",
                    action="follow_up",
                    message_id="<m2@example.org>",
                    references=["<m0@example.org>", "<m1@example.org>"],
                )
            ),
            at(1),
        )
    )
    cmd = Answer(agent="alice", body="Done.", article_id="0190-abc", cc=["boss@example.org"], template="T1")
    answer = sent(decide_answer(stream.current, cmd, at(2)))
    assert answer.message_id == "<0190-abc@firstline.example>"
    assert answer.in_reply_to == "<m2@example.org>"
    assert answer.references == ["<m0@example.org>", "<m1@example.org>", "<m2@example.org>"]
    assert answer.subject == f"[Ticket#{number(1)}] Re: My account is blocked"
    assert (answer.to, answer.cc, answer.template) == (["carol@example.org"], ["boss@example.org"], "T1")
    assert (answer.ticket_number, answer.queue, answer.body) == (number(1), "Raw", "Done.")


def test_threading_skips_bounces_and_auto_replies() -> None:
    stream = new_ticket()
    bounce = routed("mail-2", action="follow_up", message_id="<bounce@mx>", flags=MailFlags(bounce=True))
    stream.record(decide_follow_up(stream.current, FollowUpFromMail(routed=bounce), at(1)))
    assert sent(decide_answer(stream.current, Answer(agent="alice", body="x"), at(2))).in_reply_to == (
        "<m1@example.org>"
    )


def test_answer_without_any_customer_mail_has_no_threading() -> None:
    stream = new_ticket(message_id=None)
    answer = sent(decide_answer(stream.current, Answer(agent="alice", body="x"), at(1)))
    assert (answer.in_reply_to, answer.references) == (None, [])


@pytest.mark.parametrize(
    ("title", "subject", "expected"),
    [
        ("Help", None, "[Ticket#N] Re: Help"),
        ("Re: Help", None, "[Ticket#N] Re: Help"),
        ("[Ticket#N] Re: Help", None, "[Ticket#N] Re: Help"),
        ("Help", "Your account", "[Ticket#N] Your account"),
        ("Help", "RE: [ticket#N] Your account", "RE: [ticket#N] Your account"),
        ("Help", "   ", "[Ticket#N] Re: Help"),
    ],
)
def test_answer_subject(title: str, subject: str | None, expected: str) -> None:
    n = number(1)
    assert answer_subject(n, title.replace("#N", f"#{n}"), subject and subject.replace("#N", f"#{n}")) == (
        expected.replace("#N", f"#{n}")
    )


def test_answer_with_explicit_recipients() -> None:
    stream = new_ticket()
    answer = sent(decide_answer(stream.current, Answer(agent="alice", body="x", to=["dan@example.net"]), at(1)))
    assert answer.to == ["dan@example.net"]


def test_answer_needs_a_recipient_and_a_body() -> None:
    ticket = new_ticket(sender="").current
    assert ticket.customer_email is None and ticket.customer_id is None
    with pytest.raises(NoRecipient) as refused:
        decide_answer(ticket, Answer(agent="alice", body="x"), at(1))
    assert refused.value.code == "no_recipient"
    with pytest.raises(InvalidInput, match="body"):
        decide_answer(new_ticket().current, Answer(agent="alice", body=""), at(1))


def test_answer_and_close_unlocks_but_makes_the_agent_owner() -> None:
    stream = new_ticket()
    events = decide_answer(stream.current, Answer(agent="alice", body="x", next_state="closed successful"), at(1))
    assert types(events) == ["OwnerChanged", "AnswerSent", "StateChanged"]
    ticket = stream.record(events)
    assert (ticket.owner, ticket.lock, ticket.state) == ("alice", None, "closed successful")


def test_answer_and_close_a_locked_ticket() -> None:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)))
    events = decide_answer(stream.current, Answer(agent="alice", body="x", next_state="closed successful"), at(2))
    assert types(events) == ["AnswerSent", "TicketUnlocked", "StateChanged"]
    assert stream.record(events).lock is None


def test_answer_to_pending() -> None:
    stream = new_ticket()
    with pytest.raises(PendingTimeRequired):
        decide_answer(stream.current, Answer(agent="alice", body="x", next_state="pending reminder"), at(1))
    cmd = Answer(agent="alice", body="x", next_state="pending reminder", pending_until=at(600))
    ticket = stream.record(decide_answer(stream.current, cmd, at(1)))
    assert (ticket.state, ticket.pending_until, ticket.lock) == ("pending reminder", at(600), "alice")


def test_answer_on_a_closed_ticket_reopens_before_locking() -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="bob", state="closed successful"), at(1)))
    events = decide_answer(stream.current, Answer(agent="alice", body="one more thing"), at(2))
    assert types(events) == ["StateChanged", "OwnerChanged", "TicketLocked", "AnswerSent"]
    assert isinstance(events[0], StateChanged) and events[0].to_state == "open"
    ticket = stream.record(events)
    assert (ticket.state, ticket.lock) == ("open", "alice")


@pytest.mark.parametrize("state", ["removed", "merged", "new"])
def test_answer_cannot_choose_these_states(state: str) -> None:
    with pytest.raises(InvalidState):
        decide_answer(new_ticket().current, Answer(agent="alice", body="x", next_state=state), at(1))


def test_answer_article_seen_by_the_fold() -> None:
    stream = new_ticket()
    ticket = stream.record(decide_answer(stream.current, Answer(agent="alice", body="x", article_id="a9"), at(1)))
    answer = ticket.article("a9")
    assert answer is not None and answer.message_id == "<a9@firstline.example>"
    assert answer.in_reply_to == "<m1@example.org>"
