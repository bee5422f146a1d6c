"""Date-based ticket numbers with a check digit, as OTRS's DateChecksum generator makes them.

Shared because tickets makes the numbers and router recognises them in subjects: both must
agree on the check digit.

A number is ``YYYYMMDD`` + two-digit system id + a counter that restarts each day (zero-padded to
five digits) + one check digit: ``2026112510000017``. The check digit lets a mistyped number be
rejected before any lookup. The counter that makes numbers unique lives in the tickets
service; everything here is pure.

When more than 99,999 tickets are created in one day the counter simply grows a digit, as in
OTRS, so numbers are 16 digits or (rarely) longer; they never wrap or collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

TICKET_HOOK = "Ticket#"
MIN_COUNTER_DIGITS = 5
TICKET_NUMBER_LENGTH = 8 + 2 + MIN_COUNTER_DIGITS + 1


def check_digit(base: str) -> int:
    """The check digit for the digits of a ticket number without its last digit.

    OTRS's formula: digits weighted 1, 2, 1, 2, ... from the left; the check digit is
    ``10 - (sum % 10)``, and 1 where that gives 10 (so ``2009070610061359`` is valid).
    """
    total = sum(int(digit) * (position % 2 + 1) for position, digit in enumerate(base))
    check = 10 - total % 10
    return 1 if check == 10 else check


def format_ticket_number(day: date, system_id: int, counter: int) -> str:
    """The ticket number for the ``counter``-th ticket of ``day`` on system ``system_id``."""
    if not 0 <= system_id <= 99:
        raise ValueError(f"system id must be 0..99, got {system_id}")
    if counter < 0:
        raise ValueError(f"counter must not be negative, got {counter}")
    base = f"{day:%Y%m%d}{system_id:02d}{counter:0{MIN_COUNTER_DIGITS}d}"
    return f"{base}{check_digit(base)}"


@dataclass(frozen=True, slots=True)
class TicketNumberParts:
    day: date
    system_id: int
    counter: int


def parse_ticket_number(number: str) -> TicketNumberParts:
    """Split a ticket number into its parts; ``ValueError`` when it is not a valid number."""
    if len(number) < TICKET_NUMBER_LENGTH or not (number.isascii() and number.isdigit()):
        raise ValueError(f"not a ticket number: {number!r}")
    if int(number[-1]) != check_digit(number[:-1]):
        raise ValueError(f"wrong check digit in ticket number {number!r}")
    try:
        day = date(int(number[0:4]), int(number[4:6]), int(number[6:8]))
    except ValueError:
        raise ValueError(f"no such date in ticket number {number!r}") from None
    return TicketNumberParts(day=day, system_id=int(number[8:10]), counter=int(number[10:-1]))


def is_valid_ticket_number(number: str) -> bool:
    """True for a well-formed number: digits only, a real date, and the right check digit."""
    try:
        parse_ticket_number(number)
    except ValueError:
        return False
    return True


def ticket_hook(number: str) -> str:
    """The subject tag that threads replies to a ticket: ``[Ticket#2026112510000017]``."""
    return f"[{TICKET_HOOK}{number}]"


_HOOK_RE = re.compile(re.escape(TICKET_HOOK) + r"\s{0,2}:?\s{0,2}([0-9]{16,})(?![0-9])", re.IGNORECASE)


def find_ticket_numbers(text: str) -> list[str]:
    """Valid ticket numbers written after the hook in ``text``, in order."""
    return [n for n in _HOOK_RE.findall(text) if is_valid_ticket_number(n)]
