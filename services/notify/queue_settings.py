"""Per-queue mail settings: the system address a queue writes from and its admin-edited templates.

Stored by notify (phase 2) as JSON of :class:`QueueMailSettings`; :func:`default_queue_settings`
gives OTRS-like defaults for the demo queues of ARCHITECTURE.md. Templates are Jinja2 run in a
sandbox (``services.notify.templates``) with the variables of
:data:`services.notify.templates.TEMPLATE_VARIABLES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from email.headerregistry import Address
from typing import get_args

from pydantic import BaseModel, ConfigDict, field_validator

from services.notify.mime import parse_address
from services.notify.templates import MailTemplateError, validate_template
from shared.events import AutoReplyKind, QueueConfigured

DEFAULT_DOMAIN = "firstline.example"

AUTO_REPLY_KINDS: tuple[AutoReplyKind, ...] = get_args(AutoReplyKind)


class SystemAddress(BaseModel):
    """An address mail is sent from (and received at), with its display name."""

    model_config = ConfigDict(frozen=True)
    email: str
    display_name: str = ""

    @field_validator("email")
    @classmethod
    def _one_address(cls, value: str) -> str:
        local, at, domain = value.strip().rpartition("@")
        if not at or not local or "." not in domain or any(ch.isspace() for ch in value.strip()):
            raise ValueError(f"not an email address: {value!r}")
        return value.strip().lower()

    def header(self) -> Address:
        return parse_address(self.email, display_name=self.display_name)


class MailTemplate(BaseModel):
    """Subject and body templates of one auto response (Jinja2, sandboxed)."""

    model_config = ConfigDict(frozen=True)
    subject: str
    body: str
    enabled: bool = True


class AutoResponses(BaseModel):
    """A queue's auto responses, one per :data:`AutoReplyKind`."""

    model_config = ConfigDict(frozen=True)
    new_ticket: MailTemplate
    follow_up_closed_reject: MailTemplate
    follow_up_closed_new: MailTemplate

    def for_kind(self, kind: AutoReplyKind) -> MailTemplate:
        return getattr(self, kind)


class QueueMailSettings(BaseModel):
    """How a queue writes mail: who it is, how it greets and signs, what it auto-replies."""

    model_config = ConfigDict(frozen=True)
    queue: str
    system_address: SystemAddress
    salutation: str
    signature: str
    auto_responses: AutoResponses

    def auto_reply_enabled(self, kind: AutoReplyKind) -> bool:
        return self.auto_responses.for_kind(kind).enabled


_SALUTATION_EN = "{% if customer_name %}Dear {{ customer_name }},{% else %}Dear Sir or Madam,{% endif %}"
_SIGNATURE_EN = "Kind regards,\n{{ agent_name }}\n\n-- \n{{ system_name }}\n{{ system_email }}"
_SALUTATION_DE = "{% if customer_name %}Hallo {{ customer_name }},{% else %}Guten Tag,{% endif %}"
_SIGNATURE_DE = "Viele Grüße\n{{ agent_name }}\n\n-- \n{{ system_name }}\n{{ system_email }}"
_NO_REPLY_EN = "This is an automatically generated message; there is no need to reply to it."
_NO_REPLY_DE = "Dies ist eine automatisch erzeugte Nachricht; Sie brauchen nicht darauf zu antworten."

_AUTO_FOOTER = "-- \n{{ system_name }}\n{{ system_email }}"


def _auto(greeting: str, text: str, no_reply: str) -> MailTemplate:
    return MailTemplate(subject="Re: {{ title }}", body=f"{greeting}\n\n{text}\n\n{no_reply}\n\n{_AUTO_FOOTER}")


_AUTO_EN: Mapping[str, MailTemplate] = {
    "new_ticket": _auto(
        _SALUTATION_EN,
        "thank you for your message. It has been received as ticket {{ ticket_number }}, and we will "
        "get back to you as soon as possible.\n\nPlease keep [Ticket#{{ ticket_number }}] in the "
        "subject if you write to us about it again.",
        _NO_REPLY_EN,
    ),
    "follow_up_closed_reject": _auto(
        _SALUTATION_EN,
        "your message refers to ticket {{ ticket_number }}, which is closed, so it has not been "
        "processed. Please write a new mail without the ticket number in the subject if you still "
        "need our help.",
        _NO_REPLY_EN,
    ),
    "follow_up_closed_new": _auto(
        _SALUTATION_EN,
        "your message refers to a closed ticket, so we have opened a new one for it: ticket "
        "{{ ticket_number }}. We will get back to you as soon as possible.",
        _NO_REPLY_EN,
    ),
}

