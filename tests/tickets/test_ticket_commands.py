"""Agent commands: lock rules, people, fields, state, notes, spam, watching, deliveries."""

from datetime import timedelta

import pytest

from services.tickets.domain import (
    AddNote,
    AddPhoneArticle,
    Answer,
    Lock,
    MarkSpam,
    Merge,
    Move,
    RecordDelivery,
    SetOwner,
    SetPriority,
    SetResponsible,
    SetState,
    SetTitle,
    Unlock,
    Unwatch,
    Watch,
    decide_add_note,
    decide_add_phone_article,
    decide_answer,
    decide_lock,
    decide_mark_spam,
    decide_merge,
    decide_move,
    decide_record_delivery,
    decide_set_owner,
    decide_set_priority,
    decide_set_responsible,
    decide_set_state,
    decide_set_title,
    decide_unlock,
    decide_unwatch,
    decide_watch,
)
from services.tickets.errors import (
    AlreadyLocked,
    InvalidInput,
    InvalidPriority,
    InvalidState,
    LockedByOther,
    NotLocked,
    NotLockOwner,
    PendingTimeInPast,
    PendingTimeRequired,
    TicketError,
    TicketIsMerged,
    TicketNotFound,
    UnknownArticle,
    UnknownQueue,
)
from shared.events import (
    AnswerDelivered,
    DeliveryFailed,
    OwnerChanged,
    StateChanged,
    TicketLocked,
    TicketMarkedSpam,
    TicketMoved,
    TicketUnlocked,
)

from .helpers import Stream, at, new_ticket, number, types


def locked_by(agent: str) -> Stream:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent=agent), at(1)), actor=agent, when=at(1))
    return stream


# --------------------------------------------------------------------------- lock


def test_lock_makes_the_agent_owner_first() -> None:
    stream = new_ticket()
    events = decide_lock(stream.current, Lock(agent="alice"), at(1))
    assert types(events) == ["OwnerChanged", "TicketLocked"]
    assert events[0] == OwnerChanged(ticket_id="t-1", owner="alice", previous=None)
    ticket = stream.record(events, when=at(1))
    assert (ticket.lock, ticket.owner) == ("alice", "alice")


def test_lock_by_the_owner_changes_no_owner() -> None:
    stream = locked_by("alice")
    stream.record(decide_unlock(stream.current, Unlock(agent="alice"), at(2)), when=at(2))
    assert stream.current.owner == "alice" and stream.current.lock is None
    assert types(decide_lock(stream.current, Lock(agent="alice"), at(3))) == ["TicketLocked"]


def test_second_lock_by_another_agent_names_the_holder() -> None:
    """The race at the domain level: both decided on the same version; the store lets one
    append, and the loser, deciding again on the new version, gets this."""
    stream = locked_by("alice")
    with pytest.raises(LockedByOther) as refused:
        decide_lock(stream.current, Lock(agent="bob"), at(2))
    assert refused.value.code == "locked_by_other"
    assert refused.value.holder == "alice"
    assert "alice" in str(refused.value)


def test_lock_twice_by_the_holder() -> None:
    stream = locked_by("alice")
    with pytest.raises(AlreadyLocked) as refused:
        decide_lock(stream.current, Lock(agent="alice"), at(2))
    assert refused.value.code == "already_locked"


def test_closed_ticket_cannot_be_locked() -> None:
    stream = new_ticket()
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="closed successful"), at(1)))
    with pytest.raises(InvalidState):
        decide_lock(stream.current, Lock(agent="alice"), at(2))


def test_unlock_by_the_holder() -> None:
    stream = locked_by("alice")
    events = decide_unlock(stream.current, Unlock(agent="alice"), at(2))
    assert events == [TicketUnlocked(ticket_id="t-1", agent="alice", reason="manual")]
    assert stream.record(events, when=at(2)).owner == "alice"


