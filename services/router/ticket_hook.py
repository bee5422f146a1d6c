"""Ticket numbers in subjects: the OTRS ticket hook, reply/forward prefixes, check digits.

A follow-up is recognised by the ticket number anywhere in the subject, so no reply or forward
prefix (in any language, nested or counted) can split a thread; the prefixes only matter for
:func:`clean_subject`, which gives a new ticket its title.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

from shared.ticket_numbers import check_digit, is_valid_ticket_number

TICKET_NUMBER_LENGTH = 16  # the minimum; see ticket_number_is_valid
_SYSTEM_ID = slice(8, 10)

# Reply and forward prefixes as mail clients write them (Outlook, Thunderbird, Gmail, Apple Mail,
# Foxmail, ...) in many languages. Matched case-insensitively, followed by an optional counter
# ("RE[2]", "Re(2)", "Re^2", "Re*2") and an ASCII or full-width colon.
REPLY_FORWARD_PREFIXES: tuple[str, ...] = (
    # English and international
    "re", "fwd", "fw", "fwrd", "fwdr",
    # German, Dutch, Scandinavian, Finnish, Estonian, Icelandic
    "aw", "antwort", "wg", "antw", "doorst", "sv", "svar", "vs", "vb", "vl", "edasi", "áfram",
    # Romance languages
    "r", "rif", "i", "tr", "trans", "réf", "ref", "rép", "ré", "enc", "res", "resp", "rv", "rta",
    # Slavic, Baltic, Hungarian, Turkish
    "odp", "pd", "odg", "přep", "př", "ats", "pers", "atb", "pārs", "vá", "továbbítás",
    "ynt", "ilt", "İlt", "cevap",
    "ответ", "отв", "пересл", "переслать", "відп", "отг", "препратено",
    # Greek, Hebrew, Arabic, Persian
    "απ", "σχετ", "πρθ", "השב", "העבר", "תגובה", "הועבר", "رد", "إعادة توجيه", "پاسخ",
    # Chinese, Japanese, Korean, Indonesian
    "回复", "回覆", "答复", "答覆", "转发", "轉發", "转寄", "轉寄", "返信", "転送",
    "회신", "전달", "답장", "balas", "trs",
)  # fmt: skip

_COUNTER = r"(?:\s*\[\d+\]|\s*\(\d+\)|\^\d+|\*\d+)?"
_PREFIX_RE = re.compile(
    r"^\s*(?:"
    + "|".join(re.escape(p) for p in sorted(REPLY_FORWARD_PREFIXES, key=len, reverse=True))
    + r")\.?"
    + _COUNTER
    + r"\s*[:：]\s*",
    re.IGNORECASE,
)
_BRACKETED_FORWARD_RE = re.compile(r"^\s*\[(?:fwd?|fw)\s*:\s*(.*)\]\s*$", re.IGNORECASE | re.DOTALL)
_SPACES_RE = re.compile(r"\s+")


def ticket_check_digit(base: str) -> int:
    """The check digit for a number without its last digit (see :mod:`shared.ticket_numbers`)."""
    return check_digit(base)


def ticket_number_is_valid(number: str) -> bool:
    """True for ``YYYYMMDD`` (a real date) + system id + counter + the right check digit.

    At least 16 ASCII digits: the counter grows a digit on a day with more than 99,999
    tickets, as in OTRS.
    """
    return is_valid_ticket_number(number)


def ticket_system_id(number: str) -> str:
    """The two-digit system id of a date-based number (``YYYYMMDD`` + system id + counter)."""
    return number[_SYSTEM_ID]


@dataclass(frozen=True)
class TicketHook:
    """Where ticket numbers are written: ``[Ticket#2009070610061359]`` by default.

    ``hook`` and ``divider`` are OTRS's TicketHook and TicketHookDivider. Matching tolerates a
    missing bracket, a colon and a little whitespace after the hook (``Ticket#: 123...``), and
    any case. ``system_id``, when set, is this installation's id: numbers of other systems are
    reported as foreign instead of looked up.
    """

    hook: str = "Ticket#"
    divider: str = ""
    system_id: str | None = None

    @cached_property
    def _number_re(self) -> re.Pattern[str]:
        divider = f"(?:{re.escape(self.divider)})?" if self.divider else ""
        return re.compile(
            re.escape(self.hook) + divider + r"\s{0,2}:?\s{0,2}([0-9]{1,32})(?![0-9])",
            re.IGNORECASE,
        )

    @cached_property
    def _strip_re(self) -> re.Pattern[str]:
        return re.compile(r"\[\s*" + self._number_re.pattern + r"\s*\]|" + self._number_re.pattern, re.I)

    def candidates(self, text: str) -> list[str]:
        """Every digit run written after the hook in ``text``, in order, valid or not."""
        return self._number_re.findall(text)

    def format(self, number: str) -> str:
        """The subject tag for a ticket, e.g. ``[Ticket#2009070610061359]``."""
        return f"[{self.hook}{self.divider}{number}]"

    def is_foreign(self, number: str) -> bool:
        return self.system_id is not None and ticket_system_id(number) != self.system_id

    def strip(self, subject: str) -> str:
        """``subject`` without any hook and number in it."""
        return self._strip_re.sub(" ", subject)


DEFAULT_HOOK = TicketHook()


def find_ticket_numbers(text: str, hook: TicketHook = DEFAULT_HOOK) -> list[str]:
    """Ticket numbers after the hook in ``text`` that are well-formed and of this system."""
    return [n for n in hook.candidates(text) if ticket_number_is_valid(n) and not hook.is_foreign(n)]


def find_ticket_number(text: str, hook: TicketHook = DEFAULT_HOOK) -> str | None:
    """The first valid ticket number in ``text``, or None."""
    numbers = find_ticket_numbers(text, hook)
    return numbers[0] if numbers else None


def strip_prefixes(subject: str) -> str:
    """Remove leading reply/forward prefixes, however many and however nested."""
    previous = None
    while previous != subject:
        previous = subject
        subject = _PREFIX_RE.sub("", subject, count=1)
        bracketed = _BRACKETED_FORWARD_RE.match(subject)
        if bracketed:
            subject = bracketed.group(1)
    return subject


def clean_subject(subject: str, hook: TicketHook = DEFAULT_HOOK) -> str:
    """The subject as a ticket title: without prefixes, ticket hooks and extra whitespace.

    Hooks are removed first so that prefixes after a leading tag
    (``[Ticket#...] Re: question``) go too.
    """
    without_hooks = _SPACES_RE.sub(" ", hook.strip(subject)).strip()
    return _SPACES_RE.sub(" ", strip_prefixes(without_hooks)).strip()
