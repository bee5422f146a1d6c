"""Escalation decisions with an injected clock: first response, update and solution times,
warnings at the queue's percentage, breaches, each once per due time (issue 5)."""

from __future__ import annotations

from datetime import datetime

from services.tickets.domain import (
    Answer,
    FollowUpFromMail,
    SetState,
    decide_answer,
    decide_escalation_settings,
    decide_escalations,
    decide_follow_up,
    decide_set_state,
)
from services.tickets.history import describe
from services.tickets.projections import ticket_row
from services.tickets.state import EscalationSettings
from services.tickets.views import ticket_at

from .helpers import Stream, at, new_ticket, number, routed, types

TIMER = "system:timer"


def settings(first_response: int = 0, update: int = 0, solution: int = 0, percent: int = 80) -> EscalationSettings:
    return EscalationSettings(
        queue="Raw",
        first_response_minutes=first_response,
        update_minutes=update,
        solution_minutes=solution,
        warning_percent=percent,
    )


def escalating(s: EscalationSettings) -> Stream:
    """A ticket created at minute 0 from a customer's mail, running on ``s``."""
    stream = new_ticket()
    stream.record(decide_escalation_settings(stream.current, s), actor=TIMER, when=at(0))
    return stream


def tick(stream: Stream, s: EscalationSettings, minute: float) -> list[str]:
    """One timer round at ``minute``: decide, record, return the event types (with kinds)."""
    events = decide_escalations(stream.current, s, at(minute))
    stream.record(events, actor=TIMER, when=at(minute))
    return [f"{e.TYPE}:{e.kind}" if hasattr(e, "kind") else e.TYPE for e in events]


def answer(stream: Stream, minute: float, next_state: str = "open", pending_until: datetime | None = None) -> None:
    cmd = Answer(agent="alice", body="We are on it.", next_state=next_state, pending_until=pending_until)
    stream.record(decide_answer(stream.current, cmd, at(minute)), when=at(minute))


def customer_writes(stream: Stream, minute: float, mail_id: str) -> None:
    follow = routed(mail_id, action="follow_up", ticket_number=number(1), message_id=f"<{mail_id}@example.org>")
    stream.record(decide_follow_up(stream.current, FollowUpFromMail(routed=follow), at(minute)), when=at(minute))


def test_first_response_warns_at_the_percentage_then_breaches_each_once() -> None:
    s = settings(first_response=60)
    stream = escalating(s)
    due = stream.current.escalation_due
    assert due is not None and (due.kind, due.due_at, due.warn_at) == ("first_response", at(60), at(48))
    assert tick(stream, s, 47) == []
    assert tick(stream, s, 48) == ["EscalationWarning:first_response"]
    assert tick(stream, s, 50) == []
    assert stream.current.escalation_next_at == at(60)
    assert tick(stream, s, 60) == ["EscalationBreached:first_response"]
    assert tick(stream, s, 61) == [] and tick(stream, s, 600) == []
    assert stream.current.escalation_next_at is None
    assert stream.current.escalation_due is not None  # still shown ("escalation in -n minutes") until met
    answer(stream, 70)
    assert stream.current.escalation_due is None


def test_first_response_met_before_due_stops_it() -> None:
    s = settings(first_response=60)
    stream = escalating(s)
    answer(stream, 30)
    assert stream.current.first_response_at == at(30)
    assert stream.current.escalations() == [] and tick(stream, s, 100) == []


def test_a_clock_found_past_due_gets_only_the_breach() -> None:
    s = settings(solution=60)
    stream = escalating(s)
    assert tick(stream, s, 90) == ["EscalationBreached:solution"]