def test_unlock_by_another_agent_needs_force() -> None:
    stream = locked_by("alice")
    with pytest.raises(NotLockOwner) as refused:
        decide_unlock(stream.current, Unlock(agent="bob"), at(2))
    assert refused.value.code == "not_lock_owner" and refused.value.holder == "alice"
    forced = decide_unlock(stream.current, Unlock(agent="admin", force=True), at(2))
    assert forced == [TicketUnlocked(ticket_id="t-1", agent="alice", reason="forced")]


def test_unlock_an_unlocked_ticket() -> None:
    with pytest.raises(NotLocked):
        decide_unlock(new_ticket().current, Unlock(agent="alice"), at(1))


def test_commands_on_no_ticket() -> None:
    with pytest.raises(TicketNotFound):
        decide_lock(None, Lock(agent="alice"), at(1))


@pytest.mark.parametrize(
    "decide",
    [
        lambda t: decide_lock(t, Lock(agent="bob"), at(2)),
        lambda t: decide_set_owner(t, SetOwner(agent="bob", owner="bob"), at(2)),
        lambda t: decide_set_responsible(t, SetResponsible(agent="bob", responsible="bob"), at(2)),
        lambda t: decide_move(t, Move(agent="bob", queue="Info-en"), at(2)),
        lambda t: decide_set_state(t, SetState(agent="bob", state="open"), at(2)),
        lambda t: decide_set_priority(t, SetPriority(agent="bob", priority=5), at(2)),
        lambda t: decide_set_title(t, SetTitle(agent="bob", title="Mine"), at(2)),
        lambda t: decide_add_phone_article(t, AddPhoneArticle(agent="bob", body="rang"), at(2)),
        lambda t: decide_answer(t, Answer(agent="bob", body="Hi"), at(2)),
        lambda t: decide_mark_spam(t, MarkSpam(agent="bob"), at(2)),
    ],
)
def test_nobody_else_acts_on_a_locked_ticket(decide) -> None:  # type: ignore[no-untyped-def]
    stream = locked_by("alice")
    with pytest.raises(LockedByOther, match="alice"):
        decide(stream.current)


def test_notes_and_watching_are_allowed_on_a_ticket_locked_by_another() -> None:
    stream = locked_by("alice")
    assert types(decide_add_note(stream.current, AddNote(agent="bob", body="FYI"), at(2))) == ["NoteAdded"]
    assert types(decide_watch(stream.current, Watch(agent="bob"), at(2))) == ["WatchStarted"]


# --------------------------------------------------------------------------- owner and responsible


def test_set_owner_of_a_locked_ticket_passes_the_lock() -> None:
    stream = locked_by("alice")
    events = decide_set_owner(stream.current, SetOwner(agent="alice", owner="bob"), at(2))
    assert types(events) == ["TicketUnlocked", "OwnerChanged", "TicketLocked"]
    assert events[0] == TicketUnlocked(ticket_id="t-1", agent="alice", reason="owner_changed")
    ticket = stream.record(events, when=at(2))
    assert (ticket.owner, ticket.lock) == ("bob", "bob")


def test_set_owner_of_an_unlocked_ticket_keeps_it_unlocked() -> None:
    stream = new_ticket()
    events = decide_set_owner(stream.current, SetOwner(agent="alice", owner="bob"), at(1))
    assert events == [OwnerChanged(ticket_id="t-1", owner="bob", previous=None)]
    assert stream.record(events).lock is None
    assert decide_set_owner(stream.current, SetOwner(agent="alice", owner="bob"), at(2)) == []


def test_clearing_the_owner_of_a_locked_ticket_unlocks_it() -> None:
    stream = locked_by("alice")
    events = decide_set_owner(stream.current, SetOwner(agent="alice", owner=None), at(2))
    assert types(events) == ["TicketUnlocked", "OwnerChanged"]
    ticket = stream.record(events)
    assert (ticket.owner, ticket.lock) == (None, None)


def test_set_owner_refuses_a_blank_name() -> None:
    with pytest.raises(InvalidInput, match="owner"):
        decide_set_owner(new_ticket().current, SetOwner(agent="alice", owner=" "), at(1))


