"""Answers carrying attachments of the ticket's mails (issue 6): notify fetches each part from a
real ingest app (uvicorn on a loopback port, its own database), checks its sha256 and sends it
through a real SMTP relay. Ingest away → the answer waits and goes out once ingest is back; a
part ingest does not have, or bytes that are not the chosen ones → DeliveryFailed, permanent."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage

import httpx
import pytest

from services.ingest.app import create_app as create_ingest
from services.ingest.domain import parse_mail
from services.ingest.settings import IngestSettings
from services.notify.app import create_app
from services.notify.attachments import IngestUnavailable, checked_part
from services.notify.domain import ComposeError
from shared.devinfra import free_port
from shared.events import AnswerDelivered, Attachment, DeliveryFailed
from shared.settings import ServiceSettings
from tests.conftest import eventually, fresh_database, serving
from tests.notify.kit import (
    Relay,
    answer_sent,
    envelope_of,
    notify_settings,
    publish,
    queue_configured,
    reading,
    served_on,
)

pytestmark = pytest.mark.timeout(240)

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def customer_mail() -> bytes:
    msg = EmailMessage()
    msg["From"] = "Jane Doe <jane@example.org>"
    msg["To"] = "press@firstline.example"
    msg["Subject"] = "Interview request"
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@example.org>"
    msg.set_content("The draft is attached.")
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="Entwurf Übersicht.pdf")
    return bytes(msg)


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay(free_port()).start()
    yield server
    server.stop()


@pytest.fixture
async def ingest_database(pg_server: str) -> AsyncIterator[str]:
    """Ingest's own database on the test server (one per service, as in production)."""
    async with fresh_database(pg_server) as url:
        yield url


def test_checked_part_sorts_ingests_answers() -> None:
    attachment = Attachment(
        filename="a.pdf", content_type="application/pdf", size=3, sha256=_sha(b"abc"), part="2", mail_id="m"
    )
    assert checked_part(attachment, 200, b"abc").data == b"abc"
    for status in (500, 502, 503, 429):
        with pytest.raises(IngestUnavailable):
            checked_part(attachment, status, b"")
    with pytest.raises(ComposeError, match="not found"):
        checked_part(attachment, 404, b"")
    with pytest.raises(ComposeError, match="sha256"):
        checked_part(attachment, 200, b"abd")
    assert issubclass(IngestUnavailable, OSError)  # the consumer runner waits on it, never dead-letters


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def test_answer_attachments_fetched_from_ingest(
    settings: ServiceSettings, relay: Relay, ingest_database: str
) -> None:
    port = free_port()
    ingest = IngestSettings(
        **(settings.model_dump() | {"service_name": "ingest", "database_url": ingest_database, "smtp_enabled": False})
    )
    notify = notify_settings(settings, relay.port, ingest_url=f"http://127.0.0.1:{port}", ingest_timeout_seconds=2)
    raw = customer_mail()
    async with serving(create_app(notify)) as client, reading(settings) as delivery:
        await publish(settings, envelope_of(queue_configured(), actor="admin"))
        await eventually(lambda: _ok(client.get("/queues/Press/settings")))

        async with served_on(create_ingest(ingest), port) as url:
            async with httpx.AsyncClient(base_url=url) as ingest_client:
                posted = await ingest_client.post("/mail", content=raw)
                assert posted.status_code == 202, posted.text
                mail_id = posted.json()["mail_id"]
            [meta] = parse_mail(raw).attachments
            attachment = meta.model_copy(update={"mail_id": mail_id})
            assert attachment.sha256 == _sha(PDF)

            good = envelope_of(answer_sent("ticket-1", "article-1", attachments=[attachment]))
            missing = envelope_of(
                answer_sent("ticket-2", "article-2", attachments=[attachment.model_copy(update={"part": "9"})])
            )
            forged = envelope_of(
                answer_sent("ticket-3", "article-3", attachments=[attachment.model_copy(update={"sha256": "0" * 64})])
            )
            await publish(settings, good, missing, forged)

            await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-1")))
            check_attached(relay, "<article-1@firstline.example>")
            for article, words in (("article-2", "not found"), ("article-3", "sha256")):
                [failed] = await eventually(lambda a=article: _async(delivery.of_type(DeliveryFailed, article_id=a)))
                assert failed.data["permanent"] is True and failed.data["attempts"] == 0
                assert words in failed.data["reason"], failed.data["reason"]
            assert not relay.handler.with_id("<article-2@firstline.example>")

        # ingest is away: the answer waits (no row, no failure) and goes out once ingest is back
        later = envelope_of(answer_sent("ticket-4", "article-4", attachments=[attachment]))
        waits = _Recorder()
        logging.getLogger("shared.bus").addHandler(waits)  # the service's log setup does not propagate
        try:
            await publish(settings, later)
            await asyncio.sleep(4)
        finally:
            logging.getLogger("shared.bus").removeHandler(waits)
        assert any("IngestUnavailable" in m for m in waits.messages)  # tried and waiting, not dead-lettered
        assert not delivery.of_type(DeliveryFailed, article_id="article-4")
        assert not delivery.of_type(AnswerDelivered, article_id="article-4")
        assert (await client.get("/outbound", params={"ticket_id": "ticket-4"})).json()["items"] == []
        async with served_on(create_ingest(ingest), port):
            [done] = await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-4")))
            assert done.causation_id == later.event_id
            check_attached(relay, "<article-4@firstline.example>")
        assert not delivery.of_type(DeliveryFailed, article_id="article-4")


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_attached(relay: Relay, message_id: str) -> None:
    [mail] = relay.handler.with_id(message_id)
    [sent] = list(mail.message.iter_attachments())
    assert sent.get_filename() == "Entwurf Übersicht.pdf"
    assert sent.get_content_type() == "application/pdf"
    assert sent.get_payload(decode=True) == PDF
    body = mail.message.get_body(preferencelist=("plain",))
    assert body is not None and "Tuesday at 10" in body.get_content()


async def _ok(response: object) -> bool:
    return (await response).status_code == 200  # type: ignore[misc,attr-defined]


async def _async(value: object) -> object:
    return value
