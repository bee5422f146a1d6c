"""The router's decision for one mail: follow-up or new ticket, queue, priority, spam, and why.

Pure logic: everything the decision needs comes in as arguments (the mail, the configuration,
a read-only index of tickets, the classifier), and the answer is one ``TicketRouted``. The
service around it (phase 2) keeps the index and the configuration up to date from events.

Order of the decision (:func:`route`):

1. postmaster filters; ``ignore`` ends routing (the mail is stored, no ticket);
2. follow-up detection: ticket hook in the subject, then In-Reply-To / bounce / References,
   then (if enabled) the hook in the body; merged tickets are followed to their target, closed
   tickets get their queue's follow-up policy;
3. for a new ticket, the queue: a filter's queue or spam mark, else spam score over the
   threshold (Junk), else the system address it was sent to (per language), else the content
   classifier if it is confident enough, else the default queue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any, Literal, Protocol

from services.router.bounce import bounce_info
from services.router.classifier import Classifier, Prediction, tokenize_mail
from services.router.filters import Filter, FilterOutcome, InvalidFilter, apply_filters
from services.router.ticket_hook import (
    DEFAULT_HOOK,
    TicketHook,
    clean_subject,
    find_ticket_number,
    find_ticket_numbers,
    strip_prefixes,
    ticket_check_digit,
    ticket_number_is_valid,
)
from shared.events import (
    CLOSED_STATES,
    ParsedMail,
    RoutingReason,
    SystemAddressChanged,
    TicketRouted,
    TicketState,
)

__all__ = [
    "Classifier",
    "Filter",
    "FilterOutcome",
    "FollowUp",
    "FollowUpPolicy",
    "InvalidFilter",
    "LookupKeys",
    "Prediction",
    "QueueDecision",
    "RouterConfig",
    "SnapshotIndex",
    "SystemAddress",
    "TicketHook",
    "TicketIndex",
    "TicketInfo",
    "addresses_in",
    "apply_filters",
    "clean_subject",
    "decide_follow_up",
    "decide_queue",
    "deciding_step",
    "find_ticket_number",
    "find_ticket_numbers",
    "header_spam_score",
    "header_spam_verdict",
    "spam_check",
    "lookup_keys",
    "match_system_address",
    "message_ids",
    "normalize_address",
    "normalize_message_id",
    "priority_from_headers",
    "relabel_plan",
    "route",
    "strip_prefixes",
    "thread_key",
    "ticket_check_digit",
    "ticket_number_is_valid",
]

FollowUpPolicy = Literal["reopen", "reject", "new_ticket"]
DEFAULT_SPAM_THRESHOLD = 0.0225  # 5-fold CV on the corpus training split (bench/router.py)
NO_SUBJECT = "(no subject)"
MAX_REFERENCES = 50
MAX_MERGE_HOPS = 32
MAX_BODY_SEARCH_CHARS = 20_000
_MESSAGE_ID_RE = re.compile(r"<([^<>\s]+)>")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class TicketInfo:
    """What the router knows about one ticket (kept by its index from ``ticket.events``)."""

    ticket_id: str
    number: str
    queue: str
    state: TicketState
    merged_into_number: str | None = None
    participants: frozenset[str] = frozenset()  # lower-cased addresses: customer, cc'd, replied
    follow_up_policy: FollowUpPolicy = "reopen"  # the policy of the ticket's queue

    @property
    def closed(self) -> bool:
        return self.state in CLOSED_STATES


class TicketIndex(Protocol):
    """Read-only lookups the follow-up decision needs.

    Message-ids are passed through :func:`normalize_message_id` (no angle brackets), so the
    index must store them the same way: ids of mails received and of answers sent.
    """

    def ticket_by_number(self, number: str) -> TicketInfo | None: ...

    def ticket_by_message_id(self, message_id: str) -> TicketInfo | None: ...


@dataclass(frozen=True)
class SystemAddress:
    """An address the helpdesk receives mail at, and the queue it feeds."""

    email: str
    queue: str
    language_queues: dict[str, str] = field(default_factory=dict)
    display_name: str = ""

    @classmethod
    def from_event(cls, event: SystemAddressChanged) -> SystemAddress:
        return cls(event.email, event.queue, dict(event.language_queues), event.display_name)

    def queue_for(self, language: str | None) -> str:
        """The queue for mail in ``language`` ("de", "de-AT", "de_DE" all choose the "de" queue)."""
        code = (language or "").strip().lower().replace("_", "-")
        return self.language_queues.get(code) or self.language_queues.get(code.split("-")[0]) or self.queue


@dataclass(frozen=True)
class RouterConfig:
    """Everything configurable about routing. Filters are kept in position order."""

    filters: tuple[Filter, ...] = ()
    system_addresses: tuple[SystemAddress, ...] = ()
    default_queue: str = "Raw"
    junk_queue: str = "Junk"
    hook: TicketHook = DEFAULT_HOOK
    follow_up_by_body: bool = False
    # The classifier's P(Junk) at or above which → Junk. Chosen by cross-validation on the
    # training part of the corpus (bench/router.py prints how); the header signals do not use it.
    spam_threshold: float = DEFAULT_SPAM_THRESHOLD
    classifier_threshold: float = 0.8  # minimum probability for the classifier to choose a queue
    trust_spam_headers: bool = True  # X-Spam-Flag/-Status/-Score from an upstream filter count
    # The header verdict's own threshold: an upstream score at or above this (or above the
    # ``required=`` the header states, whichever is higher) → Junk, as do X-Spam-Flag/-Status: YES.
    spam_header_required: float = 5.0
    default_priority: int = 3

    _by_email: dict[str, SystemAddress] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ordered = tuple(sorted((f for f in self.filters if f.enabled), key=lambda f: f.position))
        object.__setattr__(self, "filters", ordered)
        addresses = tuple(self.system_addresses)
        object.__setattr__(self, "system_addresses", addresses)
        object.__setattr__(self, "_by_email", {a.email.strip().lower(): a for a in addresses})

    def system_address(self, email: str) -> SystemAddress | None:
        return self._by_email.get(email.strip().lower())


# --------------------------------------------------------------------------- follow-up


@dataclass(frozen=True)
class FollowUp:
    """Follow-up detection's answer. ``ticket`` is None for a new ticket."""

    action: Literal["new", "follow_up", "reject"]
    ticket: TicketInfo | None = None
    reopen: bool = False
    sender_not_on_ticket: bool = False
    reasons: tuple[RoutingReason, ...] = ()