def test_set_responsible() -> None:
    stream = new_ticket()
    events = decide_set_responsible(stream.current, SetResponsible(agent="alice", responsible="dave"), at(1))
    assert types(events) == ["ResponsibleChanged"]
    assert stream.record(events).responsible == "dave"
    assert decide_set_responsible(stream.current, SetResponsible(agent="alice", responsible="dave"), at(2)) == []


# --------------------------------------------------------------------------- move, priority, title


def test_move_unlocks() -> None:
    stream = locked_by("alice")
    events = decide_move(stream.current, Move(agent="alice", queue="Info-en", reason="English"), at(2))
    assert events == [
        TicketMoved(ticket_id="t-1", from_queue="Raw", to_queue="Info-en", reason="English"),
        TicketUnlocked(ticket_id="t-1", agent="alice", reason="moved"),
    ]
    ticket = stream.record(events)
    assert (ticket.queue, ticket.lock, ticket.owner) == ("Info-en", None, "alice")


def test_move_unlocked_ticket_and_to_the_same_queue() -> None:
    stream = new_ticket()
    assert types(decide_move(stream.current, Move(agent="alice", queue="Press"), at(1))) == ["TicketMoved"]
    assert decide_move(stream.current, Move(agent="alice", queue="Raw"), at(1)) == []


def test_move_to_an_unknown_queue() -> None:
    stream = new_ticket()
    with pytest.raises(UnknownQueue) as refused:
        decide_move(stream.current, Move(agent="alice", queue="Nowhere"), at(1), known_queues={"Raw", "Junk"})
    assert refused.value.code == "unknown_queue"
    with pytest.raises(InvalidInput):
        decide_move(stream.current, Move(agent="alice", queue=""), at(1))


@pytest.mark.parametrize("priority", [1, 2, 4, 5])
def test_set_priority(priority: int) -> None:
    stream = new_ticket()
    events = decide_set_priority(stream.current, SetPriority(agent="alice", priority=priority), at(1))
    assert stream.record(events).priority == priority


@pytest.mark.parametrize("priority", [0, 6, -1, True])
def test_invalid_priority(priority: int) -> None:
    with pytest.raises(InvalidPriority) as refused:
        decide_set_priority(new_ticket().current, SetPriority(agent="alice", priority=priority), at(1))
    assert refused.value.code == "invalid_priority"


def test_same_priority_changes_nothing() -> None:
    assert decide_set_priority(new_ticket().current, SetPriority(agent="alice", priority=3), at(1)) == []


def test_set_title() -> None:
    stream = new_ticket()
    events = decide_set_title(stream.current, SetTitle(agent="alice", title="  Blocked account "), at(1))
    assert stream.record(events).title == "Blocked account"
    with pytest.raises(InvalidInput):
        decide_set_title(stream.current, SetTitle(agent="alice", title=""), at(1))


# --------------------------------------------------------------------------- state


def test_pending_state_needs_a_future_time() -> None:
    ticket = new_ticket().current
    with pytest.raises(PendingTimeRequired) as refused:
        decide_set_state(ticket, SetState(agent="alice", state="pending reminder"), at(1))
    assert refused.value.code == "pending_time_required"
    with pytest.raises(PendingTimeInPast):
        decide_set_state(ticket, SetState(agent="alice", state="pending auto close+", pending_until=at(0)), at(1))


def test_pending_state_records_the_time() -> None:
    stream = new_ticket()
    cmd = SetState(agent="alice", state="pending auto close-", pending_until=at(60))
    events = decide_set_state(stream.current, cmd, at(1))
    assert events == [
        StateChanged(ticket_id="t-1", from_state="new", to_state="pending auto close-", pending_until=at(60))
    ]
    ticket = stream.record(events)
    assert (ticket.state, ticket.pending_until) == ("pending auto close-", at(60))
    later = SetState(agent="alice", state="pending auto close-", pending_until=at(120))
    assert types(decide_set_state(ticket, later, at(2))) == ["StateChanged"]
    assert decide_set_state(ticket, cmd, at(2)) == []


