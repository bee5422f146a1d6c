"""Folding, time travel, snapshots and history lines."""

from datetime import timedelta

import orjson
import pytest

from services.tickets.domain import (
    AddNote,
    Answer,
    Lock,
    Merge,
    Move,
    RecordDelivery,
    SetState,
    Unmerge,
    decide_add_note,
    decide_answer,
    decide_lock,
    decide_merge,
    decide_move,
    decide_record_delivery,
    decide_set_state,
    decide_unmerge,
    describe,
    fold,
    from_snapshot,
    state_at,
    to_snapshot,
)
from services.tickets.state import apply
from shared.envelope import Envelope, make_envelope
from shared.events import AnswerDelivered, AutoReplySent, TicketLocked

from .helpers import T0, Stream, at, new_ticket, number


def scripted_life() -> tuple[Stream, Stream]:
    """Created at 0, locked at 10, answered at 20, moved at 30, merged at 40, unmerged and
    closed at 50 and 60 (plus a second ticket to merge into, created at 5)."""
    ticket, other = new_ticket("t-1", 1, when=at(0)), new_ticket("t-2", 2, when=at(5), mail_id="mail-9")
    ticket.record(decide_lock(ticket.current, Lock(agent="alice"), at(10)), when=at(10))
    answer = Answer(agent="alice", body="Done", article_id="ans-1")
    ticket.record(decide_answer(ticket.current, answer, at(20)), when=at(20))
    ticket.record(decide_move(ticket.current, Move(agent="alice", queue="Info-en"), at(30)), when=at(30))
    source_events, target_events = decide_merge(ticket.current, other.current, Merge(agent="bob"), at(40))
    ticket.record(source_events, actor="bob", when=at(40))
    other.record(target_events, actor="bob", when=at(40))
    source_events, target_events = decide_unmerge(ticket.current, other.current, Unmerge(agent="bob"), at(50))
    ticket.record(source_events, actor="bob", when=at(50))
    other.record(target_events, actor="bob", when=at(50))
    close = SetState(agent="bob", state="closed successful")
    ticket.record(decide_set_state(ticket.current, close, at(60)), actor="bob", when=at(60))
    return ticket, other


def test_fold_equals_incremental_apply() -> None:
    ticket, _ = scripted_life()
    assert fold(ticket.envelopes) == ticket.current
    assert ticket.current.version == len(ticket.envelopes)
    assert ticket.current.changed_at == at(60)


def test_fold_of_nothing_is_no_ticket() -> None:
    assert fold([]) is None


def test_fold_survives_the_wire() -> None:
    ticket, _ = scripted_life()
    wired = [Envelope.from_json(e.to_json()) for e in ticket.envelopes]
    assert fold(wired) == ticket.current


def test_apply_refuses_a_broken_stream() -> None:
    ticket, _ = scripted_life()
    with pytest.raises(ValueError, match="before TicketCreated"):
        fold(ticket.envelopes[1:])
    with pytest.raises(ValueError, match="second TicketCreated"):
        apply(ticket.current, ticket.envelopes[0])


@pytest.mark.parametrize(
    ("minute", "expected"),
    [
        (-1, None),
        (0, ("new", "Raw", None, None, 1)),
        (9.9, ("new", "Raw", None, None, 1)),
        (10, ("new", "Raw", "alice", "alice", 1)),
        (25, ("open", "Raw", "alice", "alice", 2)),
        (30, ("open", "Info-en", None, "alice", 2)),
        (45, ("merged", "Info-en", None, "alice", 2)),
        (55, ("open", "Info-en", None, "alice", 2)),
        (61, ("closed successful", "Info-en", None, "alice", 2)),
    ],
)
def test_time_travel(minute: float, expected: tuple | None) -> None:  # type: ignore[type-arg]
    ticket, _ = scripted_life()
    then = state_at(ticket.envelopes, at(minute))
    if expected is None:
        assert then is None
        return
    assert then is not None
    assert (then.state, then.queue, then.lock, then.owner, len(then.articles)) == expected
    assert (then.merged_into is not None) == (expected[0] == "merged")


def test_time_travel_on_the_merge_target() -> None:
    _, other = scripted_life()
    assert state_at(other.envelopes, at(45)).absorbed[0].number == number(1)  # type: ignore[union-attr]
    assert state_at(other.envelopes, at(55)).absorbed == ()  # type: ignore[union-attr]
    assert state_at(other.envelopes, at(1)) is None


def test_time_travel_reads_naive_instants_as_utc() -> None:
    ticket, _ = scripted_life()
    naive = at(45).replace(tzinfo=None)
    assert state_at(ticket.envelopes, naive) == state_at(ticket.envelopes, at(45))


