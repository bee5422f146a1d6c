"""Merge (two streams), unmerge, and split."""

import pytest

from services.tickets.domain import (
    AddNote,
    Lock,
    Merge,
    SetPriority,
    SetState,
    Split,
    Unmerge,
    decide_add_note,
    decide_lock,
    decide_merge,
    decide_set_priority,
    decide_set_state,
    decide_split,
    decide_unmerge,
)
from services.tickets.errors import (
    CannotMergeIntoSelf,
    InvalidInput,
    LockedByOther,
    NotMerged,
    TicketIsMerged,
    TicketIsRemoved,
    UnknownArticle,
)
from shared.events import ArticleAdded, StateChanged, TicketAbsorbed, TicketCreated, TicketMerged, TicketSplit

from .helpers import Stream, at, new_ticket, number, types


def two_tickets() -> tuple[Stream, Stream]:
    return new_ticket("t-1", 1), new_ticket("t-2", 2, mail_id="mail-9")


def merge(source: Stream, target: Stream, when: float = 2) -> None:
    source_events, target_events = decide_merge(source.current, target.current, Merge(agent="alice"), at(when))
    source.record(source_events, when=at(when))
    target.record(target_events, when=at(when))


def test_merge_writes_both_sides() -> None:
    source, target = two_tickets()
    source.record(decide_lock(source.current, Lock(agent="alice"), at(1)))
    source_events, target_events = decide_merge(source.current, target.current, Merge(agent="alice"), at(2))
    assert types(source_events) == ["TicketUnlocked", "TicketMerged", "StateChanged"]
    assert source_events[1] == TicketMerged(ticket_id="t-1", into_ticket_id="t-2", into_ticket_number=number(2))
    assert target_events == [
        TicketAbsorbed(ticket_id="t-2", source_ticket_id="t-1", source_ticket_number=number(1), article_ids=["t-1-a1"])
    ]
    s, t = source.record(source_events), target.record(target_events)
    assert (s.state, s.lock) == ("merged", None)
    assert s.merged_into is not None and (s.merged_into.into_ticket_id, s.merged_into.into_number) == (
        "t-2",
        number(2),
    )
    assert [(a.ticket_id, a.number, a.article_ids) for a in t.absorbed] == [("t-1", number(1), ("t-1-a1",))]


def test_merged_ticket_refuses_commands() -> None:
    source, target = two_tickets()
    merge(source, target)
    with pytest.raises(TicketIsMerged, match=number(2)):
        decide_set_priority(source.current, SetPriority(agent="alice", priority=5), at(3))
    with pytest.raises(TicketIsMerged):
        decide_add_note(source.current, AddNote(agent="alice", body="x"), at(3))


def test_cannot_merge_into_self() -> None:
    source, _ = two_tickets()
    with pytest.raises(CannotMergeIntoSelf) as refused:
        decide_merge(source.current, source.current, Merge(agent="alice"), at(1))
    assert refused.value.code == "cannot_merge_into_self"


def test_cannot_merge_into_a_merged_or_removed_ticket() -> None:
    a, b = two_tickets()
    c = new_ticket("t-3", 3, mail_id="mail-3")
    merge(b, c)
    with pytest.raises(TicketIsMerged):
        decide_merge(a.current, b.current, Merge(agent="alice"), at(3))
    c.record(decide_set_state(c.current, SetState(agent="alice", state="removed"), at(3)))
    with pytest.raises(TicketIsRemoved):
        decide_merge(a.current, c.current, Merge(agent="alice"), at(4))


def test_merging_a_ticket_locked_by_another_is_refused_but_target_lock_does_not_matter() -> None:
    source, target = two_tickets()
    target.record(decide_lock(target.current, Lock(agent="bob"), at(1)))
    assert decide_merge(source.current, target.current, Merge(agent="alice"), at(2))
    source.record(decide_lock(source.current, Lock(agent="bob"), at(1)))
    with pytest.raises(LockedByOther):
        decide_merge(source.current, target.current, Merge(agent="alice"), at(2))


