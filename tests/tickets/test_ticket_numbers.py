from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tickets.numbers import (
    DateChecksumGenerator,
    InMemoryDayCounter,
    check_digit,
    find_ticket_numbers,
    format_ticket_number,
    is_valid_ticket_number,
    parse_ticket_number,
    ticket_hook,
)


def test_format_is_date_system_id_counter_and_check_digit() -> None:
    number = format_ticket_number(date(2009, 7, 6), 10, 6135)
    assert number[:15] == "200907061006135"
    assert len(number) == 16
    assert is_valid_ticket_number(number)


def test_check_digit_by_hand() -> None:
    # digits 2 0 0 9 0 7 0 6 1 0 0 6 1 3 5, weights 1..9 then 1..6:
    # 2 + 36 + 42 + 48 + 9 + 18 + 4 + 15 + 30 = 204 -> 10 - 4 = 6
    assert check_digit("200907061006135") == 6


def test_check_digit_ten_becomes_zero() -> None:
    assert check_digit("000000000000005") == 0  # 5 * 6 = 30
    assert check_digit("100000000000009") == 5  # 1 * 1 + 9 * 6 = 55


def test_otrs_example_does_not_validate_with_the_cycle_of_nine() -> None:
    """ARCHITECTURE.md's example was made by OTRS's own formula (weights 1, 2, 1, 2, ... and 10
    -> 1), under which its check digit 9 is right; with the 1..9 cycle it would be 6."""
    assert not is_valid_ticket_number("2009070610061359")
    assert is_valid_ticket_number("2009070610061356")


def test_rejects_malformed_numbers() -> None:
    good = format_ticket_number(date(2026, 11, 25), 10, 17)
    assert is_valid_ticket_number(good)
    wrong_digit = good[:-1] + str((int(good[-1]) + 1) % 10)
    assert not is_valid_ticket_number(wrong_digit)
    assert not is_valid_ticket_number(good[:-2])
    assert not is_valid_ticket_number("abc" + good[3:])
    assert not is_valid_ticket_number("")
    assert not is_valid_ticket_number("٢" * 16)  # non-ASCII digits
    no_such_day = "20261332" + good[8:15]
    assert not is_valid_ticket_number(no_such_day + str(check_digit(no_such_day)))


def test_parse_gives_the_parts_back() -> None:
    parts = parse_ticket_number(format_ticket_number(date(2026, 2, 28), 7, 99999))
    assert (parts.day, parts.system_id, parts.counter) == (date(2026, 2, 28), 7, 99999)


def test_counter_beyond_five_digits_grows_the_number() -> None:
    number = format_ticket_number(date(2026, 11, 25), 10, 123456)
    assert len(number) == 17
    assert parse_ticket_number(number).counter == 123456


@pytest.mark.parametrize(("system_id", "counter"), [(-1, 1), (100, 1), (10, -1)])
def test_format_refuses_out_of_range_parts(system_id: int, counter: int) -> None:
    with pytest.raises(ValueError):
        format_ticket_number(date(2026, 11, 25), system_id, counter)


@given(
    day=st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31)),
    system_id=st.integers(0, 99),
    counter=st.integers(0, 10**7),
    position=st.integers(0, 14),
    delta=st.integers(1, 9),
)
def test_any_single_digit_typo_in_the_date_or_counter_is_caught(
    day: date, system_id: int, counter: int, position: int, delta: int
) -> None:
    number = format_ticket_number(day, system_id, counter)
    assert parse_ticket_number(number).counter == counter
    digit = (int(number[position]) + delta) % 10
    typo = number[:position] + str(digit) + number[position + 1 :]
    weight = position % 9 + 1
    if (delta * weight) % 10 != 0:  # weights 2, 4, 5, 6, 8 cannot see every change
        assert not is_valid_ticket_number(typo)


def test_hook_and_finding_numbers_in_subjects() -> None:
    number = format_ticket_number(date(2026, 11, 25), 10, 3)
    assert ticket_hook(number) == f"[Ticket#{number}]"
    typo = number[:-1] + str((int(number[-1]) + 1) % 10)
    subject = f"Re: [Ticket#{number}] help; also ticket#: {typo} and TICKET# {number}"
    assert find_ticket_numbers(subject) == [number, number]


async def test_generator_counts_per_day() -> None:
    generator = DateChecksumGenerator(InMemoryDayCounter(), system_id=10)
    first = await generator.next_number(date(2026, 11, 25))
    second = await generator.next_number(date(2026, 11, 25))
    next_day = await generator.next_number(date(2026, 11, 26))
    assert [parse_ticket_number(n).counter for n in (first, second, next_day)] == [1, 2, 1]
    assert all(is_valid_ticket_number(n) for n in (first, second, next_day))