def normalize_message_id(value: str) -> str:
    """A message-id without angle brackets and surrounding whitespace."""
    return value.strip().strip("<>").strip()


def message_ids(value: str) -> list[str]:
    """The message-ids in a header value (``<a@x> <b@y>``), tolerating missing brackets."""
    found = _MESSAGE_ID_RE.findall(value)
    return found if found else [normalize_message_id(v) for v in value.split() if v.strip("<>")]


def decide_follow_up(mail: ParsedMail, config: RouterConfig, index: TicketIndex) -> FollowUp:
    """New ticket or follow-up (and to which ticket), with the closed-ticket policy applied."""
    reasons: list[RoutingReason] = []
    found = _find_thread(mail, config, index, reasons)
    if found is None:
        return FollowUp(action="new", reasons=tuple(reasons))
    ticket = _follow_merges(found, index, reasons)
    sender_not_on_ticket = _sender_not_on_ticket(mail, ticket, reasons)
    action, reopen = _closed_policy(mail, ticket, reasons)
    return FollowUp(
        action=action,
        ticket=ticket if action != "new" else None,
        reopen=reopen,
        sender_not_on_ticket=sender_not_on_ticket and action != "new",
        reasons=tuple(reasons),
    )


def _find_thread(
    mail: ParsedMail, config: RouterConfig, index: TicketIndex, reasons: list[RoutingReason]
) -> TicketInfo | None:
    ticket = _by_hook(mail.subject, "subject", config.hook, index, reasons)
    if ticket is None:
        ticket = _by_message_ids(mail, index, reasons)
    if ticket is None and config.follow_up_by_body:
        ticket = _by_hook(mail.body_text[:MAX_BODY_SEARCH_CHARS], "body", config.hook, index, reasons)
    return ticket


