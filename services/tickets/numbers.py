"""Ticket-number generators for the tickets service (pluggable, as in OTRS).

The number format and its check digit are in :mod:`shared.ticket_numbers`; this module adds
what makes numbers unique: a counter per day behind :class:`DayCounter` (a PostgreSQL
sequence per day in the service).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Protocol

from shared.ticket_numbers import (
    TICKET_HOOK,
    TicketNumberParts,
    check_digit,
    find_ticket_numbers,
    format_ticket_number,
    is_valid_ticket_number,
    parse_ticket_number,
    ticket_hook,
)

__all__ = [
    "TICKET_HOOK",
    "DateChecksumGenerator",
    "DayCounter",
    "InMemoryDayCounter",
    "TicketNumberGenerator",
    "TicketNumberParts",
    "check_digit",
    "find_ticket_numbers",
    "format_ticket_number",
    "is_valid_ticket_number",
    "parse_ticket_number",
    "ticket_hook",
]


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
