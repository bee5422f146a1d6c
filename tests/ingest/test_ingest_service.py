"""The ingest service against real PostgreSQL, a real broker and a real SMTP client."""

from __future__ import annotations

import asyncio
import smtplib
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.ingest.app import create_app
from services.ingest.settings import IngestSettings
from shared.db import create_pool
from shared.devinfra import free_port
from shared.events import MailReceived
from shared.eventstore import EventStore
from shared.settings import ServiceSettings
from tests.conftest import eventually, serving
from tests.ingest.kit import received_events

pytestmark = pytest.mark.timeout(300)

MAIL = (
    b"From: Ada <ada@example.org>\r\nTo: info@firstline.example\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
    b"Message-ID: <m1@example.org>\r\n\r\nHello, I have a question.\r\n"
)


@pytest.fixture
def ingest_settings(settings: ServiceSettings) -> IngestSettings:
    base = settings.model_dump(exclude={"service_name", "http_port"})
    return IngestSettings(**base, smtp_port=free_port(), max_mail_bytes=200_000, max_recipients=5)


@pytest.fixture
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(create_app(ingest_settings)) as client:
        yield client


async def test_post_mail_stores_bytes_and_announces_the_parsed_mail(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    response = await ingest.post("/mail", content=MAIL)
    assert response.status_code == 202
    mail_id = response.json()["mail_id"]
    assert response.json()["duplicate"] is False

    again = await ingest.post("/mail", content=MAIL)
    assert again.json() == {"mail_id": mail_id, "duplicate": True}

    raw = await ingest.get(f"/mails/{mail_id}/raw")
    assert raw.content == MAIL
    summary = (await ingest.get(f"/mails/{mail_id}")).json()
    assert summary["status"] == "stored" and summary["size"] == len(MAIL)

    events = await received_events(ingest_settings, 1)
    await asyncio.sleep(1)
    events = await received_events(ingest_settings, 2, timeout=3)
    assert len(events) == 1, "a mail delivered twice is announced once"
    assert events[0].mail_id == mail_id
    assert events[0].mail.subject == "Grüße"
    assert events[0].mail.from_ is not None and events[0].mail.from_.email == "ada@example.org"


async def test_bad_inputs_get_clear_answers(ingest: httpx.AsyncClient) -> None:
    empty = await ingest.post("/mail", content=b"")
    assert empty.status_code == 400 and empty.json()["error"] == "empty_mail"
    huge = await ingest.post("/mail", content=b"Subject: x\r\n\r\n" + b"a" * 300_000)
    assert huge.status_code == 413 and huge.json()["limit"] == 200_000
    assert (await ingest.get("/mails/nope")).status_code == 404
    assert (await ingest.get("/mails/nope/raw")).json()["error"] == "mail_not_found"
    garbage = await ingest.post("/mail", content=b"\x00\xff\xfe not a mail at all \x80\x81")
    assert garbage.status_code == 202, "malformed mail is stored and flagged, never dropped"
    summary = (await ingest.get(f"/mails/{garbage.json()['mail_id']}")).json()
    assert summary["flags"]["malformed"] or summary["defects"]


async def test_attachment_is_fetchable_from_the_raw_mail(ingest: httpx.AsyncClient, ingest_settings) -> None:
    mail = (
        b"From: a@example.org\r\nTo: info@firstline.example\r\nSubject: file\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n'
        b'--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="a.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\nAAECAw==\r\n--b--\r\n"
    )
    mail_id = (await ingest.post("/mail", content=mail)).json()["mail_id"]
    (event,) = await received_events(ingest_settings, 1)
    (attachment,) = event.mail.attachments
    part = await ingest.get(f"/mails/{mail_id}/parts/{attachment.part}")
    assert part.content == b"\x00\x01\x02\x03"
    assert attachment.filename == "a.bin" and attachment.size == 4


def smtp_send(port: int, sender: str, recipients: list[str], data: bytes) -> dict:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        return client.sendmail(sender, recipients, data)


async def test_smtp_door(ingest: httpx.AsyncClient, ingest_settings: IngestSettings) -> None:
    port = ingest_settings.smtp_port
    await asyncio.to_thread(smtp_send, port, "ada@example.org", ["info@firstline.example"], MAIL)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as relay:
        await asyncio.to_thread(smtp_send, port, "spammer@example.net", ["victim@elsewhere.example"], MAIL)
    code, message = relay.value.recipients["victim@elsewhere.example"]
    assert code == 550 and b"relaying denied" in message

    many = [f"u{i}@firstline.example" for i in range(8)]
    refused = await asyncio.to_thread(smtp_send, port, "a@example.org", many, MAIL.replace(b"m1@", b"m2@"))
    assert sorted(refused) == many[5:] and all(code == 452 for code, _ in refused.values())

    with pytest.raises(smtplib.SMTPSenderRefused) as size:
        await asyncio.to_thread(smtp_send, port, "a@example.org", ["info@firstline.example"], b"x" * 300_000)
    assert size.value.smtp_code == 552

    events = await received_events(ingest_settings, 2)
    assert {tuple(e.envelope_to) for e in events} == {("info@firstline.example",), tuple(many[:5])}
    assert all(e.source == "smtp" for e in events)


async def test_client_that_disconnects_mid_data_leaves_nothing(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    def half_a_mail() -> None:
        with socket.create_connection(("127.0.0.1", ingest_settings.smtp_port), timeout=5) as s:
            reader = s.makefile("rb")
            reader.readline()
            for line in (b"HELO x\r\n", b"MAIL FROM:<a@example.org>\r\n", b"RCPT TO:<info@firstline.example>\r\n"):
                s.sendall(line)
                reader.readline()
            s.sendall(b"DATA\r\n")
            reader.readline()
            s.sendall(b"Subject: cut\r\n\r\nhalf of a mai")

    await asyncio.to_thread(half_a_mail)
    await asyncio.sleep(0.5)
    assert await received_events(ingest_settings, 1, timeout=3) == []


async def test_every_corpus_mail_is_accepted_and_kept_byte_for_byte(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings, corpus: Path
) -> None:
    files = sorted((corpus / "mime").glob("*.eml")) + sorted(corpus.glob("[sh][pa]*/*.eml"))[::20]
    digests: dict[str, bytes] = {}
    failures: list[str] = []
    for path in files:
        raw = path.read_bytes()
        if len(raw) > ingest_settings.max_mail_bytes or not raw.strip():
            continue
        response = await ingest.post("/mail", content=raw)
        if response.status_code != 202:
            failures.append(f"{path.name}: {response.status_code} {response.text[:200]}")
            continue
        digests[response.json()["mail_id"]] = raw
    assert not failures
    for mail_id, raw in list(digests.items())[::7]:
        assert (await ingest.get(f"/mails/{mail_id}/raw")).content == raw
    distinct = len(set(digests))
    events = await eventually(lambda: _events_if_all(ingest_settings, distinct), timeout=120, interval=1)
    assert {e.mail_id for e in events} == set(digests)


async def _events_if_all(settings: IngestSettings, expected: int) -> list[MailReceived] | None:
    events = await received_events(settings, expected, timeout=20)
    return events if len({e.mail_id for e in events}) >= expected else None


CONTROL = b"X-Firstline-Queue: Press\r\nX-OTRS-Priority: 5 very high\r\n"


async def test_control_headers_count_from_trusted_http_and_smtp_clients_only(settings: ServiceSettings) -> None:
    base = settings.model_dump(exclude={"service_name", "http_port"})
    s = IngestSettings(**base, smtp_port=free_port(), trusted_token="t0ken", trusted_clients="127.0.0.0/8")
    async with serving(create_app(s)) as client:
        plain = await client.post("/mail", content=CONTROL + MAIL.replace(b"m1@", b"h1@"))
        forged = await client.post(
            "/mail", content=CONTROL + MAIL.replace(b"m1@", b"h2@"), headers={"X-Firstline-Trust-Token": "guess"}
        )
        trusted = await client.post(
            "/mail", content=CONTROL + MAIL.replace(b"m1@", b"h3@"), headers={"X-Firstline-Trust-Token": "t0ken"}
        )
        assert {plain.status_code, forged.status_code, trusted.status_code} == {202}
        await asyncio.to_thread(
            smtp_send, s.smtp_port, "a@example.org", ["info@firstline.example"], CONTROL + MAIL.replace(b"m1@", b"s1@")
        )
        events = {e.mail.message_id: e.mail.headers for e in await received_events(s, 4)}
    for untrusted in ("<h1@example.org>", "<h2@example.org>"):
        assert not [k for k in events[untrusted] if k.startswith(("x-firstline", "x-otrs"))]
    assert events["<h3@example.org>"]["x-firstline-trusted"] == "http"
    assert events["<h3@example.org>"]["x-firstline-trusted-queue"] == "Press"
    assert events["<s1@example.org>"]["x-firstline-trusted"] == "smtp:127.0.0.1"
    assert events["<s1@example.org>"]["x-firstline-trusted-otrs-priority"] == "5 very high"


async def test_the_one_statement_write_is_a_proper_event_stream(
    ingest: httpx.AsyncClient, ingest_settings: IngestSettings
) -> None:
    mail = MAIL.replace(b"m1@", b"same@")
    answers = await asyncio.gather(*(ingest.post("/mail", content=mail) for _ in range(10)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["mail_id"] for a in answers}) == 1, "the same bytes at once: one mail"
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 9
    mail_id = answers[0].json()["mail_id"]
    pool = await create_pool(ingest_settings.database_url)
    try:
        store = EventStore(pool)
        (envelope,) = await store.read_stream(mail_id)
        assert (envelope.type, envelope.stream_version, envelope.actor) == ("MailReceived", 1, "ingest:http")
        assert await store.verify_all() == (1, None), "the hash chain holds"
        outbox = await pool.fetch("select key, event_id::text from outbox")
        assert [(r["key"], r["event_id"]) for r in outbox] == [(mail_id, envelope.event_id)]
    finally:
        await pool.close()
    (event,) = await received_events(ingest_settings, 2, timeout=3)
    assert event.mail_id == mail_id
