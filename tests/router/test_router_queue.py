"""Queue decision for new tickets: filters, spam, system addresses, classifier, default; priority."""

import pytest

from services.router.classifier import Classifier
from services.router.domain import (
    Filter,
    InvalidFilter,
    RouterConfig,
    SystemAddress,
    apply_filters,
    decide_queue,
    header_spam_score,
    match_system_address,
    priority_from_headers,
    route,
)
from shared.events import Address, FilterChanged, SystemAddressChanged, TicketRouted
from tests.router.router_mailkit import MemoryIndex, make_mail

ADDRESSES = (
    SystemAddress("info@firstline.example", "Info-en", {"de": "Info-de"}),
    SystemAddress("info-de@firstline.example", "Info-de"),
    SystemAddress("permissions@firstline.example", "Permissions"),
    SystemAddress("press@firstline.example", "Press"),
)
SPAM_FLAG = Filter("spam-flag", {"X-Spam-Flag": "^yes"}, {"mark_spam": True, "stop": True}, position=1)


def config(*filters: Filter, **fields) -> RouterConfig:
    return RouterConfig(filters=filters, system_addresses=ADDRESSES, **fields)


def routed(mail, cfg: RouterConfig, envelope_to=(), classifier=None) -> TicketRouted:
    return route(mail, "mail-1", list(envelope_to), cfg, MemoryIndex(), classifier)


def steps(result: TicketRouted) -> list[str]:
    return [r.step for r in result.reasons]


# --------------------------------------------------------------------------- filters


def test_filter_matches_header_and_explains() -> None:
    mail = make_mail(headers={"x-spam-flag": "YES"})
    result = routed(mail, config(SPAM_FLAG, trust_spam_headers=False))
    assert (result.action, result.queue, result.spam, result.spam_score) == ("new", "Junk", True, 1.0)
    assert result.reasons[0].detail.startswith("filter 'spam-flag' matched X-Spam-Flag=YES")


def test_all_conditions_must_hold_and_are_case_insensitive() -> None:
    rule = Filter("press", {"From": r"@newspaper\.example$", "Subject": "interview"}, {"set_queue": "Press"})
    cfg = config(rule)
    both = make_mail("Request for an INTERVIEW", sender="desk@NEWSPAPER.example", to=())
    only_one = make_mail("Request for a quote", sender="desk@newspaper.example", to=())
    assert routed(both, cfg).queue == "Press"
    assert routed(only_one, cfg).queue == "Raw"


def test_missing_header_never_matches() -> None:
    rule = Filter("any-list", {"List-Id": ".*"}, {"set_queue": "Lists"})
    assert routed(make_mail(to=()), config(rule)).queue == "Raw"
    assert routed(make_mail(to=(), headers={"list-id": "<l.example>"}), config(rule)).queue == "Lists"


def test_body_condition() -> None:
    rule = Filter("legal", {"body": r"^\s*subpoena"}, {"set_queue": "Legal", "set_priority": 5})
    mail = make_mail(body="Dear team,\n  Subpoena attached.\n", to=())
    result = routed(mail, config(rule))
    assert (result.queue, result.priority) == ("Legal", 5)


def test_filters_run_in_position_order_later_overrides_earlier() -> None:
    first = Filter("a", {"subject": "hello"}, {"set_queue": "A"}, position=1)
    second = Filter("b", {"subject": "hello"}, {"set_queue": "B"}, position=2)
    mail = make_mail("hello", to=())
    assert routed(mail, config(second, first)).queue == "B"
    outcome = apply_filters(mail, config(second, first).filters)
    assert [r.detail.split("'")[1] for r in outcome.reasons] == ["a", "b"]


def test_stop_ends_filtering() -> None:
    first = Filter("a", {"subject": "hello"}, {"set_queue": "A", "stop": True}, position=1)
    second = Filter("b", {"subject": "hello"}, {"set_queue": "B"}, position=2)
    result = routed(make_mail("hello", to=()), config(first, second))
    assert result.queue == "A"
    assert sum(1 for r in result.reasons if r.detail.startswith("filter ")) == 1


def test_disabled_filter_is_skipped() -> None:
    rule = Filter("off", {"subject": "hello"}, {"set_queue": "A"}, enabled=False)
    assert routed(make_mail("hello", to=()), config(rule)).queue == "Raw"


def test_ignore_stores_without_ticket() -> None:
    rule = Filter("noise", {"From": "^noreply@"}, {"ignore": True})
    result = routed(make_mail(sender="noreply@shop.example"), config(rule))
    assert result.action == "ignore"
    assert result.ticket_number is None
    assert steps(result) == ["filter", "ignore"]


def test_ignore_applies_to_follow_ups_too() -> None:
    rule = Filter("noise", {"subject": "Ticket#"}, {"ignore": True})
    assert routed(make_mail("Re: [Ticket#2024051710000018] x"), config(rule)).action == "ignore"