def _by_hook(
    text: str, where: str, hook: TicketHook, index: TicketIndex, reasons: list[RoutingReason]
) -> TicketInfo | None:
    """The first ticket named by a valid, known number after the hook in ``text``."""
    for number in hook.candidates(text):
        label = f"{hook.hook}{number}"
        if not ticket_number_is_valid(number):
            reasons.append(_reason("follow_up", f"{where}: {label} is not a valid ticket number; ignored"))
        elif hook.is_foreign(number):
            reasons.append(_reason("follow_up", f"{where}: {label} belongs to another system; ignored"))
        elif (ticket := _live(index.ticket_by_number(number))) is None:
            reasons.append(_reason("follow_up", f"{where}: {label} matches no ticket; ignored"))
        else:
            detail = f"{where} carries {label} → ticket {number} ({ticket.state})"
            reasons.append(_reason("follow_up", detail))
            return ticket
    return None


def _by_message_ids(mail: ParsedMail, index: TicketIndex, reasons: list[RoutingReason]) -> TicketInfo | None:
    """In-Reply-To first, then the original of a bounce, then References from newest to oldest."""
    for header, msgid in _thread_message_ids(mail):
        ticket = _live(index.ticket_by_message_id(msgid))
        if ticket is not None:
            detail = f"{header} <{msgid}> is in ticket {ticket.number} ({ticket.state})"
            reasons.append(_reason("follow_up", detail))
            return ticket
    return None


def _thread_message_ids(mail: ParsedMail) -> list[tuple[str, str]]:
    candidates: list[tuple[str, str]] = []
    if mail.in_reply_to:
        candidates += [("In-Reply-To", m) for m in message_ids(mail.in_reply_to)]
    if mail.bounce_original_message_id:
        candidates.append(("bounced message", normalize_message_id(mail.bounce_original_message_id)))
    references = [m for ref in mail.references for m in message_ids(ref)]
    candidates += [("References", m) for m in reversed(references[-MAX_REFERENCES:])]
    seen: set[str] = set()
    unique = []
    for header, msgid in candidates:
        if msgid and msgid not in seen:
            seen.add(msgid)
            unique.append((header, msgid))
    return unique


def _live(ticket: TicketInfo | None) -> TicketInfo | None:
    """A removed ticket is as good as unknown: a mail to it starts a new ticket."""
    return None if ticket is None or ticket.state == "removed" else ticket


def _follow_merges(ticket: TicketInfo, index: TicketIndex, reasons: list[RoutingReason]) -> TicketInfo:
    """The ticket at the end of the merge chain; a loop or a missing target stops the walk."""
    seen = {ticket.number}
    while (into := ticket.merged_into_number) is not None:
        target = _live(index.ticket_by_number(into))
        if target is None:
            reasons.append(_reason("merge", f"ticket {ticket.number} was merged into unknown {into}"))
            break
        if target.number in seen or len(seen) > MAX_MERGE_HOPS:
            reasons.append(_reason("merge", f"merge loop at {target.number}; stopped at {ticket.number}"))
            break
        reasons.append(_reason("merge", f"ticket {ticket.number} was merged into {target.number}"))
        seen.add(target.number)
        ticket = target
    return ticket


def _sender_not_on_ticket(mail: ParsedMail, ticket: TicketInfo, reasons: list[RoutingReason]) -> bool:
    """True if the index knows who is on the ticket and the sender is not one of them."""
    if not ticket.participants or mail.from_ is None:
        return False
    sender = mail.from_.email.strip().lower()
    if sender in {p.lower() for p in ticket.participants}:
        return False
    reasons.append(_reason("sender", f"sender {sender} is not on ticket {ticket.number}; threaded, flagged"))
    return True


def _closed_policy(
    mail: ParsedMail, ticket: TicketInfo, reasons: list[RoutingReason]
) -> tuple[Literal["new", "follow_up", "reject"], bool]:
    """(action, reopen) for a follow-up; closed tickets follow their queue's policy.

    Machine mail (auto-replies, bounces, loops) is attached to a closed ticket without reopening
    it, whatever the policy: an out-of-office answer must neither reopen nor spawn a ticket.
    """
    if not ticket.closed:
        return "follow_up", False
    closed = f"ticket {ticket.number} is {ticket.state}"
    if _is_machine_mail(mail):
        reasons.append(_reason("policy", f"{closed}; automatic mail attached, not reopened"))
        return "follow_up", False
    policy = ticket.follow_up_policy
    outcome = _POLICY_OUTCOME[policy]
    reasons.append(_reason("policy", f"{closed}; queue {ticket.queue} policy {policy}: {outcome}"))
    if policy == "reject":
        return "reject", False
    if policy == "new_ticket":
        return "new", False
    return "follow_up", True


