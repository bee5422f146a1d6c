"""Accepting one mail: size checks, the raw store, parsing, and MailReceived through the outbox.

All three doors (SMTP, mailbox polling, HTTP) call :func:`accept_mail`. It answers only after
the raw bytes and the outbox row are committed in one transaction, so an acknowledged mail is
never lost; the same bytes twice are stored and announced once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
from prometheus_client import Counter

from services.ingest.domain import parse_mail
from services.ingest.settings import IngestSettings
from services.ingest.store import insert_raw, mail_id_by_sha256
from shared.envelope import make_envelope, new_id
from shared.events import TOPIC_MAIL_RECEIVED, MailReceived
from shared.eventstore import EventStore
from shared.logs import correlation_id

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
    store: EventStore,
    settings: IngestSettings,
    raw: bytes,
    *,
    source: str,
    envelope_from: str | None = None,
    envelope_to: tuple[str, ...] | list[str] = (),
) -> Accepted:
    """Store and announce one mail; returns its id (the earlier one for a duplicate)."""
    check_mail(raw, settings, source)
    digest = hashlib.sha256(raw).hexdigest()
    if existing := await mail_id_by_sha256(pool, digest):
        MAILS_DUPLICATE.labels(source).inc()
        return Accepted(existing, duplicate=True)
    parsed = parse_mail(raw, own_domains=settings.own_domain_set())
    mail_id = new_id()
    event = MailReceived(
        mail_id=mail_id, sha256=digest, size=len(raw), source=source,  # type: ignore[arg-type]
        envelope_from=envelope_from or None, envelope_to=list(envelope_to), mail=parsed,
    )  # fmt: skip
    envelope = make_envelope(
        event, stream_id=mail_id, actor=f"ingest:{source}", correlation_id=correlation_id.get() or mail_id
    )
    row = {
        "mail_id": mail_id, "sha256": digest, "size": len(raw), "raw": raw, "source": source,
        "envelope_from": envelope_from, "envelope_to": list(envelope_to),
        "flags": parsed.flags.model_dump(), "defects": parsed.defects,
    }  # fmt: skip
    async with pool.acquire() as conn, conn.transaction():
        if not await insert_raw(conn, row):  # the same bytes arrived concurrently
            MAILS_DUPLICATE.labels(source).inc()
            return Accepted(await mail_id_by_sha256(conn, digest) or mail_id, duplicate=True)
        await store.append(mail_id, 0, [envelope], publish_to=settings.topic(TOPIC_MAIL_RECEIVED), conn=conn)
    MAILS_ACCEPTED.labels(source).inc()
    return Accepted(mail_id, duplicate=False)
