"""Property: any sequence of commands, accepted or refused, leaves every ticket consistent.

Random commands by random agents run against a few tickets (merging, splitting and mail
included). Refused commands append nothing; accepted ones are recorded event by event, and
after every single event the ticket must hold the invariants, so no instant of time travel
shows an impossible ticket. At the end, replay and snapshots must agree with the live state.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.tickets.domain import (
    ANSWER_STATES,
    SETTABLE_STATES,
    AddNote,
    AddPhoneArticle,
    Answer,
    FollowUpFromMail,
    Lock,
    MarkSpam,
    Merge,
    Move,
    RecordDelivery,
    SetOwner,
    SetPriority,
    SetResponsible,
    SetState,
    Split,
    Ticket,
    Unlock,
    Unmerge,
    Unwatch,
    Watch,
    decide_add_note,
    decide_add_phone_article,
    decide_answer,
    decide_follow_up,
    decide_lock,
    decide_mark_spam,
    decide_merge,
    decide_move,
    decide_record_delivery,
    decide_set_owner,
    decide_set_priority,
    decide_set_responsible,
    decide_set_state,
    decide_split,
    decide_unlock,
    decide_unmerge,
    decide_unwatch,
    decide_watch,
    fold,
    from_snapshot,
    state_at,
    to_snapshot,
)
from services.tickets.errors import TicketError
from services.tickets.numbers import is_valid_ticket_number
from shared.events import CLOSED_STATES, PENDING_STATES, AnswerDelivered, DeliveryFailed, EventData

from .helpers import Stream, at, new_ticket, number, routed

AGENTS = ("alice", "bob", "carl")
QUEUES = ("Raw", "Junk", "Info-en")


def check_every_instant(t: Ticket) -> None:
    """What must hold after every event."""
    assert 1 <= t.priority <= 5
    if t.lock is not None:
        assert t.owner == t.lock, "the lock holder is the owner"
        assert t.state not in CLOSED_STATES, "a closed ticket is unlocked"
    assert (t.pending_until is not None) == (t.state in PENDING_STATES)
    if t.state == "merged":
        assert t.merged_into is not None


def check_between_commands(t: Ticket, stream: Stream) -> None:
    """What must also hold once a whole decision is recorded."""
    check_every_instant(t)
    assert (t.merged_into is not None) == (t.state == "merged")
    ids = [a.article_id for a in t.articles]
    assert len(ids) == len(set(ids))
    assert len(t.watchers) == len(set(t.watchers))
    assert t.version == len(stream.envelopes)
    assert is_valid_ticket_number(t.number)


class World:
    def __init__(self) -> None:
        self.streams = {f"t-{n}": new_ticket(f"t-{n}", n, mail_id=f"first-{n}") for n in (1, 2, 3)}
        self.minute = 0
        self.accepted = 0

    def ticket_id(self, index: int) -> str:
        ids = sorted(self.streams)
        return ids[index % len(ids)]

    def ticket(self, index: int) -> Ticket:
        return self.streams[self.ticket_id(index)].current

    def record(self, stream_id: str, events: list[EventData], actor: str) -> None:
        stream = self.streams.setdefault(stream_id, Stream(stream_id))
        for event in events:
            stream.record([event], actor=actor, when=at(self.minute))
            check_every_instant(stream.current)
        check_between_commands(stream.current, stream)

    def run(self, step: tuple[Any, ...]) -> None:
        self.minute += 1
        kind, *args = step
        try:
            COMMANDS[kind](self, *args)
        except TicketError:
            return
        self.accepted += 1


def _single(decide: Callable[..., list[EventData]], make: Callable[..., Any]) -> Callable[..., None]:
    def run(world: World, index: int, agent: str, *args: Any) -> None:
        events = decide(world.ticket(index), make(world, agent, *args), at(world.minute))
        world.record(world.ticket_id(index), events, agent)

    return run


def _pending(world: World, offset: int) -> Any:
    return at(world.minute) + timedelta(minutes=offset)


def _merge(world: World, i: int, j: int, agent: str) -> None:
    source, target = world.ticket(i), world.ticket(j)
    source_events, target_events = decide_merge(source, target, Merge(agent=agent), at(world.minute))
    world.record(source.ticket_id, source_events, agent)
    world.record(target.ticket_id, target_events, agent)


def _unmerge(world: World, i: int, agent: str) -> None:
    """Unmerge the i-th merged ticket (random pairs would almost never be a merge)."""
    merged = [s.current for _, s in sorted(world.streams.items()) if s.current.merged_into is not None]
    if not merged:
        return
    source = merged[i % len(merged)]
    target = world.streams[source.merged_into.into_ticket_id].current  # type: ignore[union-attr]
    source_events, target_events = decide_unmerge(source, target, Unmerge(agent=agent), at(world.minute))
    world.record(source.ticket_id, source_events, agent)
    world.record(target.ticket_id, target_events, agent)


def _split(world: World, i: int, agent: str, article: int) -> None:
    ticket = world.ticket(i)
    n = len(world.streams) + 1
    cmd = Split(
        agent=agent,
        article_id=ticket.articles[article % len(ticket.articles)].article_id,
        new_ticket_id=f"t-{n}",
        new_ticket_number=number(n),
        body="copied",
        new_article_id=f"t-{n}-copy",
    )
    source_events, new_events = decide_split(ticket, cmd, at(world.minute))
    world.record(ticket.ticket_id, source_events, agent)
    world.record(f"t-{n}", new_events, agent)


def _mail(world: World, i: int, mail: int, action: str, reopen: bool) -> None:
    ticket = world.ticket(i)
    decision = routed(f"mail-{mail}", action=action, ticket_number=ticket.number, reopen=reopen)
    cmd = FollowUpFromMail(routed=decision, article_id=f"{ticket.ticket_id}-mail-{mail}")
    world.record(ticket.ticket_id, decide_follow_up(ticket, cmd, at(world.minute)), "router")


def _delivery(world: World, i: int, article: int, ok: bool, permanent: bool) -> None:
    ticket = world.ticket(i)
    answers = [a for a in ticket.articles if a.kind == "answer"]
    if not answers:
        return
    target = answers[article % len(answers)]
    common = {"ticket_id": ticket.ticket_id, "article_id": target.article_id, "message_id": "<x>"}
    result = (
        AnswerDelivered(**common, relay_response="250")
        if ok
        else DeliveryFailed(**common, reason="550", permanent=permanent)
    )
    events = decide_record_delivery(ticket, RecordDelivery(result=result), at(world.minute))
    world.record(ticket.ticket_id, events, "notify")


COMMANDS: dict[str, Callable[..., None]] = {
    "lock": _single(decide_lock, lambda w, a: Lock(agent=a)),
    "unlock": _single(decide_unlock, lambda w, a, force: Unlock(agent=a, force=force)),
    "owner": _single(decide_set_owner, lambda w, a, owner: SetOwner(agent=a, owner=owner)),
    "responsible": _single(decide_set_responsible, lambda w, a, r: SetResponsible(agent=a, responsible=r)),
    "move": _single(decide_move, lambda w, a, queue: Move(agent=a, queue=queue)),
    "state": _single(
        decide_set_state,
        lambda w, a, s, offset: SetState(agent=a, state=s, pending_until=_pending(w, offset)),
    ),
    "priority": _single(decide_set_priority, lambda w, a, p: SetPriority(agent=a, priority=p)),
    "note": _single(decide_add_note, lambda w, a: AddNote(agent=a, body="note")),
    "phone": _single(decide_add_phone_article, lambda w, a: AddPhoneArticle(agent=a, body="call")),
    "answer": _single(
        decide_answer,
        lambda w, a, s, offset: Answer(agent=a, body="answer", next_state=s, pending_until=_pending(w, offset)),
    ),
    "spam": _single(decide_mark_spam, lambda w, a: MarkSpam(agent=a)),
    "watch": _single(decide_watch, lambda w, a: Watch(agent=a)),
    "unwatch": _single(decide_unwatch, lambda w, a: Unwatch(agent=a)),
    "merge": _merge,
    "unmerge": _unmerge,
    "split": _split,
    "mail": _mail,
    "delivery": _delivery,
}

ticket_index = st.integers(0, 7)
agent = st.sampled_from(AGENTS)
offset = st.integers(-5, 600)
steps = st.one_of(
    st.tuples(st.just("lock"), ticket_index, agent),
    st.tuples(st.just("unlock"), ticket_index, agent, st.booleans()),
    st.tuples(st.just("owner"), ticket_index, agent, st.sampled_from((*AGENTS, None))),
    st.tuples(st.just("responsible"), ticket_index, agent, st.sampled_from((*AGENTS, None))),
    st.tuples(st.just("move"), ticket_index, agent, st.sampled_from(QUEUES)),
    st.tuples(st.just("state"), ticket_index, agent, st.sampled_from((*SETTABLE_STATES, "new", "merged")), offset),
    st.tuples(st.just("priority"), ticket_index, agent, st.integers(-1, 7)),
    st.tuples(st.just("note"), ticket_index, agent),
    st.tuples(st.just("phone"), ticket_index, agent),
    st.tuples(st.just("answer"), ticket_index, agent, st.sampled_from((*ANSWER_STATES, "removed")), offset),
    st.tuples(st.just("spam"), ticket_index, agent),
    st.tuples(st.just("watch"), ticket_index, agent),
    st.tuples(st.just("unwatch"), ticket_index, agent),
    st.tuples(st.just("merge"), ticket_index, ticket_index, agent),
    st.tuples(st.just("unmerge"), ticket_index, agent),
    st.tuples(st.just("split"), ticket_index, agent, st.integers(0, 9)),
    st.tuples(
        st.just("mail"),
        ticket_index,
        st.integers(0, 5),
        st.sampled_from(("follow_up", "reject")),
        st.booleans(),
    ),
    st.tuples(st.just("delivery"), ticket_index, st.integers(0, 9), st.booleans(), st.booleans()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, min_size=20, max_size=80))
def test_random_commands_never_break_a_ticket(script: list[tuple[Any, ...]]) -> None:
    world = World()
    for step in script:
        world.run(step)
    for stream in world.streams.values():
        ticket = stream.current
        check_between_commands(ticket, stream)
        assert fold(stream.envelopes) == ticket
        assert from_snapshot(to_snapshot(ticket)) == ticket
        assert state_at(stream.envelopes, at(world.minute)) == ticket