_POLICY_OUTCOME = {"reopen": "reopen it", "reject": "reject the follow-up", "new_ticket": "open a new ticket"}


def _is_machine_mail(mail: ParsedMail) -> bool:
    return mail.flags.auto_submitted or mail.flags.bounce or mail.flags.loop


# --------------------------------------------------------------------------- spam, priority


def header_spam_score(mail: ParsedMail, required: float = 5.0) -> float | None:
    """A spam probability from an upstream filter's headers, or None if they say nothing.

    X-Spam-Flag: YES or X-Spam-Status: Yes mean 1.0; a numeric score (X-Spam-Score, the
    ``score=``/``hits=`` of X-Spam-Status, or the stars of X-Spam-Level) maps through a logistic
    centred on ``required``. Only raising signals count: a forged "No" lowers nothing.
    """
    headers = mail.headers
    flag, status = headers.get("x-spam-flag", ""), headers.get("x-spam-status", "")
    if flag.strip().upper().startswith("YES") or status.strip().upper().startswith("YES"):
        return 1.0
    score = _spam_header_number(headers)
    if score is None:
        return None
    return 1.0 / (1.0 + math.exp(-(score - required)))


def header_spam_verdict(mail: ParsedMail, required: float = 5.0) -> tuple[bool, str] | None:
    """The upstream filter's verdict (spam or not, and why), or None if its headers say nothing.

    Spam when X-Spam-Flag or X-Spam-Status say YES, or when the numeric score reaches ``required``
    or the ``required=`` the header itself states, whichever is higher (a filter tuned to 8.0 that
    says "No" at 5.5 is believed). Separate from the classifier's threshold on purpose.
    """
    headers = mail.headers
    flag, status = headers.get("x-spam-flag", ""), headers.get("x-spam-status", "")
    if flag.strip().upper().startswith("YES"):
        return True, "X-Spam-Flag: YES"
    if status.strip().upper().startswith("YES"):
        return True, "X-Spam-Status: Yes"
    score = _spam_header_number(headers)
    if score is None:
        return None
    stated = re.search(r"required=(-?\d+(?:\.\d+)?)", status)
    bar = max(required, float(stated.group(1))) if stated else required
    return score >= bar, f"spam header score {score:g} {'≥' if score >= bar else '<'} {bar:g}"


def _spam_header_number(headers: dict[str, str]) -> float | None:
    status_score = re.search(r"(?:score|hits)=(-?\d+(?:\.\d+)?)", headers.get("x-spam-status", ""))
    for raw in (headers.get("x-spam-score"), status_score.group(1) if status_score else None):
        if raw is None:
            continue
        try:
            return float(raw)
        except ValueError:
            continue
    level = headers.get("x-spam-level", "").strip()
    return float(len(level)) if level and set(level) == {"*"} else None


_X_PRIORITY = {1: 5, 2: 4, 3: 3, 4: 2, 5: 1}
_WORD_PRIORITY = {"high": 4, "urgent": 4, "low": 2, "non-urgent": 2, "normal": 3}


def priority_from_headers(mail: ParsedMail) -> tuple[int, str] | None:
    """(priority 1-5 with 5 highest, as OTRS, from which header) or None.

    X-Priority counts the other way round (1 = highest), so 1 → 5 and 5 → 1. Importance and
    Priority (RFC 2156) words map high/urgent → 4, low/non-urgent → 2.
    """
    x_priority = re.match(r"\s*([1-5])", mail.headers.get("x-priority", ""))
    if x_priority:
        return _X_PRIORITY[int(x_priority.group(1))], f"X-Priority {x_priority.group(1)}"
    for header in ("importance", "priority"):
        word = mail.headers.get(header, "").strip().lower()
        if word in _WORD_PRIORITY:
            return _WORD_PRIORITY[word], f"{header.capitalize()}: {word}"
    return None


# --------------------------------------------------------------------------- queue


@dataclass(frozen=True)
class QueueDecision:
    queue: str
    spam: bool = False
    spam_score: float = 0.0
    reasons: tuple[RoutingReason, ...] = ()


@dataclass(frozen=True)
class SpamCheck:
    """Header verdict and classifier probability, each against its own threshold."""

    spam: bool
    score: float  # the higher of the two probabilities, for display and metrics
    reasons: tuple[RoutingReason, ...] = ()


