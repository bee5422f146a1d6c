from datetime import date

from shared.ticket_numbers import check_digit, format_ticket_number, is_valid_ticket_number


def test_the_architecture_example_is_valid_as_otrs_made_it() -> None:
    assert is_valid_ticket_number("2009070610061359")
    assert not is_valid_ticket_number("2009070610061356")


def test_check_digit_by_hand() -> None:
    # 2 0 0 9 0 7 0 6 1 0 0 6 1 3 5 weighted 1 2 1 2 ...: 2+0+0+18+0+14+0+12+1+0+0+12+1+6+5 = 71 -> 10 - 1 = 9
    assert check_digit("200907061006135") == 9


def test_ten_becomes_one_as_in_otrs() -> None:
    assert check_digit("000000000000000") == 1


def test_most_single_digit_typos_are_caught() -> None:
    number = format_ticket_number(date(2026, 11, 25), 10, 4711)
    typos = [
        number[:i] + str((int(number[i]) + delta) % 10) + number[i + 1 :] for i in range(15) for delta in range(1, 10)
    ]
    caught = sum(not is_valid_ticket_number(t) for t in typos)
    assert caught / len(typos) > 0.8
