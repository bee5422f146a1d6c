"""Notify's pure domain: what a customer receives, and whether an auto response may go out.

* :func:`compose_answer` (``AnswerSent``) and :func:`compose_auto_reply` (``AutoReplyRequested``)
  turn events into RFC 5322 messages from the queue's system address
  (:class:`~services.notify.queue_settings.QueueMailSettings`); :func:`render_message_bytes`
  gives the wire form. Agent notices are in ``services.notify.notices``; retries and the
  outbound log's state machine in ``services.notify.delivery``.
* :func:`auto_reply_decision`: the loop and flood protection of RFC 3834 and OTRS.

Nothing here does I/O; the clock is read only when no date is passed. Templates are rendered at
send time with :func:`services.notify.templates.render_or_raw`: a broken template sends its raw
text (and reports the problem through ``on_template_error``) rather than dropping a customer's mail.
Composing is deterministic: the same event, settings and date give the same bytes, so a resend
after a crash is byte-identical to the first attempt.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage

from services.notify.mime import (
    ComposeError,
    OutgoingAttachment,
    add_attachments,
    address_email,
    address_name,
    base_message,
    finalise,
    join_blocks,
    make_msgid,
    mark_automatic,
    msgid_in_domain,
    one_line,
    parse_address,
    parse_addresses,
    render_message_bytes,
    set_bodies,
    set_threading,
)
from services.notify.queue_settings import (
    DEFAULT_DOMAIN,
    QueueMailSettings,
    SystemAddress,
    default_queue_settings,
)
from services.notify.templates import MailTemplateError, render_or_raw
from shared.events import LOOP_HEADER, AnswerSent, AutoReplyRequested

__all__ = [
    "DEFAULT_DOMAIN",
    "ComposeError",
    "OutgoingAttachment",
    "QueueMailSettings",
    "SystemAddress",
    "answer_subject",
    "answer_text",
    "auto_reply_decision",
    "auto_reply_message_id",
    "clean_subject",
    "compose_answer",
    "compose_auto_reply",
    "default_queue_settings",
    "hooked_subject",
    "limit_window",
    "outbound_message_id",
    "render_message_bytes",
    "sender_key",
]

TICKET_HOOK = "Ticket#"
TICKET_HEADER = "X-Firstline-Ticket"
ARTICLE_HEADER = "X-Firstline-Article"
DEFAULT_DAILY_LIMIT = 10

TemplateErrorHandler = Callable[[MailTemplateError], None]
"""Told about a template that failed at send time (the mail went out with its raw text)."""


# --------------------------------------------------------------------------- subjects and ids

_HOOK_RE = re.compile(r"\[\s*" + re.escape(TICKET_HOOK) + r"\s*:?\s*\d+\s*\]", re.IGNORECASE)
_PREFIX_RE = re.compile(r"^(?:\s*(?:re|aw|antw|sv|wg|fw|fwd)\s*(?:\[\d+\]|\(\d+\))?\s*:)+", re.IGNORECASE)


def clean_subject(subject: str) -> str:
    """The subject without ticket hooks and reply/forward prefixes (``Re:``, ``AW:``, ``Fwd:``…)."""
    text = one_line(_HOOK_RE.sub(" ", subject))
    while True:
        stripped = one_line(_HOOK_RE.sub(" ", _PREFIX_RE.sub("", text)))
        if stripped == text:
            return text
        text = stripped


def hooked_subject(ticket_number: str, subject: str) -> str:
    """``[Ticket#N] subject``, any hook already in ``subject`` removed, so never doubled."""
    rest = one_line(_HOOK_RE.sub(" ", subject))
    hook = f"[{TICKET_HOOK}{ticket_number}]"
    return f"{hook} {rest}" if rest else hook


def answer_subject(ticket_number: str, subject: str) -> str:
    """``[Ticket#N] Re: title``: one hook, one ``Re:``, however many the subject had."""
    title = clean_subject(subject)
    return hooked_subject(ticket_number, f"Re: {title}" if title else "")


def outbound_message_id(key: str, purpose: str, domain: str) -> str:
    """A stable Message-ID for one outbound mail, e.g. ``<{event_id}.notice.{agent}@domain>``.

    Stable, so that a resend after a crash carries the same id and receivers can deduplicate.
    """
    return make_msgid(f"{key}.{purpose}", domain)


def auto_reply_message_id(event: AutoReplyRequested, domain: str) -> str:
    """Derived from what identifies an auto response: ticket, kind, recipient, the mail answered."""
    seed = "\x1f".join([event.ticket_id, event.kind, event.to.lower(), event.in_reply_to or ""])
    return outbound_message_id(hashlib.sha256(seed.encode()).hexdigest()[:32], "auto-reply", domain)


# --------------------------------------------------------------------------- composing


def _variables(
    settings: QueueMailSettings,
    *,
    customer: str,
    customer_name: str | None,
    ticket_number: str,
    subject: str,
    title: str | None,
    agent_name: str = "",
    body: str = "",
) -> dict[str, str]:
    """The values of :data:`services.notify.templates.TEMPLATE_VARIABLES`."""
    return {
        "customer_name": one_line(customer_name or "") or address_name(customer),
        "customer_email": address_email(customer),
        "ticket_number": ticket_number,
        "title": title if title is not None else clean_subject(subject),
        "subject": subject,
        "queue": settings.queue,
        "agent_name": agent_name,
        "body": body,
        "system_name": settings.system_address.display_name,
        "system_email": settings.system_address.email,
    }


def _render(source: str, variables: Mapping[str, str], name: str, on_error: TemplateErrorHandler | None) -> str:
    rendered = render_or_raw(source, variables, name=name)
    if rendered.error is not None and on_error is not None:
        on_error(rendered.error)
    return rendered.text


def answer_text(
    event: AnswerSent,
    settings: QueueMailSettings,
    *,
    agent_name: str,
    title: str | None = None,
    on_template_error: TemplateErrorHandler | None = None,
) -> str:
    """Salutation, the agent's text, signature: the plain-text body of an answer.

    The agent's text is a value, never a template: ``{{`` in it is sent as typed.
    """
    variables = _variables(
        settings,
        customer=event.to[0] if event.to else "",
        customer_name=event.customer_name,
        ticket_number=event.ticket_number,
        subject=event.subject,
        title=title,
        agent_name=agent_name,
        body=event.body,
    )
    salutation = _render(settings.salutation, variables, "salutation", on_template_error)
    signature = _render(settings.signature, variables, "signature", on_template_error)
    return join_blocks(salutation, event.body, signature)


def _named_recipients(to: list[str], customer_name: str | None) -> list[Address]:
    """The To addresses; the first (the customer) gets ``customer_name`` if it has no name."""
    addresses = parse_addresses(to)
    if addresses and customer_name and not addresses[0].display_name:
        first = addresses[0]
        addresses[0] = Address(one_line(customer_name), first.username, first.domain)
    return addresses


def compose_answer(
    event: AnswerSent,
    settings: QueueMailSettings,
    *,
    agent_name: str,
    domain: str,
    attachments: Iterable[OutgoingAttachment | tuple[str, str, bytes]] = (),
    date: datetime | None = None,
    title: str | None = None,
    on_template_error: TemplateErrorHandler | None = None,
) -> EmailMessage:
    """An agent's answer as a mail from the queue's system address.

    ``date`` should be the envelope's ``occurred_at`` (when the agent sent it, RFC 5322 3.6.1).
    Like every mail Firstline sends it carries :data:`~shared.events.LOOP_HEADER` (so a copy
    that comes back to a system address is recognised), but not the RFC 3834 headers.
    ``domain`` completes ``event.message_id`` if it has no ``@``. ``title`` is the ticket title
    for the templates; without it the cleaned subject stands in. A human answer carries no
    ``Auto-Submitted`` header (RFC 3834 5: only automatic mail does). Raises
    :class:`ComposeError` for a recipient that is not an address.
    """
    text = answer_text(event, settings, agent_name=agent_name, title=title, on_template_error=on_template_error)
    msg = base_message(
        settings.system_address.header(),
        _named_recipients(event.to, event.customer_name),
        answer_subject(event.ticket_number, event.subject),
        msgid_in_domain(event.message_id, domain),
        date,
    )
    cc = parse_addresses(event.cc)
    if cc:
        msg["Cc"] = cc
    set_threading(msg, event.references, event.in_reply_to)
    msg[TICKET_HEADER] = event.ticket_number
    msg[ARTICLE_HEADER] = event.article_id
    msg[LOOP_HEADER] = domain
    set_bodies(msg, text)
    add_attachments(msg, attachments)
    return finalise(msg)


def compose_auto_reply(
    event: AutoReplyRequested,
    settings: QueueMailSettings,
    *,
    domain: str,
    message_id: str | None = None,
    date: datetime | None = None,
    customer_name: str | None = None,
    on_template_error: TemplateErrorHandler | None = None,
) -> EmailMessage:
    """The queue's auto response of ``event.kind``, marked ``Auto-Submitted: auto-replied``.

    Call :func:`auto_reply_decision` first; this composes whatever it is asked to.
    ``message_id`` defaults to the event's, else :func:`auto_reply_message_id` (stable for the
    same request); ``customer_name`` to the event's.
    """
    template = settings.auto_responses.for_kind(event.kind)
    variables = _variables(
        settings,
        customer=event.to,
        customer_name=customer_name or event.customer_name,
        ticket_number=event.ticket_number,
        subject=event.subject,
        title=event.title,
    )
    subject = _render(template.subject, variables, f"{event.kind}.subject", on_template_error)
    body = _render(template.body, variables, f"{event.kind}.body", on_template_error)
    msg = base_message(
        settings.system_address.header(),
        [parse_address(event.to)],
        hooked_subject(event.ticket_number, subject),
        msgid_in_domain(message_id or event.message_id or auto_reply_message_id(event, domain), domain),
        date,
    )
    set_threading(msg, event.references, event.in_reply_to)
    msg[TICKET_HEADER] = event.ticket_number
    mark_automatic(msg, auto_submitted="auto-replied", loop_address=settings.system_address.email, domain=domain)
    set_bodies(msg, join_blocks(body))
    return finalise(msg)


# --------------------------------------------------------------------------- auto-reply decision

_FLAG_REASONS: Mapping[str, str] = {
    "auto_submitted": "sender flagged auto-submitted",
    "bounce": "mail is a bounce",
    "mailing_list": "mail came from a mailing list",
    "loop": "mail loop detected",
}
# RFC 5230 4.6 (Sieve vacation) plus the usual "no reply" and bounce-handler addresses.
_AUTOMATED_LOCAL = re.compile(
    r"^(?:mailer-daemon|postmaster|listserv|majordomo|owner-.+|.+-owner|.+-request|.+-bounces?"
    r"|bounces?(?:[-+.].*)?|no-?reply(?:[-+.].*)?|.+[-.]no-?reply|do-?not-?reply(?:[-+.].*)?)$",
    re.IGNORECASE,
)


def _canonical(address: str) -> str:
    """Lower-cased, sub-address (``+tag``) removed: ``Info+x@Firstline.example`` is info@."""
    local, _, domain = address.strip().lower().rpartition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def sender_key(address: str) -> str:
    """Who counts as the same sender for the daily limit: ``Jane <Jane+x@Example.org>`` is
    ``jane@example.org``."""
    return _canonical(address_email(address) or address)


def _sender_problem(sender: str, own_addresses: Iterable[str]) -> str | None:
    if not sender:
        return "no sender address (null reverse-path)"
    local, at, domain = sender.rpartition("@")
    if not at or not local or not domain:
        return f"invalid sender address {sender!r}"
    if _canonical(sender) in {_canonical(own) for own in own_addresses}:
        return f"sender {sender} is one of our own addresses"
    if _AUTOMATED_LOCAL.match(local):
        return f"sender {sender} is an automated address"
    return None


def limit_window(requested_at: datetime) -> tuple[datetime, datetime]:
    """The day the daily limit counts in: the UTC calendar day of the request.

    The request's own time, not the clock's, so that replaying the log decides the same.
    """
    start = requested_at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


def auto_reply_decision(
    event: AutoReplyRequested,
    *,
    own_addresses: set[str],
    sent_today_to_sender: int,
    daily_limit: int = DEFAULT_DAILY_LIMIT,
    enabled: bool,
) -> tuple[bool, str]:
    """May this auto response go out? ``(send, reason)``, the reason of the first rule that applies.

    Never to mail flagged auto-submitted, bounce, mailing list or loop (RFC 3834 2), never to a
    null, automated or own sender, never more than ``daily_limit`` per sender per day
    (``sent_today_to_sender`` counts those already sent), and not when the queue disabled it.
    """
    for flag, reason in _FLAG_REASONS.items():
        if getattr(event.flags, flag):
            return False, reason
    sender = address_email(event.to)
    problem = _sender_problem(sender, own_addresses)
    if problem is not None:
        return False, problem
    if not enabled:
        return False, f"auto response {event.kind} is disabled for queue {event.queue}"
    if sent_today_to_sender >= daily_limit:
        return False, f"daily limit {daily_limit} reached for {sender}"
    count = f"{sent_today_to_sender + 1} of {daily_limit} today for {sender}"
    return True, f"auto response {event.kind} allowed ({count})"
