"""The read-model planner, pure: rows from events, idempotence, count deltas, articles."""

from services.tickets.domain import (
    AddNote,
    Answer,
    Lock,
    Move,
    decide_add_note,
    decide_answer,
    decide_lock,
    decide_move,
)
from services.tickets.projections import article_row, count_key, list_row, plan, ticket_row
from shared.envelope import make_envelope
from shared.events import AnswerDelivered, QueueConfigured

from .helpers import at, new_ticket


def scripted() -> list:  # type: ignore[type-arg]
    stream = new_ticket(queue="Raw")
    stream.record(decide_lock(stream.current, Lock(agent="alice"), at(1)), when=at(1))
    stream.record(decide_add_note(stream.current, AddNote(agent="alice", body="looked", article_id="n1"), at(2)))
    stream.record(decide_answer(stream.current, Answer(agent="alice", body="done", article_id="a1"), at(3)))
    stream.record(decide_move(stream.current, Move(agent="alice", queue="Info-en"), at(4)), when=at(4))
    return stream.envelopes


def test_the_list_row_is_the_fold_without_articles() -> None:
    envelopes = scripted()
    result = plan(envelopes, {}, {})
    (ticket,) = result.tickets.values()
    assert ticket.articles == () and ticket.version == len(envelopes)
    assert (ticket.queue, ticket.lock, ticket.owner, ticket.state) == ("Info-en", None, "alice", "open")
    row = ticket_row(ticket)
    assert (row.number, row.queue, row.locked_by, row.version) == (ticket.number, "Info-en", None, len(envelopes))
    assert row.doc["queue"] == "Info-en" and "articles" not in row.doc


def test_articles_mails_and_deliveries() -> None:
    envelopes = scripted()
    result = plan(envelopes, {}, {})
    assert [(a.kind, a.visible_to_customer) for a in result.articles] == [
        ("email", True),
        ("note", False),
        ("answer", True),
    ]
    assert result.mails == [("mail-1", "t-1", "t-1-a1")]
    answer = result.articles[2]
    assert (answer.body, answer.delivery, answer.from_addr, answer.to_addrs) == (
        "done",
        "queued",
        "alice",
        ["carol@example.org"],
    )
    delivered = make_envelope(
        AnswerDelivered(ticket_id="t-1", article_id="a1", message_id="<a1@x>", relay_response="250 ok"),
        stream_id="t-1",
        actor="system:notify",
        stream_version=len(envelopes) + 1,
    )
    assert plan([delivered], dict(result.tickets), {}).deliveries == [("a1", "delivered", "250 ok")]


def test_events_already_projected_change_nothing() -> None:
    envelopes = scripted()
    first = plan(envelopes, {}, {})
    again = plan(envelopes, dict(first.tickets), {})
    assert again.tickets == {} and again.articles == [] and again.mails == [] and again.count_deltas() == []
    tail = plan(envelopes, {"t-1": list_row(plan(envelopes[:4], {}, {}).tickets["t-1"])}, {})
    assert tail.tickets == first.tickets and [a.article_id for a in tail.articles] == ["n1", "a1"]


def test_count_deltas_follow_queue_state_and_lock() -> None:
    envelopes = scripted()
    created = plan(envelopes[:3], {}, {})
    assert created.count_deltas() == [("Raw", "new", False, 1)]
    rest = plan(envelopes[3:], dict(created.tickets), {})
    assert rest.count_deltas() == [("Info-en", "open", False, 1), ("Raw", "new", False, -1)]
    assert count_key(rest.tickets["t-1"]) == ("Info-en", "open", False)


def test_queue_configuration_keeps_the_latest_version() -> None:
    def configured(version: int, group: str):  # type: ignore[no-untyped-def]
        return make_envelope(
            QueueConfigured(name="Raw", group=group), stream_id="queue-Raw", actor="admin", stream_version=version
        )

    result = plan([configured(1, "users"), configured(2, "staff")], {}, {})
    assert result.queues["Raw"][0] == "staff" and result.queues["Raw"][4] == 2
    assert plan([configured(2, "staff")], {}, {"Raw": 2}).queues == {}


def test_events_without_articles() -> None:
    envelopes = scripted()
    assert article_row(envelopes[3], envelopes[3].payload()) is None  # OwnerChanged
