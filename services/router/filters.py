"""Postmaster filters: ordered rules that match headers or the body and set routing fields.

As in OTRS, every enabled filter is tried in position order; all of a filter's conditions must
match (regex search, case-insensitive, ``^``/``$`` per line); a matching filter's actions apply,
a later filter overriding an earlier one, until a filter with ``stop`` matches. A condition on a
header the mail does not have never matches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.events import Address, FilterChanged, ParsedMail, RoutingReason

KNOWN_ACTIONS = frozenset({"set_queue", "set_priority", "set_title", "mark_spam", "ignore", "stop"})
BODY = "body"
MAX_MATCHED_TEXT = 60
# Regexes run over at most this much body text, which bounds the cost of any pattern.
MAX_BODY_CHARS = 100_000


class InvalidFilter(ValueError):
    """A filter names an unknown action, has a bad regex or a bad action value."""


@dataclass(frozen=True)
class Filter:
    """One postmaster filter. Construct it once per configuration: regexes compile here."""

    name: str
    match: Mapping[str, str]
    actions: Mapping[str, Any]
    position: int = 0
    enabled: bool = True
    filter_id: str = ""
    _compiled: tuple[tuple[str, re.Pattern[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.actions) - KNOWN_ACTIONS
        if unknown:
            raise InvalidFilter(f"filter {self.name!r}: unknown action(s) {sorted(unknown)}")
        if not self.match:
            raise InvalidFilter(f"filter {self.name!r}: no match condition")
        _check_priority(self.name, self.actions.get("set_priority"))
        object.__setattr__(self, "_compiled", tuple(_compile(self.name, k, v) for k, v in self.match.items()))

    @classmethod
    def from_event(cls, event: FilterChanged) -> Filter:
        return cls(
            name=event.name,
            match=dict(event.match),
            actions=dict(event.actions),
            position=event.position,
            enabled=event.enabled,
            filter_id=event.filter_id,
        )

    def matches(self, mail: ParsedMail) -> list[str] | None:
        """``["Header=matched text", ...]`` if every condition holds, else None."""
        evidence = []
        for name, pattern in self._compiled:
            value = field_value(mail, name)
            found = None if value is None else pattern.search(value)
            if value is None or found is None:
                return None
            evidence.append(f"{_display_name(name)}={_shorten(found.group(0) or value)}")
        return evidence


@dataclass(frozen=True)
class FilterOutcome:
    """What the filters decided; None/False where no filter said anything."""

    queue: str | None = None
    priority: int | None = None
    title: str | None = None
    spam: bool = False
    ignore: bool = False
    reasons: tuple[RoutingReason, ...] = ()


def apply_filters(mail: ParsedMail, filters: Iterable[Filter]) -> FilterOutcome:
    """Run ``filters`` (already in order) over ``mail``; see the module docstring for semantics."""
    fields: dict[str, Any] = {}
    reasons: list[RoutingReason] = []
    for rule in filters:
        if not rule.enabled:
            continue
        evidence = rule.matches(mail)
        if evidence is None:
            continue
        fields.update(rule.actions)
        reasons.append(RoutingReason(step="filter", detail=_describe(rule, evidence)))
        if rule.actions.get("stop"):
            break
    return FilterOutcome(
        queue=fields.get("set_queue") or None,
        priority=int(fields["set_priority"]) if fields.get("set_priority") is not None else None,
        title=fields.get("set_title") or None,
        spam=bool(fields.get("mark_spam")),
        ignore=bool(fields.get("ignore")),
        reasons=tuple(reasons),
    )


def field_value(mail: ParsedMail, name: str) -> str | None:
    """The text a condition on ``name`` is matched against, or None if the mail has none."""
    key = name.lower()
    if key == BODY:
        return mail.body_text[:MAX_BODY_CHARS] if mail.body_text else None
    structured = _structured_field(mail, key)
    if structured is not None:
        return structured
    return mail.headers.get(key)


def _structured_field(mail: ParsedMail, key: str) -> str | None:
    if key == "from":
        return _format_addresses([mail.from_]) if mail.from_ else mail.headers.get("from")
    if key in ("to", "cc", "reply-to"):
        addresses = {"to": mail.to, "cc": mail.cc, "reply-to": mail.reply_to}[key]
        return _format_addresses(addresses) if addresses else mail.headers.get(key)
    if key == "subject":
        return mail.subject
    return None


def _format_addresses(addresses: Iterable[Address | None]) -> str:
    return ", ".join(f"{a.name} <{a.email}>" if a.name else a.email for a in addresses if a is not None)


def _compile(filter_name: str, header: str, regex: str) -> tuple[str, re.Pattern[str]]:
    try:
        return header.lower(), re.compile(regex, re.IGNORECASE | re.MULTILINE)
    except re.error as exc:
        raise InvalidFilter(f"filter {filter_name!r}: bad regex for {header}: {exc}") from None


def _check_priority(filter_name: str, value: Any) -> None:
    if value is None:
        return
    try:
        ok = 1 <= int(value) <= 5
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidFilter(f"filter {filter_name!r}: set_priority must be 1..5, got {value!r}")


def _describe(rule: Filter, evidence: list[str]) -> str:
    actions = ", ".join(f"{k}={v}" if v is not True else k for k, v in rule.actions.items())
    return f"filter {rule.name!r} matched {'; '.join(evidence)}" + (f" → {actions}" if actions else "")


def _display_name(name: str) -> str:
    return name if name == BODY else "-".join(part.capitalize() for part in name.split("-"))


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MATCHED_TEXT else text[: MAX_MATCHED_TEXT - 1] + "…"


# --------------------------------------------------------------------------- validation

MAX_PATTERN_CHARS = 1000
_FLAG_ACTIONS = ("mark_spam", "ignore", "stop")


@dataclass(frozen=True)
class FieldProblem:
    """One thing wrong with a filter as submitted, named by the field an API client sent."""

    field: str
    code: str
    detail: str


def filter_problems(match: Mapping[str, str], actions: Mapping[str, Any]) -> list[FieldProblem]:
    """Everything wrong with a filter's conditions and actions (queue names are not checked:
    whether a queue exists is the service's knowledge, not the filter's)."""
    problems = _match_problems(match)
    for name, value in actions.items():
        problems.extend(_action_problems(name, value))
    return problems


def _match_problems(match: Mapping[str, str]) -> list[FieldProblem]:
    if not match:
        return [FieldProblem("match", "invalid_filter", "a filter needs at least one condition")]
    problems = []
    for header, regex in match.items():
        where = f"match.{header}"
        if not header.strip() or any(c.isspace() or c == ":" for c in header):
            problems.append(FieldProblem(where, "invalid_header", f"{header!r} is not a header name or 'body'"))
        elif len(regex) > MAX_PATTERN_CHARS:
            problems.append(FieldProblem(where, "invalid_regex", f"longer than {MAX_PATTERN_CHARS} characters"))
        else:
            try:
                re.compile(regex)
            except re.error as exc:
                problems.append(FieldProblem(where, "invalid_regex", f"bad regex {regex!r}: {exc}"))
    return problems


def _action_problems(name: str, value: Any) -> list[FieldProblem]:
    where = f"actions.{name}"
    if name not in KNOWN_ACTIONS:
        return [FieldProblem(where, "unknown_action", f"unknown action; known: {', '.join(sorted(KNOWN_ACTIONS))}")]
    if name == "set_priority" and (isinstance(value, bool) or value not in (1, 2, 3, 4, 5)):
        return [FieldProblem(where, "invalid_priority", f"priority must be 1..5, not {value!r}")]
    if name in ("set_queue", "set_title") and not (isinstance(value, str) and value.strip()):
        return [FieldProblem(where, "invalid_value", f"{name} needs a non-empty string, not {value!r}")]
    if name in _FLAG_ACTIONS and not isinstance(value, bool):
        return [FieldProblem(where, "invalid_value", f"{name} is true or false, not {value!r}")]
    return []
