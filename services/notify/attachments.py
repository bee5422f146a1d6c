"""An answer's attachments: the bytes of parts of mails already on the ticket, fetched from ingest.

``AnswerSent.attachments`` name each part by ``(mail_id, part)`` with its filename, content type,
size and sha256 (tickets checked that the part belongs to the ticket). Notify fetches
``GET {INGEST_URL}/mails/{mail_id}/parts/{part}`` while composing the answer, in the consumer's
transaction:

* a transient failure (connection error, timeout, 5xx, 429) raises :class:`IngestUnavailable`, an
  ``OSError``: the consumer runner treats it as infrastructure being away and retries the batch
  (offsets uncommitted) until ingest answers, so the answer is delayed, never lost;
* anything ingest says for good (404, another 4xx, bytes whose sha256 differs) raises
  :class:`~services.notify.domain.ComposeError`: the answer is failed at once with that reason
  (``DeliveryFailed{permanent}``), like any answer that cannot be composed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from urllib.parse import quote

import httpx

from services.notify.domain import ComposeError
from services.notify.mime import OutgoingAttachment
from shared.events import Attachment

logger = logging.getLogger(__name__)

ACTOR = "system:notify"


class IngestUnavailable(ConnectionError):
    """Ingest could not be asked now (down, timing out, 5xx): try the whole answer again later."""


def checked_part(attachment: Attachment, status: int, content: bytes) -> OutgoingAttachment:
    """The attachment to send, from ingest's answer ``(status, content)`` for its part (pure).

    Raises :class:`IngestUnavailable` for a status worth retrying, :class:`ComposeError` for a
    permanent problem (no such part, refused, bytes not the ones the agent chose)."""
    where = f"part {attachment.part} of mail {attachment.mail_id} ({attachment.filename})"
    if status >= 500 or status in (408, 429):
        raise IngestUnavailable(f"ingest answered {status} for {where}")
    if status == 404:
        raise ComposeError(f"attachment {where} not found in ingest")
    if status != 200:
        raise ComposeError(f"attachment {where}: ingest refused it ({status})")
    digest = hashlib.sha256(content).hexdigest()
    if digest != attachment.sha256.lower():
        raise ComposeError(f"attachment {where}: sha256 {digest} is not the expected {attachment.sha256}")
    return OutgoingAttachment(attachment.filename, attachment.content_type, content)


async def fetch_attachments(
    attachments: Sequence[Attachment], ingest_url: str, timeout: float, correlation_id: str | None = None
) -> list[OutgoingAttachment]:
    """Every attachment's bytes, in order, checked by :func:`checked_part`."""
    if not attachments:
        return []
    for attachment in attachments:
        if not attachment.mail_id or not attachment.part:
            raise ComposeError(f"attachment {attachment.filename} names no mail part to fetch")
    if not ingest_url:
        raise ComposeError("attachments cannot be fetched: INGEST_URL is not set")
    headers = {"X-Actor": ACTOR, **({"X-Correlation-ID": correlation_id} if correlation_id else {})}
    found: list[OutgoingAttachment] = []
    async with httpx.AsyncClient(base_url=ingest_url, timeout=timeout) as client:
        for attachment in attachments:
            path = f"/mails/{quote(attachment.mail_id or '', safe='')}/parts/{quote(attachment.part, safe='')}"
            try:
                response = await client.get(path, headers=headers)
            except httpx.HTTPError as exc:  # connection refused, timeout, protocol error
                raise IngestUnavailable(
                    f"ingest unreachable for {attachment.mail_id}/{attachment.part}: {exc!r}"
                ) from exc
            found.append(checked_part(attachment, response.status_code, response.content))
    return found