NO_FILTER_OUTCOME = FilterOutcome()


def match_system_address(
    mail: ParsedMail, envelope_to: Sequence[str], config: RouterConfig
) -> tuple[SystemAddress, str] | None:
    """The first system address among the recipients, with the place it was found.

    Envelope recipients come first (they include Bcc and are what the MTA delivered to), then
    Delivered-To / X-Original-To, then To, then Cc.
    """
    for where, address in _recipients(mail, envelope_to):
        found = config.system_address(address)
        if found is not None:
            return found, where
    return None


def _recipients(mail: ParsedMail, envelope_to: Sequence[str]) -> Iterable[tuple[str, str]]:
    yield from (("envelope", a) for a in envelope_to)
    for header in ("delivered-to", "x-original-to"):
        if mail.headers.get(header):
            yield header, mail.headers[header].strip().strip("<>")
    yield from (("To", a.email) for a in mail.to)
    yield from (("Cc", a.email) for a in mail.cc)


def decide_queue(
    mail: ParsedMail,
    envelope_to: Sequence[str],
    config: RouterConfig,
    classifier: Classifier | None,
    filtered: FilterOutcome = NO_FILTER_OUTCOME,
    tokens: Sequence[str] | None = None,
) -> QueueDecision:
    """The queue of a new ticket; see the module docstring for the order.

    ``tokens`` are the mail's classifier tokens if the caller already has them.
    """
    if filtered.spam:
        junk = _reason("spam", f"marked as spam by a filter → {config.junk_queue}")
        return QueueDecision(config.junk_queue, True, 1.0, (junk,))
    prediction = _predict(mail, classifier, tokens)
    check = spam_check(mail, config, prediction)
    if filtered.queue:
        chosen = _reason("filter", f"queue {filtered.queue} set by a filter")
        return QueueDecision(filtered.queue, False, check.score, (*check.reasons, chosen))
    if check.spam:
        detail = f"spam → {config.junk_queue}"
        return QueueDecision(config.junk_queue, True, check.score, (*check.reasons, _reason("spam", detail)))
    return _non_spam_queue(mail, envelope_to, config, prediction, check.score, check.reasons)


def _non_spam_queue(
    mail: ParsedMail,
    envelope_to: Sequence[str],
    config: RouterConfig,
    prediction: Prediction | None,
    spam_score: float,
    reasons: tuple[RoutingReason, ...],
) -> QueueDecision:
    address = match_system_address(mail, envelope_to, config)
    if address is not None:
        system, where = address
        queue = system.queue_for(mail.language)
        language = f" (language {mail.language})" if queue != system.queue else ""
        detail = f"sent to {system.email} ({where}) → {queue}{language}"
        return QueueDecision(queue, False, spam_score, (*reasons, _reason("system_address", detail)))
    if prediction is not None:
        threshold = config.classifier_threshold
        usable = prediction.label != config.junk_queue and prediction.probability >= threshold
        verdict = "" if usable else f" (below {threshold:.2f} or Junk; not used)"
        detail = f"classifier: {prediction.explain()}{verdict}"
        reasons = (*reasons, _reason("classifier", detail))
        if usable:
            return QueueDecision(prediction.label, False, spam_score, reasons)
    default = _reason("default", f"default queue {config.default_queue}")
    return QueueDecision(config.default_queue, False, spam_score, (*reasons, default))


def _predict(mail: ParsedMail, classifier: Classifier | None, tokens: Sequence[str] | None) -> Prediction | None:
    if classifier is None:
        return None
    return classifier.predict(tokens if tokens is not None else tokenize_mail(mail, classifier.max_tokens))


def spam_check(mail: ParsedMail, config: RouterConfig, prediction: Prediction | None) -> SpamCheck:
    """Spam if the upstream filter's headers say so (their own thresholds) or if the classifier's
    P(Junk) reaches ``config.spam_threshold``; the score shown is the higher probability."""
    reasons = []
    scores = [0.0]
    spam = False
    verdict = header_spam_verdict(mail, config.spam_header_required) if config.trust_spam_headers else None
    if verdict is not None:
        header_p = header_spam_score(mail, config.spam_header_required) or 0.0
        scores.append(header_p)
        spam = verdict[0]
        reasons.append(_reason("spam", f"spam headers: {verdict[1]} (p={header_p:.2f})"))
    if prediction is not None and config.junk_queue in prediction.probabilities:
        p = prediction.probabilities[config.junk_queue]
        scores.append(p)
        over = p >= config.spam_threshold
        spam = spam or over
        versus = f"{'≥' if over else '<'} {config.spam_threshold:g}"
        detail = f"classifier spam p={p:.3f} {versus} (model v{prediction.model_version})"
        reasons.append(_reason("spam", detail))
    return SpamCheck(spam, max(scores), tuple(reasons))


