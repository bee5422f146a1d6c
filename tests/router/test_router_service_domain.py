"""Pure helpers around route() that the service relies on, and filter validation by field."""

import pytest

from services.router.classifier import Classifier
from services.router.domain import (
    RouterConfig,
    SnapshotIndex,
    TicketHook,
    TicketInfo,
    addresses_in,
    deciding_step,
    lookup_keys,
    normalize_address,
    relabel_plan,
    route,
    thread_key,
)
from services.router.filters import filter_problems
from tests.router.router_mailkit import make_mail, ticket_number

NUMBER = ticket_number(counter=1)
TARGET = ticket_number(counter=2)


def info(number: str, **fields) -> TicketInfo:
    return TicketInfo(**{"ticket_id": f"id-{number}", "number": number, "queue": "Info-en", "state": "open", **fields})


def test_lookup_keys_name_what_the_follow_up_decision_may_ask() -> None:
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    mail = make_mail(
        f"Re: [Ticket#{NUMBER}] [Ticket#{bad}]",
        body=f"see Ticket#{TARGET}",
        in_reply_to="<a@x>",
        references=["<r1@x> <r2@x>"],
    )
    keys = lookup_keys(mail, RouterConfig())
    assert keys.numbers == (NUMBER,)  # invalid numbers are never looked up; the body only if enabled
    assert keys.message_ids == ("a@x", "r2@x", "r1@x")
    assert lookup_keys(mail, RouterConfig(follow_up_by_body=True)).numbers == (NUMBER, TARGET)
    foreign = RouterConfig(hook=TicketHook(system_id="55"))
    assert lookup_keys(mail, foreign).numbers == ()
    assert not lookup_keys(make_mail("Hello"), RouterConfig())


def test_snapshot_index_answers_like_the_tables() -> None:
    index = SnapshotIndex([info(NUMBER, merged_into_number=TARGET)], {"a@x": NUMBER})
    assert index.ticket_by_message_id("<a@x>").number == NUMBER
    assert index.ticket_by_message_id("b@x") is None
    assert index.missing_merge_targets() == {TARGET}


def test_thread_key_is_the_ticket_for_a_follow_up_else_the_mail() -> None:
    index = SnapshotIndex([info(NUMBER)])
    follow_up = route(make_mail(f"Re: [Ticket#{NUMBER}]"), "mail-1", [], RouterConfig(), index)
    new = route(make_mail("Hello"), "mail-2", [], RouterConfig(), index)
    assert (thread_key(follow_up, index), thread_key(new, index)) == (f"id-{NUMBER}", "mail-2")


def test_deciding_step_and_model_version() -> None:
    model = Classifier()
    model.train(["invoice"], "Billing")
    model.train(["password"], "Accounts")
    index = SnapshotIndex([info(NUMBER)])
    new = route(make_mail("Hello", to=()), "m", [], RouterConfig(), index, model)
    assert (deciding_step(new), new.model_version) == ("default", 2)
    follow_up = route(make_mail(f"Re: [Ticket#{NUMBER}]"), "m", [], RouterConfig(), index, model)
    assert (deciding_step(follow_up), follow_up.model_version) == ("follow_up", None)


def test_relabel_plan_counts_a_mail_under_one_label() -> None:
    assert relabel_plan(None, "Billing") == (None, "Billing")
    assert relabel_plan("Billing", "Junk") == ("Billing", "Junk")
    assert relabel_plan("Junk", "Junk") == (None, None)


def test_addresses_and_system_addresses() -> None:
    assert addresses_in(['"Doe, J" <J@X.org>, b@y.org', None, "not an address"]) == {"j@x.org", "b@y.org"}
    assert normalize_address(" Info-DE@Firstline.example ") == "info-de@firstline.example"
    assert normalize_address("no-at-sign") is None and normalize_address("a b@c") is None


@pytest.mark.parametrize(
    ("match", "actions", "field", "code"),
    [
        ({}, {}, "match", "invalid_filter"),
        ({"Subject": "(x"}, {}, "match.Subject", "invalid_regex"),
        ({"Sub ject": "x"}, {}, "match.Sub ject", "invalid_header"),
        ({"Subject": "x" * 2000}, {}, "match.Subject", "invalid_regex"),
        ({"Subject": "x"}, {"set_priority": 0}, "actions.set_priority", "invalid_priority"),
        ({"Subject": "x"}, {"set_priority": True}, "actions.set_priority", "invalid_priority"),
        ({"Subject": "x"}, {"set_queue": ""}, "actions.set_queue", "invalid_value"),
        ({"Subject": "x"}, {"stop": "yes"}, "actions.stop", "invalid_value"),
        ({"Subject": "x"}, {"forward": "a@b"}, "actions.forward", "unknown_action"),
    ],
)
def test_filter_problems_name_the_field(match, actions, field, code) -> None:
    problems = filter_problems(match, actions)
    assert (problems[0].field, problems[0].code) == (field, code)


def test_a_valid_filter_has_no_problems() -> None:
    actions = {"set_queue": "Press", "set_priority": 4, "set_title": "t", "mark_spam": False, "stop": True}
    assert filter_problems({"From": r"@paper\.example$", "body": "interview"}, actions) == []
