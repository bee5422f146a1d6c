"""Date-based ticket numbers with a check digit, in the line of OTRS's DateChecksum generator.

A number is ``YYYYMMDD`` + two-digit system id + a counter that restarts each day (zero-padded to
five digits) + one check digit: ``2026112510000017``. The check digit lets a mistyped number be
rejected before any lookup. The counter is what must be unique under concurrency and across
restarts; it lives behind :class:`DayCounter` (a PostgreSQL sequence per day in the service),
so everything in this module is pure.

When more than 99,999 tickets are created in one day the counter simply grows a digit, as in
OTRS, so numbers are 16 digits or (rarely) longer; they never wrap or collide.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Protocol

TICKET_HOOK = "Ticket#"
MIN_COUNTER_DIGITS = 5
TICKET_NUMBER_LENGTH = 8 + 2 + MIN_COUNTER_DIGITS + 1
_WEIGHT_CYCLE = 9  # multipliers 1, 2, ..., 9, 1, 2, ... from the left


def check_digit(base: str) -> int:
    """The check digit for the digits of a ticket number without its last digit.

    Each digit is weighted by a multiplier cycling 1..9 from the left; the check digit is
    ``10 - (sum % 10)``, and 0 where that gives 10. ``services/router/ticket_hook.py`` checks
    numbers with the same formula; the two must change together.
    """
    total = sum(int(digit) * (position % _WEIGHT_CYCLE + 1) for position, digit in enumerate(base))
    check = 10 - total % 10
    return 0 if check == 10 else check


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


class DayCounter(Protocol):
    """Hands out 1, 2, 3, ... for each day, never the same value twice (a DB sequence per day)."""

    async def next_value(self, day: date) -> int: ...


class TicketNumberGenerator(Protocol):
    """Anything that gives a new, unique ticket number for a day. Pluggable, as in OTRS."""

    async def next_number(self, day: date) -> str: ...


@dataclass(frozen=True, slots=True)
class DateChecksumGenerator:
    """The default generator: a day counter formatted as a date-checksum number."""

    counter: DayCounter
    system_id: int = 10

    async def next_number(self, day: date) -> str:
        return format_ticket_number(day, self.system_id, await self.counter.next_value(day))


class InMemoryDayCounter:
    """A :class:`DayCounter` for tests and tools: unique within one process only."""

    def __init__(self) -> None:
        self._values: dict[date, int] = {}

    async def next_value(self, day: date) -> int:
        self._values[day] = self._values.get(day, 0) + 1
        return self._values[day]
