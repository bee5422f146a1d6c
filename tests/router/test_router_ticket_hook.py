"""Ticket hook parsing, reply/forward prefixes in many languages, and the check digit."""

from datetime import date

import pytest

from services.router.ticket_hook import (
    TicketHook,
    clean_subject,
    find_ticket_number,
    find_ticket_numbers,
    strip_prefixes,
    ticket_check_digit,
    ticket_number_is_valid,
)
from tests.router.router_mailkit import ticket_number

NUMBER = ticket_number("20090706", "10", 6135)

PREFIXES = [
    "Re:", "RE:", "re:", "Re :", "RE[2]:", "Re(2):", "Re^2:", "Re*3:", "AW:", "Aw:", "WG:", "Antwort:",
    "SV:", "Sv:", "Svar:", "VS:", "VB:", "VL:", "Antw:", "Doorst:", "Odp:", "PD:", "R:", "RIF:", "I:",
    "Fwd:", "FWD:", "Fw:", "FW:", "TR:", "TR :", "RE :", "Réf. :", "Réf:", "Enc:", "RES:", "RV:",
    "YNT:", "İLT:", "Ynt:", "Ats:", "Vá:", "Továbbítás:", "Odg:",
    "回复:", "回复：", "回覆:", "答复:", "转发:", "轉寄:", "返信:", "転送:", "회신:", "전달:",
    "Ответ:", "Отв:", "Пересл:", "ΑΠ:", "ΣΧΕΤ:", "ΠΡΘ:", "השב:", "رد:",
]  # fmt: skip


@pytest.mark.parametrize("prefix", PREFIXES)
def test_every_prefix_keeps_the_thread_and_is_stripped_from_the_title(prefix: str) -> None:
    subject = f"{prefix} [Ticket#{NUMBER}] Drucker druckt nicht"
    assert find_ticket_number(subject) == NUMBER
    assert clean_subject(subject) == "Drucker druckt nicht"
    assert clean_subject(f"{prefix} Drucker druckt nicht") == "Drucker druckt nicht"


@pytest.mark.parametrize(
    "subject",
    [
        f"Re: AW: Fwd: [Ticket#{NUMBER}] Question about access",
        f"RE[2]: WG: SV: VS: [Ticket#{NUMBER}] Question about access",
        f"Re:Re:Re: [Ticket#{NUMBER}] Question about access",
        f"[Ticket#{NUMBER}] Re: Question about access",
        f"Fwd: [Ticket#{NUMBER}] AW: Question about access",
        f"Question about access [Ticket#{NUMBER}]",
        f"回复: 转发: [Ticket#{NUMBER}] Question about access",
        f"Ответ: Re(2): [Ticket#{NUMBER}] Question about access",
        f"RE : TR : Réf. : [Ticket#{NUMBER}] Question about access",
        f"Re: Ticket#: {NUMBER} Question about access",
        f"AW: Ticket#{NUMBER} Question about access",
        f"Re: [ticket#{NUMBER}] Question about access",
        f"[Fwd: [Ticket#{NUMBER}] Question about access]",
        f"Re:   [Ticket#{NUMBER}]    Question   about access  ",
    ],
)
def test_nested_and_mixed_prefixes(subject: str) -> None:
    assert find_ticket_number(subject) == NUMBER
    assert clean_subject(subject) == "Question about access"


def test_prefix_words_inside_a_subject_are_kept() -> None:
    assert strip_prefixes("Regarding: the Re: issue") == "Regarding: the Re: issue"
    assert clean_subject("Fwd: Reply to AW: please") == "Reply to AW: please"
    assert clean_subject("Review: new docs") == "Review: new docs"


def test_clean_subject_of_nothing() -> None:
    assert clean_subject("") == ""
    assert clean_subject("Re: Fwd:") == ""
    assert clean_subject(f"[Ticket#{NUMBER}]") == ""


@pytest.mark.parametrize(
    "number",
    [
        NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10),  # wrong check digit
        NUMBER[:-1],  # too short
        "20241341" + NUMBER[8:-1] + str(ticket_check_digit("20241341" + NUMBER[8:-1])),  # no such date
        "",
        "abcdefghijklmnop",
        "２" * 16,  # full-width digits are not ticket numbers
    ],
)
def test_invalid_numbers(number: str) -> None:
    assert not ticket_number_is_valid(number)


def test_a_day_with_more_than_99999_tickets_grows_the_counter() -> None:
    long_number = ticket_number(counter=123_456)
    assert len(long_number) == 17
    assert ticket_number_is_valid(long_number)
    assert find_ticket_number(f"Re: [Ticket#{long_number}]") == long_number


def test_same_formula_as_the_tickets_service() -> None:
    numbers = pytest.importorskip("services.tickets.numbers")
    for counter in range(0, 200_000, 997):
        base = f"2026112510{counter:05d}"
        assert ticket_check_digit(base) == numbers.check_digit(base)
    assert ticket_number_is_valid(numbers.format_ticket_number(date(2026, 11, 25), 10, 17))


def test_transposed_digits_are_caught() -> None:
    swapped = NUMBER[:10] + NUMBER[11] + NUMBER[10] + NUMBER[12:]
    assert swapped != NUMBER
    assert not ticket_number_is_valid(swapped)


def test_invalid_check_digit_in_subject_is_not_a_ticket_number() -> None:
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    assert find_ticket_number(f"Re: [Ticket#{bad}] hi") is None


def test_first_valid_number_wins_and_all_are_listed() -> None:
    other = ticket_number(counter=42)
    bad = NUMBER[:-1] + str((int(NUMBER[-1]) + 1) % 10)
    subject = f"Re: [Ticket#{bad}] Fwd: [Ticket#{other}] and [Ticket#{NUMBER}]"
    assert find_ticket_numbers(subject) == [other, NUMBER]
    assert find_ticket_number(subject) == other


def test_number_must_not_be_part_of_a_longer_digit_run() -> None:
    assert find_ticket_number(f"[Ticket#{NUMBER}7]") is None


def test_configurable_hook_and_divider() -> None:
    hook = TicketHook(hook="Req#", divider="-")
    assert find_ticket_number(f"Re: [Req#-{NUMBER}] x", hook) == NUMBER
    assert find_ticket_number(f"Re: [Req#{NUMBER}] x", hook) == NUMBER
    assert find_ticket_number(f"Re: [Ticket#{NUMBER}] x", hook) is None
    assert clean_subject(f"AW: [Req#-{NUMBER}] Zugang", hook) == "Zugang"
    assert hook.format(NUMBER) == f"[Req#-{NUMBER}]"


def test_number_of_another_system_is_not_ours() -> None:
    hook = TicketHook(system_id="10")
    foreign = ticket_number(system_id="77")
    assert find_ticket_number(f"[Ticket#{foreign}]", hook) is None
    assert find_ticket_number(f"[Ticket#{NUMBER}]", hook) == NUMBER
    assert find_ticket_number(f"[Ticket#{foreign}]") == foreign  # no system id configured
