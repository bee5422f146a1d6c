from datetime import date

import pytest

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