def test_mark_spam_goes_to_junk_even_when_sent_to_a_system_address() -> None:
    rule = Filter("pills", {"subject": "viagra"}, {"mark_spam": True})
    result = routed(make_mail("cheap VIAGRA"), config(rule), ["info@firstline.example"])
    assert (result.queue, result.spam) == ("Junk", True)


def test_set_title_and_priority() -> None:
    rule = Filter("vip", {"From": "ceo@"}, {"set_title": "VIP request", "set_priority": 5})
    result = routed(make_mail("hi", sender="ceo@partner.example"), config(rule))
    assert (result.title, result.priority) == ("VIP request", 5)


def test_filter_queue_beats_system_address() -> None:
    rule = Filter("press", {"subject": "press"}, {"set_queue": "Press"})
    result = routed(make_mail("press question"), config(rule), ["permissions@firstline.example"])
    assert result.queue == "Press"


@pytest.mark.parametrize(
    ("match", "actions"),
    [
        ({"subject": "(unclosed"}, {"set_queue": "A"}),
        ({"subject": "x"}, {"explode": True}),
        ({}, {"set_queue": "A"}),
        ({"subject": "x"}, {"set_priority": 9}),
        ({"subject": "x"}, {"set_priority": "high"}),
    ],
)
def test_invalid_filters_are_refused_up_front(match, actions) -> None:
    with pytest.raises(InvalidFilter):
        Filter("bad", match, actions)


def test_filter_and_address_from_events() -> None:
    changed = FilterChanged(
        filter_id="f1",
        name="spam-flag",
        position=3,
        match={"X-Spam-Flag": "yes"},
        actions={"mark_spam": True},
    )
    rule = Filter.from_event(changed)
    assert (rule.filter_id, rule.position, rule.enabled) == ("f1", 3, True)
    added = SystemAddressChanged(email="info@firstline.example", queue="Info-en", language_queues={"de": "Info-de"})
    address = SystemAddress.from_event(added)
    assert address.queue_for("de") == "Info-de" and address.queue_for(None) == "Info-en"


# --------------------------------------------------------------------------- system addresses


def test_system_address_from_envelope_to_wins_over_to() -> None:
    mail = make_mail(to=("press@firstline.example",))
    result = routed(mail, config(), ["Permissions@Firstline.Example"])
    assert result.queue == "Permissions"
    detail = next(r.detail for r in result.reasons if r.step == "system_address")
    assert detail == "sent to permissions@firstline.example (envelope) → Permissions"


def test_system_address_in_to_and_cc() -> None:
    mail = make_mail(to=("someone@else.example", "press@firstline.example"))
    assert routed(mail, config()).queue == "Press"
    mail = make_mail(to=("someone@else.example",), cc=[Address(email="info-de@firstline.example")])
    assert routed(mail, config()).queue == "Info-de"


def test_delivered_to_header_counts_as_recipient() -> None:
    mail = make_mail(to=("undisclosed-recipients:;",), headers={"delivered-to": "press@firstline.example"})
    assert match_system_address(mail, [], config())[0].queue == "Press"


@pytest.mark.parametrize(
    ("language", "queue"), [("de", "Info-de"), ("de-AT", "Info-de"), ("en", "Info-en"), (None, "Info-en")]
)
def test_language_queues(language, queue) -> None:
    result = routed(make_mail(language=language), config(), ["info@firstline.example"])
    assert result.queue == queue
    detail = next(r.detail for r in result.reasons if r.step == "system_address")
    assert detail.startswith("sent to info@firstline.example")
    assert detail.endswith(queue) or "(language" in detail


def test_default_queue_when_nothing_matches() -> None:
    result = routed(make_mail(to=("stranger@else.example",)), config(default_queue="Raw"))
    assert result.queue == "Raw"
    assert steps(result)[-1] == "default"
    assert result.reasons[-1].detail == "default queue Raw"


def test_title_is_the_clean_subject() -> None:
    assert routed(make_mail("Re: Fwd: AW: Zugang"), config()).title == "Zugang"
    assert routed(make_mail(""), config()).title == "(no subject)"


# --------------------------------------------------------------------------- spam headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-spam-flag": "YES"}, 1.0),
        ({"x-spam-status": "Yes, score=12.1 required=5.0"}, 1.0),
        ({"x-spam-status": "No, score=-2.5 required=5.0"}, pytest.approx(0.0006, abs=1e-3)),
        ({"x-spam-score": "5"}, 0.5),
        ({"x-spam-level": "**********"}, pytest.approx(0.993, abs=1e-3)),
        ({"x-spam-score": "garbage"}, None),
    ],
)
def test_header_spam_score(headers, expected) -> None:
    assert header_spam_score(make_mail(headers=headers)) == expected


def test_spam_headers_send_to_junk_unless_untrusted() -> None:
    mail = make_mail(headers={"x-spam-status": "Yes, score=9.0 required=5.0"})
    result = routed(mail, config(), ["info@firstline.example"])
    assert (result.queue, result.spam, result.spam_score) == ("Junk", True, 1.0)
    assert routed(mail, config(trust_spam_headers=False), ["info@firstline.example"]).queue == "Info-en"


