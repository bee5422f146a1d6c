"""Follow-up detection: hook, In-Reply-To/References, body, merges, closed-ticket policies."""

from dataclasses import replace

import pytest

from services.router.domain import (
    Filter,
    RouterConfig,
    TicketHook,
    TicketInfo,
    decide_follow_up,
    message_ids,
    normalize_message_id,
    route,
)
from shared.events import MailFlags
from tests.router.router_mailkit import MemoryIndex, make_mail, ticket_number

NUMBER = ticket_number(counter=1)
OTHER = ticket_number(counter=2)
THIRD = ticket_number(counter=3)
CUSTOMER = "alice@example.org"


def ticket(number: str = NUMBER, **fields) -> TicketInfo:
    defaults = dict(
        ticket_id=f"t-{number}",
        number=number,
        queue="Info-en",
        state="open",
        participants=frozenset({CUSTOMER}),
    )
    return TicketInfo(**{**defaults, **fields})


def routed(mail, index, config: RouterConfig | None = None):
    return route(mail, "mail-1", ["info@firstline.example"], config or RouterConfig(), index, None)


# --------------------------------------------------------------------------- finding the ticket


def test_hook_in_subject_threads_the_mail() -> None:
    result = routed(make_mail(f"Re: AW: [Ticket#{NUMBER}] Access"), MemoryIndex(ticket()))
    assert (result.action, result.ticket_number, result.queue) == ("follow_up", NUMBER, "Info-en")
    assert not result.reopen and not result.sender_not_on_ticket
    assert result.title is None
    assert any(NUMBER in r.detail and r.step == "follow_up" for r in result.reasons)


def test_unknown_number_makes_a_new_ticket_and_says_so() -> None:
    result = routed(make_mail(f"Re: [Ticket#{OTHER}] Access"), MemoryIndex(ticket()))
    assert result.action == "new" and result.ticket_number is None
    assert result.title == "Access"
    assert any("matches no ticket" in r.detail for r in result.reasons)


def test_invalid_check_digit_is_not_looked_up() -> None:
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    index = MemoryIndex(ticket(), ticket(bad))  # even if something had that number
    result = routed(make_mail(f"Re: [Ticket#{bad}] Access"), index)
    assert result.action == "new"
    assert any("not a valid ticket number" in r.detail for r in result.reasons)


def test_number_of_another_system_is_ignored() -> None:
    foreign = ticket_number(system_id="55")
    config = RouterConfig(hook=TicketHook(system_id="10"))
    result = routed(make_mail(f"Re: [Ticket#{foreign}] Access"), MemoryIndex(ticket(foreign)), config)
    assert result.action == "new"
    assert any("another system" in r.detail for r in result.reasons)


def test_in_reply_to_threads_a_mail_without_number() -> None:
    index = MemoryIndex(ticket(), message_ids={"answer-1@firstline.example": NUMBER})
    mail = make_mail("Re: Access", in_reply_to="<answer-1@firstline.example>")
    result = routed(mail, index)
    assert (result.action, result.ticket_number) == ("follow_up", NUMBER)
    assert any("In-Reply-To" in r.detail for r in result.reasons)


def test_references_are_tried_newest_first() -> None:
    index = MemoryIndex(ticket(), ticket(OTHER), message_ids={"old@x": NUMBER, "new@x": OTHER, "unrelated@y": THIRD})
    mail = make_mail("Re: Access", references=["<old@x>", "<unknown@z>", "<new@x>"])
    assert routed(mail, index).ticket_number == OTHER


def test_references_as_one_unsplit_header_value() -> None:
    index = MemoryIndex(ticket(), message_ids={"old@x": NUMBER})
    mail = make_mail("Re: Access", references=["<old@x> <unknown@z>"])
    assert routed(mail, index).ticket_number == NUMBER


def test_subject_hook_wins_over_in_reply_to() -> None:
    index = MemoryIndex(ticket(), ticket(OTHER), message_ids={"m@x": OTHER})
    mail = make_mail(f"Re: [Ticket#{NUMBER}] Access", in_reply_to="<m@x>")
    assert routed(mail, index).ticket_number == NUMBER


def test_bounce_is_threaded_by_the_original_message_id() -> None:
    index = MemoryIndex(ticket(), message_ids={"answer-7@firstline.example": NUMBER})
    mail = make_mail(
        "Undelivered Mail Returned to Sender",
        sender="mailer-daemon@mx.example.org",
        bounce_original_message_id="<answer-7@firstline.example>",
        flags=MailFlags(bounce=True, auto_submitted=True),
    )
    result = routed(mail, index)
    assert (result.action, result.ticket_number, result.reopen) == ("follow_up", NUMBER, False)


def test_number_in_body_only_when_enabled() -> None:
    mail = make_mail("Access", body=f"Regarding my request Ticket#{NUMBER}: any news?")
    index = MemoryIndex(ticket())
    assert routed(mail, index).action == "new"
    result = routed(mail, index, RouterConfig(follow_up_by_body=True))
    assert (result.action, result.ticket_number) == ("follow_up", NUMBER)
    assert any(r.detail.startswith("body carries") for r in result.reasons)


def test_removed_ticket_is_unknown() -> None:
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), MemoryIndex(ticket(state="removed")))
    assert result.action == "new"


def test_message_id_helpers() -> None:
    assert normalize_message_id("  <a.b@c>  ") == "a.b@c"
    assert message_ids("<a@b> <c@d>\n\t<e@f>") == ["a@b", "c@d", "e@f"]
    assert message_ids("a@b") == ["a@b"]


# --------------------------------------------------------------------------- merges


