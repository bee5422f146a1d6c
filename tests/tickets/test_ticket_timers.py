"""Time-driven decisions with an injected clock: unlock timeout, pending reminder, auto close."""

from datetime import timedelta

import pytest

from services.tickets.domain import (
    Lock,
    SetState,
    decide_lock,
    decide_pending_due,
    decide_set_state,
    decide_unlock_timeout,
)
from services.tickets.errors import TicketNotFound

from .helpers import at, new_ticket, types

TIMEOUT = timedelta(minutes=30)


def test_a_lock_nobody_touched_is_released_after_the_timeout() -> None:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)), when=at(1))
    assert decide_unlock_timeout(stream.current, at(30), TIMEOUT) == []
    events = decide_unlock_timeout(stream.current, at(31), TIMEOUT)
    assert types(events) == ["TicketUnlocked"]
    ticket = stream.record(events, actor="system:timer", when=at(31))
    assert ticket.lock is None and ticket.owner == "alice"
    assert events[0].reason == "timeout" and events[0].agent == "alice"


def test_no_timeout_for_unlocked_pending_or_zero() -> None:
    stream = new_ticket()
    assert decide_unlock_timeout(stream.current, at(600), TIMEOUT) == []
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)), when=at(1))
    assert decide_unlock_timeout(stream.current, at(600), timedelta(0)) == []
    pending = SetState(agent="alice", state="pending reminder", pending_until=at(60))
    stream.record(decide_set_state(stream.current, pending, at(2)), when=at(2))
    assert decide_unlock_timeout(stream.current, at(600), TIMEOUT) == []


@pytest.mark.parametrize(
    ("state", "closed_as"),
    [("pending auto close+", "closed successful"), ("pending auto close-", "closed unsuccessful")],
)
def test_pending_auto_close(state: str, closed_as: str) -> None:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)), when=at(1))
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state=state, pending_until=at(60)), at(2)))
    assert stream.current.timer_due_at == at(60)
    assert decide_pending_due(stream.current, at(59)) == []
    events = decide_pending_due(stream.current, at(60))
    assert types(events) == ["PendingAutoCloseReached", "TicketUnlocked", "StateChanged"]
    ticket = stream.record(events, actor="system:timer", when=at(60))
    assert (ticket.state, ticket.lock, ticket.timer_due_at) == (closed_as, None, None)
    assert decide_pending_due(ticket, at(61)) == []


def test_pending_reminder_once_per_pending_time() -> None:
    stream = new_ticket()
    reminder = SetState(agent="alice", state="pending reminder", pending_until=at(60))
    stream.record(decide_set_state(stream.current, reminder, at(1)), when=at(1))
    events = decide_pending_due(stream.current, at(61))
    assert types(events) == ["PendingReminderReached"]
    ticket = stream.record(events, actor="system:timer", when=at(61))
    assert ticket.state == "pending reminder" and ticket.timer_due_at is None
    assert decide_pending_due(ticket, at(120)) == []

    later = SetState(agent="alice", state="pending reminder", pending_until=at(180))
    ticket = stream.record(decide_set_state(ticket, later, at(121)), when=at(121))
    assert ticket.timer_due_at == at(180)
    assert types(decide_pending_due(ticket, at(181))) == ["PendingReminderReached"]


def test_timers_on_no_ticket() -> None:
    with pytest.raises(TicketNotFound):
        decide_pending_due(None, at(0))
    with pytest.raises(TicketNotFound):
        decide_unlock_timeout(None, at(0), TIMEOUT)
