from datetime import UTC, datetime

import pytest

from shared.envelope import (
    GENESIS_HASH,
    Envelope,
    canonical_json,
    make_envelope,
    register_upcaster,
    seal,
    upcast,
)
from shared.events import EventData, NoteAdded, UnknownEventType, catalogue, event
from shared.eventstore import first_broken_link


def _note(body: str = "hello") -> NoteAdded:
    return NoteAdded(ticket_id="t1", article_id="a1", body=body)


def test_catalogue_names_every_event_of_the_architecture() -> None:
    names = set(catalogue())
    for required in (
        "MailReceived",
        "TicketRouted",
        "TicketCreated",
        "ArticleAdded",
        "TicketLocked",
        "TicketUnlocked",
        "OwnerChanged",
        "TicketMoved",
        "StateChanged",
        "PriorityChanged",
        "NoteAdded",
        "AnswerSent",
        "TicketMerged",
        "AnswerDelivered",
        "DeliveryFailed",
    ):
        assert required in names


def test_envelope_round_trips_through_json() -> None:
    env = seal(make_envelope(_note(), stream_id="t1", actor="alice"), stream_version=1, prev_hash=GENESIS_HASH)
    again = Envelope.from_json(env.to_json())
    assert again == env
    assert again.payload() == _note()


def test_canonical_json_is_key_order_independent() -> None:
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1}) == b'{"a":2,"b":1}'


def test_hash_chain_detects_an_edit() -> None:
    prev = GENESIS_HASH
    chain = []
    for version, body in enumerate(["one", "two", "three"], start=1):
        sealed = seal(make_envelope(_note(body), stream_id="t1", actor="a"), stream_version=version, prev_hash=prev)
        chain.append(sealed)
        prev = sealed.hash or ""
    assert first_broken_link(chain) is None
    tampered = chain[1].model_copy(update={"data": {**chain[1].data, "body": "forged"}})
    broken = first_broken_link([chain[0], tampered, chain[2]])
    assert broken is not None and broken.stream_version == 2
    assert "content" in broken.reason


def test_upcaster_turns_an_old_version_into_the_current_one() -> None:
    @event
    class GreetingSaid(EventData):
        SCHEMA_VERSION = 2
        text: str
        language: str

    @register_upcaster("GreetingSaid", 1)
    def _v1_to_v2(data: dict) -> dict:
        return {**data, "language": "en"}

    old = Envelope(
        event_id="e",
        type="GreetingSaid",
        schema_version=1,
        stream_id="s",
        stream_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="c",
        actor="a",
        data={"text": "hi"},
    )
    assert upcast(old).schema_version == 2
    assert old.payload() == GreetingSaid(text="hi", language="en")


def test_unknown_event_type_is_a_specific_error() -> None:
    env = Envelope(
        event_id="e",
        type="NoSuchEvent",
        schema_version=1,
        stream_id="s",
        stream_version=1,
        occurred_at=datetime.now(UTC),
        correlation_id="c",
        actor="a",
        data={},
    )
    with pytest.raises(UnknownEventType):
        env.payload()