_AUTO_DE: Mapping[str, MailTemplate] = {
    "new_ticket": _auto(
        _SALUTATION_DE,
        "vielen Dank für Ihre Nachricht. Sie ist als Ticket {{ ticket_number }} eingegangen, und wir "
        "melden uns so bald wie möglich.\n\nBitte lassen Sie [Ticket#{{ ticket_number }}] im "
        "Betreff, wenn Sie uns dazu erneut schreiben.",
        _NO_REPLY_DE,
    ),
    "follow_up_closed_reject": _auto(
        _SALUTATION_DE,
        "Ihre Nachricht bezieht sich auf das geschlossene Ticket {{ ticket_number }} und wurde daher "
        "nicht bearbeitet. Bitte schreiben Sie uns eine neue Mail ohne Ticketnummer im Betreff.",
        _NO_REPLY_DE,
    ),
    "follow_up_closed_new": _auto(
        _SALUTATION_DE,
        "Ihre Nachricht bezieht sich auf ein geschlossenes Ticket; wir haben dafür das neue Ticket "
        "{{ ticket_number }} angelegt und melden uns so bald wie möglich.",
        _NO_REPLY_DE,
    ),
}

# queue -> (local part, display name, German?) as in ARCHITECTURE.md's demo data
_DEMO_QUEUES: Mapping[str, tuple[str, str, bool]] = {
    "Info-en": ("info", "Firstline Info", False),
    "Info-de": ("info-de", "Firstline Info (Deutsch)", True),
    "Permissions": ("permissions", "Firstline Permissions", False),
    "Press": ("press", "Firstline Press", False),
    "Raw": ("info", "Firstline", False),
    "Junk": ("info", "Firstline", False),
}
_NO_AUTO_REPLY_QUEUES = frozenset({"Junk"})


def default_queue_settings(queue: str, *, domain: str = DEFAULT_DOMAIN) -> QueueMailSettings:
    """OTRS-like defaults: the demo system addresses, greeting and signature, auto responses on
    (off for Junk: never answer spam); German texts for Info-de; unknown queues send from info@."""
    local, display_name, german = _DEMO_QUEUES.get(queue, ("info", "Firstline", False))
    enabled = queue not in _NO_AUTO_REPLY_QUEUES
    texts = _AUTO_DE if german else _AUTO_EN
    responses = {kind: t.model_copy(update={"enabled": enabled}) for kind, t in texts.items()}
    return QueueMailSettings(
        queue=queue,
        system_address=SystemAddress(email=f"{local}@{domain}", display_name=display_name),
        salutation=_SALUTATION_DE if german else _SALUTATION_EN,
        signature=_SIGNATURE_DE if german else _SIGNATURE_EN,
        auto_responses=AutoResponses(**responses),
    )


def validate_settings(settings: QueueMailSettings) -> list[MailTemplateError]:
    """Every template problem in a queue's settings (empty when all parse and name known variables)."""
    sources = {"salutation": settings.salutation, "signature": settings.signature}
    for kind in AUTO_REPLY_KINDS:
        template = settings.auto_responses.for_kind(kind)
        sources[f"{kind}.subject"] = template.subject
        sources[f"{kind}.body"] = template.body
    problems: list[MailTemplateError] = []
    for name, source in sources.items():
        try:
            validate_template(source, name=name)
        except MailTemplateError as exc:
            problems.append(exc)
    return problems


def settings_from_event(event: QueueConfigured, *, domain: str = DEFAULT_DOMAIN) -> QueueMailSettings:
    """Notify's copy of a queue's mail settings from the ``QueueConfigured`` tickets published.

    An auto response the event does not name keeps the default text and the default switch
    (on, off for Junk), so a queue set up without auto responses behaves like a fresh OTRS
    queue. Raises ``pydantic.ValidationError`` for a system address that is not an address.
    """
    defaults = default_queue_settings(event.name, domain=domain)
    responses = {
        kind: _template_from_event(event, kind, defaults.auto_responses.for_kind(kind)) for kind in AUTO_REPLY_KINDS
    }
    return QueueMailSettings(
        queue=event.name,
        system_address=SystemAddress(email=event.system_address, display_name=event.display_name),
        salutation=event.salutation,
        signature=event.signature,
        auto_responses=AutoResponses(**responses),
    )


def _template_from_event(event: QueueConfigured, kind: AutoReplyKind, default: MailTemplate) -> MailTemplate:
    configured = event.auto_responses.get(kind)
    if configured is None:
        return default
    return MailTemplate(subject=configured.subject, body=configured.body, enabled=configured.enabled)