def test_leaving_a_pending_state_clears_the_time() -> None:
    stream = new_ticket()
    stream.record(
        decide_set_state(stream.current, SetState(agent="a", state="pending reminder", pending_until=at(9)), at(1))
    )
    events = decide_set_state(stream.current, SetState(agent="a", state="open", pending_until=at(9)), at(2))
    assert isinstance(events[0], StateChanged) and events[0].pending_until is None
    assert stream.record(events).pending_until is None


def test_closing_unlocks_first() -> None:
    stream = locked_by("alice")
    events = decide_set_state(stream.current, SetState(agent="alice", state="closed successful"), at(2))
    assert types(events) == ["TicketUnlocked", "StateChanged"]
    assert isinstance(events[0], TicketUnlocked) and events[0].reason == "closed"
    ticket = stream.record(events)
    assert (ticket.state, ticket.lock, ticket.owner) == ("closed successful", None, "alice")


@pytest.mark.parametrize("state", ["merged", "new", "bogus"])
def test_states_an_agent_cannot_choose(state: str) -> None:
    with pytest.raises(InvalidState) as refused:
        decide_set_state(new_ticket().current, SetState(agent="alice", state=state), at(1))
    assert refused.value.code == "invalid_state"


# --------------------------------------------------------------------------- articles


def test_note_and_phone_articles() -> None:
    stream = new_ticket()
    note = decide_add_note(stream.current, AddNote(agent="bob", body="checked", subject="Log", article_id="n1"), at(1))
    stream.record(note, actor="bob", when=at(1))
    call = AddPhoneArticle(agent="bob", body="called back", direction="outbound", article_id="p1")
    ticket = stream.record(decide_add_phone_article(stream.current, call, at(2)), actor="bob", when=at(2))
    note_article, phone_article = ticket.articles[1:]
    assert (note_article.kind, note_article.visible_to_customer, note_article.sender) == (
        "note",
        False,
        "bob",
    )
    assert (phone_article.kind, phone_article.direction, phone_article.sender_type) == (
        "phone",
        "outbound",
        "agent",
    )
    assert ticket.state == "new"


def test_empty_articles_are_refused() -> None:
    ticket = new_ticket().current
    with pytest.raises(InvalidInput, match="body"):
        decide_add_note(ticket, AddNote(agent="bob", body="  "), at(1))
    with pytest.raises(InvalidInput, match="direction"):
        decide_add_phone_article(ticket, AddPhoneArticle(agent="bob", body="x", direction="sideways"), at(1))


# --------------------------------------------------------------------------- spam


def test_mark_spam_moves_to_junk_labels_and_closes() -> None:
    stream = locked_by("alice")
    events = decide_mark_spam(stream.current, MarkSpam(agent="alice"), at(2))
    assert types(events) == ["TicketMoved", "TicketUnlocked", "TicketMarkedSpam", "StateChanged"]
    assert events[2] == TicketMarkedSpam(ticket_id="t-1", mail_id="mail-1")
    ticket = stream.record(events)
    assert (ticket.queue, ticket.state, ticket.lock, ticket.spam) == (
        "Junk",
        "closed unsuccessful",
        None,
        True,
    )
    assert decide_mark_spam(ticket, MarkSpam(agent="alice"), at(3)) == []


def test_spam_from_the_router_is_only_moved_and_closed() -> None:
    stream = new_ticket(spam=True)
    assert types(decide_mark_spam(stream.current, MarkSpam(agent="alice"), at(1))) == [
        "TicketMoved",
        "StateChanged",
    ]


# --------------------------------------------------------------------------- watching