def test_update_time_runs_from_the_oldest_unanswered_customer_contact_and_resets_on_answer() -> None:
    s = settings(update=60, percent=0)
    stream = escalating(s)
    assert stream.current.escalation_due.due_at == at(60)  # type: ignore[union-attr]
    answer(stream, 10)
    assert stream.current.escalations() == []  # the agent had the last word: nothing to follow up
    customer_writes(stream, 20, "mail-2")
    customer_writes(stream, 30, "mail-3")  # a second mail does not push the due time away
    assert stream.current.escalation_due.due_at == at(80)  # type: ignore[union-attr]
    assert tick(stream, s, 79) == []  # percent 0: no warnings
    assert tick(stream, s, 80) == ["EscalationBreached:update"]
    answer(stream, 90)
    customer_writes(stream, 100, "mail-4")
    assert tick(stream, s, 160) == ["EscalationBreached:update"]  # a new due time: breached again, once
    assert tick(stream, s, 161) == []


def test_closing_meets_the_solution_time_and_reopening_runs_it_again() -> None:
    s = settings(solution=120)
    stream = escalating(s)
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="closed successful"), at(100)))
    assert stream.current.escalations() == [] and tick(stream, s, 200) == []
    assert ticket_row(stream.current).escalation_due_at is None
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="open"), at(210)), when=at(210))
    assert tick(stream, s, 211) == ["EscalationBreached:solution"]


def test_pending_stops_the_clocks() -> None:
    s = settings(first_response=60, solution=120)
    stream = escalating(s)
    pending = SetState(agent="alice", state="pending reminder", pending_until=at(500))
    stream.record(decide_set_state(stream.current, pending, at(10)), when=at(10))
    assert stream.current.escalations() == [] and tick(stream, s, 300) == []
    assert ticket_row(stream.current).escalation_due_at is None
    stream.record(decide_set_state(stream.current, SetState(agent="alice", state="open"), at(40)), when=at(40))
    clocks = {c.kind: c.due_at for c in stream.current.escalations()}
    assert clocks == {"first_response": at(90), "solution": at(150)}  # 30 minutes pending added
    assert tick(stream, s, 90) == ["EscalationBreached:first_response"]


def test_zero_minutes_is_off_and_no_settings_no_clocks() -> None:
    stream = new_ticket()
    assert stream.current.escalations() == [] and decide_escalations(stream.current, None, at(1000)) == []
    assert decide_escalation_settings(stream.current, settings()) == []  # all off: nothing to apply
    s = settings(update=30)
    stream = escalating(s)
    assert [c.kind for c in stream.current.escalations()] == ["update"]


def test_changed_queue_times_reach_the_due_times_at_the_next_evaluation() -> None:
    s = settings(first_response=60)
    stream = escalating(s)
    longer = settings(first_response=120)
    assert tick(stream, longer, 60) == ["EscalationSettingsApplied"]  # not due any more
    assert stream.current.escalation_due.due_at == at(120)  # type: ignore[union-attr]
    assert tick(stream, longer, 120) == ["EscalationBreached:first_response"]
    off = decide_escalations(stream.current, None, at(130))
    assert types(off) == ["EscalationSettingsApplied"]
    assert stream.record(off, actor=TIMER, when=at(130)).escalations() == []


def test_escalation_events_do_not_count_as_changes() -> None:
    """The unlock timeout and the list's "changed" order measure what people did."""
    s = settings(first_response=60)
    stream = escalating(s)
    changed = stream.current.changed_at
    tick(stream, s, 60)
    assert stream.current.changed_at == changed


def test_list_row_item_and_history_show_escalation() -> None:
    s = settings(first_response=60, solution=30)
    stream = escalating(s)
    row = ticket_row(stream.current)
    assert (row.escalation_due_at, row.escalation_kind, row.escalation_next_at) == (at(30), "solution", at(24))
    assert row.escalation_settings == "60/0/30/80"
    item = ticket_at(stream.current)
    assert item["escalation_due_at"] == at(30).isoformat() and item["escalation_kind"] == "solution"
    tick(stream, s, 24)
    tick(stream, s, 30)
    lines = [describe(e) for e in stream.envelopes if e.type.startswith("Escalation")]
    assert lines == [
        "Escalation times of queue Raw: first response 60 min, solution 30 min, warning at 80 %",
        "Escalation warning: solution time due at 2026-11-25 09:30 UTC",
        "Escalation: solution time breached (was due at 2026-11-25 09:30 UTC)",
    ]