def test_follow_up_to_merged_ticket_goes_to_the_end_of_the_chain() -> None:
    index = MemoryIndex(
        ticket(NUMBER, state="merged", merged_into_number=OTHER),
        ticket(OTHER, state="merged", merged_into_number=THIRD),
        ticket(THIRD, queue="Permissions", state="open"),
    )
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), index)
    assert (result.action, result.ticket_number, result.queue) == ("follow_up", THIRD, "Permissions")
    assert not result.reopen
    merges = [r.detail for r in result.reasons if r.step == "merge"]
    assert merges == [f"ticket {NUMBER} was merged into {OTHER}", f"ticket {OTHER} was merged into {THIRD}"]


def test_merge_loop_is_broken() -> None:
    index = MemoryIndex(
        ticket(NUMBER, state="merged", merged_into_number=OTHER),
        ticket(OTHER, state="merged", merged_into_number=NUMBER),
    )
    follow_up = decide_follow_up(make_mail(f"Re: [Ticket#{NUMBER}] x"), RouterConfig(), index)
    assert follow_up.ticket is not None and follow_up.ticket.number == OTHER
    assert any("loop" in r.detail for r in follow_up.reasons)


def test_merge_into_missing_ticket_applies_the_closed_policy_of_the_merged_one() -> None:
    index = MemoryIndex(ticket(NUMBER, state="merged", merged_into_number=OTHER, follow_up_policy="reject"))
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), index)
    assert (result.action, result.ticket_number) == ("reject", NUMBER)
    assert any("unknown" in r.detail for r in result.reasons)


# --------------------------------------------------------------------------- closed tickets


@pytest.mark.parametrize("state", ["closed successful", "closed unsuccessful"])
def test_closed_ticket_with_reopen_policy(state: str) -> None:
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), MemoryIndex(ticket(state=state)))
    assert (result.action, result.ticket_number, result.reopen) == ("follow_up", NUMBER, True)
    assert any(r.step == "policy" and "reopen" in r.detail for r in result.reasons)


def test_closed_ticket_with_reject_policy() -> None:
    index = MemoryIndex(ticket(state="closed successful", follow_up_policy="reject"))
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), index)
    assert (result.action, result.ticket_number, result.reopen) == ("reject", NUMBER, False)
    assert result.queue == "Info-en"


def test_closed_ticket_with_new_ticket_policy_routes_as_new() -> None:
    index = MemoryIndex(ticket(state="closed successful", follow_up_policy="new_ticket"))
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] Printer again"), index)
    assert (result.action, result.ticket_number, result.reopen) == ("new", None, False)
    assert result.title == "Printer again"
    assert result.queue == "Raw"
    assert any("new_ticket" in r.detail for r in result.reasons)


@pytest.mark.parametrize("policy", ["reopen", "reject", "new_ticket"])
@pytest.mark.parametrize("flag", ["auto_submitted", "bounce", "loop"])
def test_automatic_mail_never_reopens_or_spawns(policy: str, flag: str) -> None:
    index = MemoryIndex(ticket(state="closed successful", follow_up_policy=policy))
    mail = make_mail(f"Auto: [Ticket#{NUMBER}] Out of office", flags=MailFlags(**{flag: True}))
    result = routed(mail, index)
    assert (result.action, result.ticket_number, result.reopen) == ("follow_up", NUMBER, False)


def test_pending_ticket_follow_up_is_not_a_reopen() -> None:
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), MemoryIndex(ticket(state="pending reminder")))
    assert (result.action, result.reopen) == ("follow_up", False)


def test_spam_marked_follow_up_does_not_reopen() -> None:
    mail = make_mail(f"Re: [Ticket#{NUMBER}] x", headers={"x-spam-flag": "YES"})
    result = routed(mail, MemoryIndex(ticket(state="closed successful")))
    assert (result.action, result.reopen, result.spam) == ("follow_up", False, True)


# --------------------------------------------------------------------------- sender check


def test_sender_not_on_ticket_is_threaded_and_flagged() -> None:
    mail = make_mail(f"Re: [Ticket#{NUMBER}] x", sender="mallory@elsewhere.example")
    result = routed(mail, MemoryIndex(ticket()))
    assert (result.action, result.ticket_number, result.sender_not_on_ticket) == ("follow_up", NUMBER, True)
    assert any(r.step == "sender" and "mallory@elsewhere.example" in r.detail for r in result.reasons)


def test_sender_comparison_ignores_case() -> None:
    mail = make_mail(f"Re: [Ticket#{NUMBER}] x", sender="Alice@Example.ORG")
    assert not routed(mail, MemoryIndex(ticket())).sender_not_on_ticket


def test_no_participants_known_means_no_flag() -> None:
    mail = make_mail(f"Re: [Ticket#{NUMBER}] x", sender="bob@example.net")
    assert not routed(mail, MemoryIndex(ticket(participants=frozenset()))).sender_not_on_ticket


def test_follow_up_ignores_filter_queue_but_keeps_reasons() -> None:
    config = RouterConfig(filters=(Filter("press", {"subject": "x"}, {"set_queue": "Press"}),))
    result = routed(make_mail(f"Re: [Ticket#{NUMBER}] x"), MemoryIndex(ticket()), config)
    assert result.queue == "Info-en"
    assert [r.step for r in result.reasons][0] == "filter"


def test_decide_follow_up_is_new_without_any_signal() -> None:
    follow_up = decide_follow_up(make_mail("Hello"), RouterConfig(), MemoryIndex(ticket()))
    assert (follow_up.action, follow_up.ticket) == ("new", None)


def test_ticket_info_is_immutable() -> None:
    info = ticket()
    with pytest.raises(AttributeError):
        info.state = "closed successful"  # type: ignore[misc]
    assert replace(info, state="closed successful").closed
