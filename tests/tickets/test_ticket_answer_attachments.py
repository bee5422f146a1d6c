"""Answers with attachments of the ticket's mails (issue 6): the rules (pure) and the HTTP command."""

from __future__ import annotations

import pytest

from services.tickets.domain import answer_attachments, ticket_attachments
from services.tickets.errors import AttachmentsTooLarge, InvalidInput
from shared.events import Attachment
from shared.settings import ServiceSettings

from .service_kit import ALICE, new_ticket, running, tickets_settings

pytestmark = pytest.mark.timeout(180)

PDF = Attachment(filename="invoice.pdf", content_type="application/pdf", size=1200, sha256="a" * 64, part="2")
PNG = Attachment(filename="shot.png", content_type="image/png", size=800, sha256="b" * 64, part="3")


def test_ticket_attachments_names_the_mail_of_each_part() -> None:
    answer_copy = PDF.model_copy(update={"mail_id": "mail-1"}).model_dump(mode="json")
    articles = [
        {"mail_id": "mail-1", "attachments": [PDF.model_dump(mode="json"), PNG.model_dump(mode="json")]},
        {"mail_id": None, "attachments": [answer_copy]},  # an answer that passed it on
        {"mail_id": None, "attachments": []},
    ]
    found = ticket_attachments(articles)
    assert set(found) == {("mail-1", "2"), ("mail-1", "3")}
    assert found[("mail-1", "3")].mail_id == "mail-1" and found[("mail-1", "3")].filename == "shot.png"


def test_answer_attachments_checks_each_and_the_total() -> None:
    available = ticket_attachments([{"mail_id": "mail-1", "attachments": [PDF.model_dump(), PNG.model_dump()]}])
    chosen = answer_attachments(
        [{"mail_id": "mail-1", "part": "3"}, {"mail_id": "mail-1", "part": "2"}, {"mail_id": "mail-1", "part": "3"}],
        available,
        10_000,
    )
    assert [(a.filename, a.mail_id, a.part) for a in chosen] == [
        ("shot.png", "mail-1", "3"),
        ("invoice.pdf", "mail-1", "2"),
    ]
    with pytest.raises(InvalidInput) as refused:
        answer_attachments([{"mail_id": "mail-1", "part": "2"}, {"mail_id": "mail-9", "part": "2"}], available, 10_000)
    assert refused.value.field == "attachments[1]"
    with pytest.raises(AttachmentsTooLarge) as too_large:
        answer_attachments([{"mail_id": "mail-1", "part": "2"}, {"mail_id": "mail-1", "part": "3"}], available, 1500)
    assert too_large.value.field == "attachments" and too_large.value.code == "attachments_too_large"


async def test_answer_with_attachments_over_http(settings: ServiceSettings) -> None:
    async with running(tickets_settings(settings, max_answer_attachment_bytes=1500)) as (app, client):
        number = await new_ticket(app, client, "mail-1", attachments=[PDF, PNG])
        other = await new_ticket(
            app, client, "mail-2", message_id="<m2@example.org>", subject="Other", attachments=[PDF]
        )
        zoom = (await client.get(f"/tickets/{number}")).json()
        assert [a["part"] for a in zoom["articles"][0]["attachments"]] == ["2", "3"]

        foreign = await client.post(
            f"/tickets/{number}/answer",
            json={"body": "Here", "attachments": [{"mail_id": "mail-2", "part": "2"}]},
            headers=ALICE,
        )
        assert foreign.status_code == 422
        assert foreign.json()["error"] == "invalid_input" and foreign.json()["field"] == "attachments[0]"
        too_large = await client.post(
            f"/tickets/{number}/answer",
            json={
                "body": "Here",
                "attachments": [{"mail_id": "mail-1", "part": "2"}, {"mail_id": "mail-1", "part": "3"}],
            },
            headers=ALICE,
        )
        assert too_large.status_code == 422 and too_large.json()["error"] == "attachments_too_large"
        assert too_large.json()["field"] == "attachments"
        malformed = await client.post(
            f"/tickets/{number}/answer", json={"body": "Here", "attachments": [{"mail_id": "mail-1"}]}, headers=ALICE
        )
        assert malformed.status_code == 422

        answered = await client.post(
            f"/tickets/{number}/answer",
            json={"body": "The corrected invoice.", "attachments": [{"mail_id": "mail-1", "part": "2"}]},
            headers=ALICE,
        )
        assert answered.status_code == 200, answered.text
        answer = answered.json()["ticket"]["articles"][-1]
        assert answer["kind"] == "answer"
        assert [(a["filename"], a["mail_id"], a["part"]) for a in answer["attachments"]] == [
            ("invoice.pdf", "mail-1", "2")
        ]
        history = (await client.get(f"/tickets/{number}/history")).json()
        sent = next(e for e in history["events"] if e["type"] == "AnswerSent")
        assert sent["data"]["attachments"] == [PDF.model_copy(update={"mail_id": "mail-1"}).model_dump(mode="json")]
        # what an answer carried may be passed on again; no attachments at all is still an answer
        again = await client.post(
            f"/tickets/{number}/answer",
            json={"body": "Again.", "attachments": [{"mail_id": "mail-1", "part": "2"}]},
            headers=ALICE,
        )
        assert again.status_code == 200
        plain = await client.post(f"/tickets/{other}/answer", json={"body": "No files."}, headers=ALICE)
        assert plain.status_code == 200 and plain.json()["ticket"]["articles"][-1]["attachments"] == []