def test_watch_and_unwatch_are_idempotent() -> None:
    stream = new_ticket()
    stream.record(decide_watch(stream.current, Watch(agent="bob"), at(1)))
    assert stream.current.watchers == ("bob",)
    assert decide_watch(stream.current, Watch(agent="bob"), at(2)) == []
    stream.record(decide_unwatch(stream.current, Unwatch(agent="bob"), at(2)))
    assert stream.current.watchers == ()
    assert decide_unwatch(stream.current, Unwatch(agent="bob"), at(3)) == []


def test_unwatch_works_on_a_merged_ticket_but_watch_does_not() -> None:
    source, target = new_ticket("t-1", 1), new_ticket("t-2", 2)
    source.record(decide_watch(source.current, Watch(agent="bob"), at(1)))
    source.record(decide_merge(source.current, target.current, Merge(agent="alice"), at(2))[0])
    with pytest.raises(TicketIsMerged):
        decide_watch(source.current, Watch(agent="carl"), at(3))
    assert types(decide_unwatch(source.current, Unwatch(agent="bob"), at(3))) == ["WatchStopped"]


# --------------------------------------------------------------------------- deliveries


def answered() -> Stream:
    stream = new_ticket()
    stream.record(decide_answer(stream.current, Answer(agent="alice", body="Hi", article_id="ans-1"), at(1)))
    return stream


def delivered(article_id: str = "ans-1") -> AnswerDelivered:
    return AnswerDelivered(ticket_id="t-1", article_id=article_id, message_id="<x>", relay_response="250 OK")


def test_answer_delivery_status() -> None:
    stream = answered()
    assert stream.current.article("ans-1").delivery == "queued"  # type: ignore[union-attr]
    failed = DeliveryFailed(ticket_id="t-1", article_id="ans-1", message_id="<x>", reason="421 busy")
    stream.record(decide_record_delivery(stream.current, RecordDelivery(result=failed), at(2)), actor="notify")
    article = stream.current.article("ans-1")
    assert article is not None and (article.delivery, article.delivery_detail) == ("failed", "421 busy")
    assert decide_record_delivery(stream.current, RecordDelivery(result=failed), at(3)) == []
    events = decide_record_delivery(stream.current, RecordDelivery(result=delivered()), at(3))
    stream.record(events, actor="notify")
    article = stream.current.article("ans-1")
    assert article is not None and (article.delivery, article.delivery_detail) == ("delivered", "250 OK")
    assert decide_record_delivery(stream.current, RecordDelivery(result=delivered()), at(4)) == []
    late_failure = failed.model_copy(update={"permanent": True})
    assert decide_record_delivery(stream.current, RecordDelivery(result=late_failure), at(4)) == []


def test_delivery_for_an_unknown_answer_or_ticket() -> None:
    stream = answered()
    with pytest.raises(UnknownArticle):
        decide_record_delivery(stream.current, RecordDelivery(result=delivered("t-1-a1")), at(2))
    other = delivered().model_copy(update={"ticket_id": "t-9"})
    with pytest.raises(InvalidInput):
        decide_record_delivery(stream.current, RecordDelivery(result=other), at(2))


def test_delivery_is_recorded_on_a_merged_ticket() -> None:
    source, target = answered(), new_ticket("t-2", 2)
    source.record(decide_merge(source.current, target.current, Merge(agent="alice"), at(2))[0])
    assert types(decide_record_delivery(source.current, RecordDelivery(result=delivered()), at(3))) == [
        "AnswerDelivered"
    ]


def test_every_error_has_a_code_and_a_message() -> None:
    stream = locked_by("alice")
    try:
        decide_lock(stream.current, Lock(agent="bob"), at(1) + timedelta(seconds=1))
    except TicketError as error:
        assert error.code == "locked_by_other"
        assert error.message == f"ticket {number(1)} is locked by alice"
    else:
        pytest.fail("expected a refusal")


def test_locked_event_payload() -> None:
    stream = new_ticket()
    assert decide_lock(stream.current, Lock(agent="alice"), at(1))[-1] == TicketLocked(ticket_id="t-1", agent="alice")