# --------------------------------------------------------------------------- route


def route(
    mail: ParsedMail,
    mail_id: str,
    envelope_to: list[str],
    config: RouterConfig,
    index: TicketIndex,
    classifier: Classifier | None = None,
    tokens: Sequence[str] | None = None,
    delivery_status: str | None = None,
) -> TicketRouted:
    """The router's decision for one mail, with every reason (``tokens``: see :func:`decide_queue`).

    A new ticket's decision carries the version of the classifier it consulted (``model_version``),
    so an auditor can tell which model chose the queue; follow-ups do not consult it. A bounce
    carries ``bounce`` (the returned mail's Message-ID, Status, Diagnostic-Code; see
    :mod:`services.router.bounce`; ``delivery_status`` is the DSN part's text if the caller has it).
    """
    filtered = apply_filters(mail, config.filters)
    bounce = bounce_info(mail, delivery_status)
    base: dict[str, Any] = {"mail_id": mail_id, "envelope_to": list(envelope_to), "mail": mail, "bounce": bounce}
    if filtered.ignore:
        reasons = (*filtered.reasons, _reason("ignore", "a filter said ignore: stored, no ticket"))
        return TicketRouted(action="ignore", queue=config.default_queue, reasons=list(reasons), **base)
    priority, priority_reasons = _priority(mail, config, filtered)
    follow_up = decide_follow_up(mail, config, index)
    if follow_up.ticket is not None:
        return _routed_follow_up(mail, config, filtered, follow_up, priority, priority_reasons, base)
    decision = decide_queue(mail, envelope_to, config, classifier, filtered, tokens)
    title = filtered.title or clean_subject(mail.subject, config.hook) or NO_SUBJECT
    reasons = (*filtered.reasons, *follow_up.reasons, *decision.reasons, *priority_reasons)
    return TicketRouted(
        action="new",
        queue=decision.queue,
        priority=priority,
        title=title,
        spam=decision.spam,
        spam_score=decision.spam_score,
        reasons=list(reasons),
        model_version=classifier.version if classifier is not None else None,
        **base,
    )


def _routed_follow_up(
    mail: ParsedMail,
    config: RouterConfig,
    filtered: FilterOutcome,
    follow_up: FollowUp,
    priority: int,
    priority_reasons: tuple[RoutingReason, ...],
    base: dict[str, Any],
) -> TicketRouted:
    """A follow-up stays in its ticket's queue; spam signals flag it and stop a reopen."""
    ticket = follow_up.ticket
    assert ticket is not None
    verdict = header_spam_verdict(mail, config.spam_header_required) if config.trust_spam_headers else None
    header = header_spam_score(mail, config.spam_header_required) if verdict is not None else None
    spam = filtered.spam or (verdict is not None and verdict[0])
    spam_score = 1.0 if filtered.spam else (header or 0.0)
    reasons = [*filtered.reasons, *follow_up.reasons, *priority_reasons]
    if filtered.queue or filtered.title:
        detail = f"follow-up stays in queue {ticket.queue}; the filter's queue/title not applied"
        reasons.append(_reason("follow_up", detail))
    if spam:
        reasons.append(_reason("spam", f"spam score {spam_score:.2f}: flagged, not reopened"))
    return TicketRouted(
        action=follow_up.action,
        queue=ticket.queue,
        priority=priority,
        ticket_number=ticket.number,
        reopen=follow_up.reopen and not spam,
        spam=spam,
        spam_score=spam_score,
        sender_not_on_ticket=follow_up.sender_not_on_ticket,
        reasons=reasons,
        **base,
    )


