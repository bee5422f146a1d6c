"""Accepting one mail: size checks, the raw store, parsing, and MailReceived through the outbox.

All three doors (SMTP, mailbox polling, HTTP) call :func:`accept_mail`. It answers only after
the raw bytes and the outbox row are committed in one transaction, so an acknowledged mail is
never lost; the same bytes twice are stored and announced once.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from services.ingest.domain import parse_mail
from services.ingest.settings import IngestSettings
from services.ingest.store import mail_id_by_sha256, store_mail
from services.ingest.trust import apply_trust
from shared.envelope import GENESIS_HASH, Envelope, make_envelope, new_id, seal
from shared.events import TOPIC_MAIL_RECEIVED, MailReceived, ParsedMail
from shared.logs import correlation_id
from shared.metrics import EVENTS_APPENDED

MAILS_ACCEPTED = Counter("firstline_mails_accepted_total", "Mails accepted and stored", ["source"])
MAILS_DUPLICATE = Counter("firstline_mails_duplicate_total", "Mails whose bytes were already stored", ["source"])
MAILS_REFUSED = Counter("firstline_mails_refused_total", "Mails refused at a door", ["source", "reason"])


class MailRefused(Exception):
    """A mail that is not accepted; ``code`` says why in a word, the message in a sentence."""

    code = "refused"


class EmptyMail(MailRefused):
    code = "empty_mail"


class MailTooLarge(MailRefused):
    code = "mail_too_large"

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the mail is {size} bytes; the limit is {limit} bytes")
        self.size, self.limit = size, limit


@dataclass(frozen=True)
class Accepted:
    mail_id: str
    duplicate: bool


def check_mail(raw: bytes, settings: IngestSettings, source: str) -> None:
    if not raw.strip():
        MAILS_REFUSED.labels(source, EmptyMail.code).inc()
        raise EmptyMail("the mail is empty: send the raw RFC 822 bytes as the body")
    if len(raw) > settings.max_mail_bytes:
        MAILS_REFUSED.labels(source, MailTooLarge.code).inc()
        raise MailTooLarge(len(raw), settings.max_mail_bytes)


async def accept_mail(
    pool: asyncpg.Pool,
    settings: IngestSettings,
    raw: bytes,
    *,
    source: str,
    envelope_from: str | None = None,
    envelope_to: tuple[str, ...] | list[str] = (),
    trusted_source: str | None = None,
) -> Accepted:
    """Store and announce one mail; returns its id (the earlier one for a duplicate).

    ``trusted_source`` names a source allowed to give control headers (``services.ingest.trust``);
    None strips them. The raw bytes, the event and its outbox row are written by one statement
    (``store.store_mail``), which is why this does not go through the shared event store.
    """
    check_mail(raw, settings, source)
    digest = hashlib.sha256(raw).hexdigest()
    parsed = apply_trust(parse_mail(raw, own_domains=settings.own_domain_set()), trusted_source)
    mail_id = new_id()
    envelope = _sealed_event(mail_id, digest, raw, source, envelope_from, envelope_to, parsed)
    row = {
        "mail_id": mail_id, "sha256": digest, "size": len(raw), "raw": raw, "source": source,
        "envelope_from": envelope_from, "envelope_to": list(envelope_to),
        "flags": envelope.data["mail"]["flags"], "defects": envelope.data["mail"]["defects"],
    }  # fmt: skip
    if not await store_mail(pool, row, envelope, settings.topic(TOPIC_MAIL_RECEIVED)):
        MAILS_DUPLICATE.labels(source).inc()
        return Accepted(await _stored_id(pool, digest), duplicate=True)
    EVENTS_APPENDED.labels(envelope.type).inc()
    MAILS_ACCEPTED.labels(source).inc()
    return Accepted(mail_id, duplicate=False)


def _sealed_event(
    mail_id: str,
    digest: str,
    raw: bytes,
    source: str,
    envelope_from: str | None,
    envelope_to: tuple[str, ...] | list[str],
    parsed: ParsedMail,
) -> Envelope:
    """MailReceived as the first event of the mail's own stream."""
    event = MailReceived(
        mail_id=mail_id, sha256=digest, size=len(raw), source=source,  # type: ignore[arg-type]
        envelope_from=envelope_from or None, envelope_to=list(envelope_to), mail=parsed,
    )  # fmt: skip
    envelope = make_envelope(
        event, stream_id=mail_id, actor=f"ingest:{source}", correlation_id=correlation_id.get() or mail_id
    )
    return seal(envelope, stream_version=1, prev_hash=GENESIS_HASH)


async def _stored_id(pool: asyncpg.Pool, digest: str) -> str:
    """Id of the mail stored under ``digest``, waiting briefly if its transaction is just committing."""
    for _ in range(50):
        if found := await mail_id_by_sha256(pool, digest):
            return found
        await asyncio.sleep(0.01)
    raise RuntimeError(f"mail {digest} reported stored but not found")