def test_time_travel_version_is_the_last_event_seen() -> None:
    ticket, _ = scripted_life()
    then = state_at(ticket.envelopes, at(10))
    assert then is not None and then.version == 5  # created, article, auto reply, owner, lock


def test_snapshot_round_trip_equals_fold() -> None:
    ticket, other = scripted_life()
    for stream in (ticket, other):
        snapshot = to_snapshot(stream.current)
        through_json = orjson.loads(orjson.dumps(snapshot))
        assert from_snapshot(through_json) == fold(stream.envelopes)


def test_snapshot_plus_tail_equals_full_fold() -> None:
    ticket, _ = scripted_life()
    head, tail = ticket.envelopes[:7], ticket.envelopes[7:]
    snapshot = orjson.loads(orjson.dumps(to_snapshot(fold(head))))  # type: ignore[arg-type]
    assert fold(tail, start=from_snapshot(snapshot)) == ticket.current


def test_snapshot_of_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        from_snapshot({"format": 99, "ticket": {}})


def test_events_the_ticket_does_not_track_still_advance_it() -> None:
    stream = new_ticket()
    before = stream.current
    after = stream.record(
        [AutoReplySent(ticket_id="t-1", kind="new_ticket", to="carol@example.org", message_id="<r>")],
        actor="notify",
        when=at(1),
    )
    assert after.version == before.version + 1 and after.changed_at == at(1)
    assert after.model_copy(update={"version": before.version, "changed_at": before.changed_at}) == before


def test_delivery_for_an_unknown_article_is_tolerated_on_replay() -> None:
    stream = new_ticket()
    delivered = AnswerDelivered(ticket_id="t-1", article_id="ghost", message_id="<g>", relay_response="250")
    assert stream.record([delivered]).articles == stream.current.articles


# --------------------------------------------------------------------------- history lines


def answer_line() -> str:
    subject = f"[Ticket#{number(1)}] Re: My account is blocked"
    return f'Answer by alice to carol@example.org queued for delivery: "{subject}"'


def lines(stream: Stream) -> list[str]:
    return [describe(e) for e in stream.envelopes]


def test_describe_the_scripted_life() -> None:
    ticket, other = scripted_life()
    assert lines(ticket) == [
        f"Ticket {number(1)} created in Raw for carol@example.org (new, priority 3 normal)",
        'Mail from Carol <carol@example.org> added: "My account is blocked"',
        "Auto reply (new ticket) requested to carol@example.org",
        "Owner set to alice",
        "Locked by alice",
        answer_line(),
        "State changed from new to open",
        "Moved from Raw to Info-en",
        "Unlocked (moved to another queue)",
        f"Merged into ticket {number(2)}",
        "State changed from open to merged",
        "State changed from merged to open",
        f"Merge with ticket {number(2)} undone by bob",
        "State changed from open to closed successful",
    ]
    assert lines(other)[-2:] == [
        f"Ticket {number(1)} merged into this one (2 articles)",
        f"Merge with ticket {number(1)} undone by bob",
    ]


def test_describe_locks_deliveries_and_notes() -> None:
    stream = new_ticket()
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)), when=at(1))
    stream.record(decide_add_note(stream.current, AddNote(agent="bob", body="x", subject="Call"), at(2)), "bob")
    stream.record(decide_answer(stream.current, Answer(agent="alice", body="x", article_id="a"), at(3)))
    delivered = AnswerDelivered(ticket_id="t-1", article_id="a", message_id="<a@x>", relay_response="250 OK")
    stream.record(decide_record_delivery(stream.current, RecordDelivery(result=delivered), at(4)), "notify")
    pending = SetState(agent="alice", state="pending reminder", pending_until=T0 + timedelta(days=1))
    stream.record(decide_set_state(stream.current, pending, at(5)))
    forced = make_envelope(TicketLocked(ticket_id="t-1", agent="x"), stream_id="t-1", actor="a", stream_version=99)
    assert lines(stream)[-6:] == [
        "Locked by alice",
        'Note added by bob: "Call"',
        answer_line(),
        "State changed from new to open",
        "Answer <a@x> delivered (250 OK)",
        "State changed from open to pending reminder until 2026-11-26T09:00:00+00:00",
    ]
    assert describe(forced) == "Locked by x"


def test_describe_never_fails() -> None:
    odd = Envelope(
        event_id="e",
        type="SomethingNew",
        schema_version=3,
        stream_id="t-1",
        stream_version=1,
        occurred_at=T0,
        correlation_id="c",
        actor="x",
        data={},
    )
    assert describe(odd) == "SomethingNew (schema v3)"