def _priority(mail: ParsedMail, config: RouterConfig, filtered: FilterOutcome) -> tuple[int, tuple[RoutingReason, ...]]:
    if filtered.priority is not None:
        return filtered.priority, (_reason("priority", f"priority {filtered.priority} set by a filter"),)
    from_headers = priority_from_headers(mail)
    if from_headers is not None:
        value, source = from_headers
        return value, (_reason("priority", f"priority {value} from {source}"),)
    return config.default_priority, ()


def _reason(step: str, detail: str) -> RoutingReason:
    return RoutingReason(step=step, detail=detail)


# --------------------------------------------------------------------------- for the service
#
# Pure helpers the service needs around :func:`route`: which index entries a mail needs (so the
# service loads just those), a snapshot index over them, the Kafka key, and how a label moves.


@dataclass(frozen=True)
class LookupKeys:
    """The ticket numbers and message-ids :func:`decide_follow_up` may ask the index about."""

    numbers: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.numbers or self.message_ids)


def lookup_keys(mail: ParsedMail, config: RouterConfig) -> LookupKeys:
    """Everything the follow-up decision could look up for ``mail``, so it can be loaded at once.

    Invalid and foreign numbers are left out: the decision never looks them up. Merge targets
    are not known before the tickets are loaded; the service follows them afterwards.
    """
    texts = [mail.subject]
    if config.follow_up_by_body:
        texts.append(mail.body_text[:MAX_BODY_SEARCH_CHARS])
    numbers = [n for text in texts for n in find_ticket_numbers(text, config.hook)]
    msgids = [msgid for _, msgid in _thread_message_ids(mail)]
    return LookupKeys(tuple(dict.fromkeys(numbers)), tuple(msgids))


class SnapshotIndex:
    """A :class:`TicketIndex` over tickets loaded for one mail (message-id → ticket number)."""

    def __init__(self, tickets: Iterable[TicketInfo] = (), message_ids: dict[str, str] | None = None) -> None:
        self.by_number = {t.number: t for t in tickets}
        self.message_ids = dict(message_ids or {})

    def ticket_by_number(self, number: str) -> TicketInfo | None:
        return self.by_number.get(number)

    def ticket_by_message_id(self, message_id: str) -> TicketInfo | None:
        number = self.message_ids.get(normalize_message_id(message_id))
        return self.by_number.get(number) if number else None

    def missing_merge_targets(self) -> set[str]:
        """Numbers that loaded tickets were merged into but that are not loaded yet."""
        targets = {t.merged_into_number for t in self.by_number.values() if t.merged_into_number}
        return targets - set(self.by_number)


def thread_key(routed: TicketRouted, index: TicketIndex) -> str:
    """The Kafka key of a decision: the ticket's id for a follow-up (so the ticket's events stay
    in order on one partition), the mail's id before a ticket exists."""
    if routed.ticket_number is not None:
        ticket = index.ticket_by_number(routed.ticket_number)
        if ticket is not None:
            return ticket.ticket_id
    return routed.mail_id


_QUEUE_STEPS = ("filter", "spam", "system_address", "classifier", "default")


def deciding_step(routed: TicketRouted) -> str:
    """The step that settled a decision, for metrics: ``follow_up``, ``ignore``, or for a new
    ticket the last queue-choosing step among its reasons (filter, spam, system_address, ...)."""
    if routed.action in ("follow_up", "reject"):
        return "follow_up"
    if routed.action == "ignore":
        return "ignore"
    steps = [r.step for r in routed.reasons if r.step in _QUEUE_STEPS]
    return steps[-1] if steps else "default"


def relabel_plan(trained_as: str | None, label: str) -> tuple[str | None, str | None]:
    """(label to untrain, label to train) when agents say a mail belongs to ``label``.

    A mail is counted under at most one label: the one it was last trained as. Saying the
    same thing twice changes nothing.
    """
    if trained_as == label:
        return None, None
    return trained_as, label


def addresses_in(values: Iterable[str | None]) -> set[str]:
    """Lower-cased addresses in header-like values (``"Name" <a@x>, b@y``)."""
    return {addr.strip().lower() for _, addr in getaddresses([v for v in values if v]) if "@" in addr}


_ADDRESS_RE = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[^@\s<>(),;:\"\[\]]+$")


def normalize_address(email: str) -> str | None:
    """A system address as stored (trimmed, lower-cased), or None if it is not an address."""
    candidate = email.strip().lower()
    return candidate if _ADDRESS_RE.match(candidate) else None