def test_unmerge_restores_both_sides() -> None:
    source, target = two_tickets()
    until = at(600)
    source.record(
        decide_set_state(source.current, SetState(agent="a", state="pending reminder", pending_until=until), at(1))
    )
    before = source.current
    merge(source, target)
    source_events, target_events = decide_unmerge(source.current, target.current, Unmerge(agent="bob"), at(3))
    assert types(source_events) == ["StateChanged", "TicketUnmerged"]
    assert source_events[0] == StateChanged(
        ticket_id="t-1", from_state="merged", to_state="pending reminder", pending_until=until
    )
    assert types(target_events) == ["TicketUnmerged"]
    s, t = source.record(source_events, when=at(3)), target.record(target_events, when=at(3))
    assert (s.state, s.pending_until, s.merged_into) == (before.state, before.pending_until, None)
    assert t.absorbed == ()


def test_unmerge_of_a_ticket_not_merged_there() -> None:
    a, b = two_tickets()
    c = new_ticket("t-3", 3, mail_id="mail-3")
    with pytest.raises(NotMerged) as refused:
        decide_unmerge(a.current, b.current, Unmerge(agent="alice"), at(1))
    assert refused.value.code == "not_merged"
    merge(a, b)
    with pytest.raises(NotMerged):
        decide_unmerge(a.current, c.current, Unmerge(agent="alice"), at(3))


def test_unmerge_works_when_the_target_was_merged_on() -> None:
    a, b = two_tickets()
    c = new_ticket("t-3", 3, mail_id="mail-3")
    merge(a, b)
    merge(b, c, when=3)
    source_events, target_events = decide_unmerge(a.current, b.current, Unmerge(agent="alice"), at(4))
    a.record(source_events)
    b.record(target_events)
    assert (a.current.state, b.current.state, b.current.absorbed) == ("new", "merged", ())


def test_merge_again_after_unmerge() -> None:
    source, target = two_tickets()
    merge(source, target)
    source_events, target_events = decide_unmerge(source.current, target.current, Unmerge(agent="a"), at(3))
    source.record(source_events)
    target.record(target_events)
    merge(source, target, when=4)
    assert source.current.state == "merged" and len(target.current.absorbed) == 1


def split_cmd(**kwargs: object) -> Split:
    args: dict = {
        "agent": "alice",
        "article_id": "t-1-a1",
        "new_ticket_id": "t-5",
        "new_ticket_number": number(5),
        "body": "Hello, please help.",
        "new_article_id": "t-5-a1",
    }
    args.update(kwargs)
    return Split(**args)


def test_split_an_article_into_a_new_ticket() -> None:
    stream = new_ticket(queue="Info-en", priority=4)
    source_events, new_events = decide_split(stream.current, split_cmd(), at(1))
    assert source_events == [
        TicketSplit(ticket_id="t-1", article_id="t-1-a1", new_ticket_id="t-5", new_ticket_number=number(5))
    ]
    created, copy = new_events
    assert isinstance(created, TicketCreated) and isinstance(copy, ArticleAdded)
    assert (created.queue, created.priority, created.state, created.customer_email) == (
        "Info-en",
        4,
        "open",
        "carol@example.org",
    )
    assert (copy.body, copy.mail_id, copy.message_id, copy.from_) == (
        "Hello, please help.",
        None,
        "<m1@example.org>",
        "Carol <carol@example.org>",
    )
    new = Stream("t-5")
    new_ticket_state = new.record(new_events, when=at(1))
    assert new_ticket_state.number == number(5) and len(new_ticket_state.articles) == 1
    splits = stream.record(source_events).splits
    assert [(s.article_id, s.new_number) for s in splits] == [("t-1-a1", number(5))]


def test_split_refusals() -> None:
    stream = new_ticket()
    with pytest.raises(UnknownArticle):
        decide_split(stream.current, split_cmd(article_id="nope"), at(1))
    with pytest.raises(InvalidInput, match="new_ticket_number"):
        decide_split(stream.current, split_cmd(new_ticket_number="42"), at(1))
    stream.record(decide_lock(stream.current, Lock(agent="bob"), at(1)))
    with pytest.raises(LockedByOther):
        decide_split(stream.current, split_cmd(), at(2))