# --------------------------------------------------------------------------- priority


@pytest.mark.parametrize(
    ("headers", "priority"),
    [
        ({}, 3),
        ({"x-priority": "1 (Highest)"}, 5),
        ({"x-priority": "2"}, 4),
        ({"x-priority": "5 (Lowest)"}, 1),
        ({"importance": "High"}, 4),
        ({"importance": "low"}, 2),
        ({"priority": "urgent"}, 4),
        ({"x-priority": "banana"}, 3),
    ],
)
def test_priority_from_headers(headers, priority) -> None:
    result = routed(make_mail(headers=headers), config())
    assert result.priority == priority
    if priority != 3:
        assert priority_from_headers(make_mail(headers=headers)) is not None


def test_filter_priority_beats_headers() -> None:
    rule = Filter("low", {"subject": "newsletter"}, {"set_priority": 1})
    assert routed(make_mail("newsletter", headers={"x-priority": "1"}), config(rule)).priority == 1


# --------------------------------------------------------------------------- classifier step


def _topic_classifier() -> Classifier:
    model = Classifier()
    examples = {
        "Press": ("press interview request", "journalist newspaper article deadline"),
        "Permissions": ("account access", "permission license copyright release"),
        "Junk": ("cheap pills", "viagra casino winner click unsubscribe"),
    }
    for i in range(20):
        for label, (subject, body) in examples.items():
            model.train(make_mail(f"{subject} {i}", body=body), label)
    return model


def test_classifier_chooses_queue_when_confident_and_no_address_matched() -> None:
    mail = make_mail("interview request", body="a journalist from a newspaper asks", to=("x@else.example",))
    result = routed(mail, config(), classifier=_topic_classifier())
    assert result.queue == "Press"
    detail = next(r.detail for r in result.reasons if r.step == "classifier")
    assert detail.startswith("classifier: Press p=") and "top words:" in detail


def test_system_address_beats_classifier() -> None:
    mail = make_mail("interview request", body="a journalist from a newspaper asks")
    result = routed(mail, config(), ["permissions@firstline.example"], _topic_classifier())
    assert result.queue == "Permissions"


def test_classifier_below_threshold_falls_to_default() -> None:
    mail = make_mail("interview request", body="journalist", to=("x@else.example",))
    result = routed(mail, config(classifier_threshold=1.01), classifier=_topic_classifier())
    assert result.queue == "Raw"
    assert "not used" in next(r.detail for r in result.reasons if r.step == "classifier")


def test_classifier_spam_goes_to_junk_before_system_address() -> None:
    mail = make_mail("cheap pills", body="viagra casino winner click")
    result = routed(mail, config(), ["info@firstline.example"], _topic_classifier())
    assert (result.queue, result.spam) == ("Junk", True)
    assert result.spam_score >= 0.5
    assert any("model v" in r.detail for r in result.reasons if r.step == "spam")


def test_decide_queue_without_filters_or_classifier() -> None:
    decision = decide_queue(make_mail(), ["info@firstline.example"], config(), None)
    assert (decision.queue, decision.spam, decision.spam_score) == ("Info-en", False, 0.0)


def test_every_decision_has_reasons_and_carries_the_mail() -> None:
    mail = make_mail()
    result = routed(mail, config(), ["info@firstline.example"])
    assert result.reasons and result.mail == mail
    assert result.envelope_to == ["info@firstline.example"]
    assert TicketRouted.model_validate(result.model_dump(by_alias=True)) == result


# --------------------------------------------------------------------------- spam thresholds kept apart


@pytest.mark.parametrize(
    ("headers", "spam"),
    [
        ({"x-spam-flag": "YES"}, True),
        ({"x-spam-status": "Yes, score=3.0 required=2.5"}, True),
        ({"x-spam-score": "5.0"}, True),
        ({"x-spam-score": "4.9"}, False),
        ({"x-spam-status": "No, hits=5.5 required=8.0"}, False),  # the filter's own bar is higher
        ({"x-spam-status": "No, score=-2.5 required=5.0"}, False),
    ],
)
def test_header_verdict_has_its_own_threshold(headers, spam) -> None:
    from services.router.domain import header_spam_verdict

    verdict = header_spam_verdict(make_mail(headers=headers))
    assert verdict is not None and verdict[0] is spam
    result = routed(make_mail(headers=headers), config(spam_threshold=0.001), ["info@firstline.example"])
    assert result.spam is spam  # no classifier here: a tiny classifier threshold changes nothing


def test_classifier_threshold_does_not_apply_to_header_scores() -> None:
    mail = make_mail(headers={"x-spam-score": "3.0"})  # p≈0.12 on the header's logistic
    result = routed(mail, config(spam_threshold=0.05), ["info@firstline.example"])
    assert (result.queue, result.spam) == ("Info-en", False)
