"""The life of a mail, end to end, through real processes, a real broker, PostgreSQL and SMTP."""

from __future__ import annotations

import smtplib
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, TypeVar

import httpx
import pytest

from tests.e2e.conftest import Running

pytestmark = pytest.mark.timeout(600)

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def send_mail(running: Running, *, sender: str, to: str, subject: str, body: str, **headers: str) -> str:
    """Send a mail to the SMTP intake; returns its Message-ID."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message_id = f"<{uuid.uuid4().hex}@customer.example>"
    message["Message-ID"] = message_id
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    with smtplib.SMTP("127.0.0.1", running.ports.smtp, timeout=30) as smtp:
        smtp.send_message(message)
    return message_id


def ticket_with_subject(api: httpx.Client, subject: str, queue: str | None = None) -> dict[str, Any] | None:
    params = {"page_size": 100, **({"queue": queue} if queue else {})}
    response = api.get("/api/tickets", params=params)
    response.raise_for_status()
    return next((t for t in response.json()["items"] if subject in t["title"]), None)


def create_agent(admin: httpx.Client, username: str, permissions: dict[str, list[str]]) -> None:
    response = admin.post(
        "/api/admin/agents",
        json={"username": username, "password": f"{username}-pw-123456", "permissions": permissions},
    )
    assert response.status_code in (200, 201), response.text


@pytest.fixture(scope="module")
def admin(running: Running) -> httpx.Client:
    return running.login()


@pytest.fixture(scope="module")
def vera(running: Running, admin: httpx.Client) -> httpx.Client:
    create_agent(admin, "vera", {"Info-en": ["rw"], "Info-de": ["rw"], "Junk": ["ro"]})
    return running.login("vera", "vera-pw-123456")


def test_a_customer_question_is_answered_followed_up_closed_and_audited(
    running: Running, admin: httpx.Client, vera: httpx.Client
) -> None:
    subject = f"Question about my account {uuid.uuid4().hex[:6]}"
    first_id = send_mail(
        running, sender="Ada Lovelace <ada@customer.example>", to="info@firstline.example", subject=subject,
        body="Hello, I cannot log in to my account since yesterday. Can you help me please?",
    )  # fmt: skip

    ticket = wait_for(lambda: ticket_with_subject(vera, subject, "Info-en"), what="the ticket in Info-en")
    number = ticket["number"]
    assert ticket["state"] == "new" and not ticket["locked"]

    zoom = vera.get(f"/api/tickets/{number}").json()
    (article,) = zoom["articles"]
    trace = vera.get(f"/api/mails/{article['mail_id']}").json()
    assert trace["status"] == "ticketed" and trace["queue"] == "Info-en" and trace["ticket_number"] == number
    raw = vera.get(f"/api/mails/{article['mail_id']}/raw")
    assert raw.status_code == 200 and first_id.encode() in raw.content
    before_lock = datetime.now(UTC)

    assert vera.post(f"/api/tickets/{number}/lock").status_code == 200
    taken = admin.post(f"/api/tickets/{number}/lock")
    assert taken.status_code == 409 and "vera" in taken.text

    answer = vera.post(f"/api/tickets/{number}/answer", json={"body": "Please reset your password here."})
    assert answer.status_code == 200, answer.text
    sent = wait_for(lambda: _answer_in(running, "ada@customer.example", number), what="the answer at the relay")
    assert sent["In-Reply-To"] == first_id
    assert "Please reset your password here." in sent.get_body(("plain",)).get_content()
    assert sent["From"].addresses[0].addr_spec == "info@firstline.example"

    send_mail(
        running, sender="ada@customer.example", to="info@firstline.example", subject=f"Re: {sent['Subject']}",
        body="Thanks, that worked.", In_Reply_To=sent["Message-ID"], References=f"{first_id} {sent['Message-ID']}",
    )  # fmt: skip
    wait_for(lambda: _customer_articles(vera, number) >= 2, what="the follow-up on the same ticket")

    closed = vera.post(f"/api/tickets/{number}/state", json={"state": "closed successful"})
    assert closed.status_code == 200, closed.text
    send_mail(
        running, sender="ada@customer.example", to="info@firstline.example", subject=f"Re: [Ticket#{number}] one more",
        body="Sorry, one more question.",
    )  # fmt: skip
    reopened = wait_for(
        lambda: _state_if(vera, number, lambda s: not s.startswith("closed")), what="Info-en's reopen policy"
    )
    assert reopened in ("open", "new")

    history = vera.get(f"/api/tickets/{number}/history").json()
    types = [e["type"] for e in history["events"]]
    for expected in ("TicketCreated", "TicketLocked", "AnswerSent", "StateChanged"):
        assert expected in types
    wait_for(lambda: "AnswerDelivered" in _event_types(vera, number), what="the delivery on the ticket's history")
    past = vera.get(f"/api/tickets/{number}/history", params={"at": before_lock.isoformat()}).json()
    assert past["ticket"]["state"] == "new" and not past["ticket"].get("lock")
    verify = admin.get("/api/audit/verify").json()
    assert verify["ok"] is True


def test_spam_goes_to_junk_without_an_auto_reply(running: Running, vera: httpx.Client) -> None:
    subject = f"CHEAP PILLS {uuid.uuid4().hex[:6]}"
    send_mail(
        running, sender="promo@spam.example", to="info@firstline.example", subject=subject,
        body="Buy cheap pills now, limited offer, click here!!!", X_Spam_Flag="YES", X_Spam_Score="15.2",
    )  # fmt: skip
    ticket = wait_for(lambda: ticket_with_subject(vera, subject, "Junk"), what="the spam in Junk")
    assert ticket["queue"] == "Junk"
    time.sleep(2)
    assert running.sink.to("promo@spam.example") == []


def test_a_volunteer_without_the_permissions_queue_sees_nothing_of_it(
    running: Running, admin: httpx.Client, vera: httpx.Client
) -> None:
    subject = f"Permission to use my photo {uuid.uuid4().hex[:6]}"
    send_mail(running, sender="photographer@customer.example", to="permissions@firstline.example",
              subject=subject, body="I allow the use of my photo under CC BY-SA.")  # fmt: skip
    ticket = wait_for(lambda: ticket_with_subject(admin, subject, "Permissions"), what="the ticket in Permissions")
    number = ticket["number"]
    assert "Permissions" not in [q["name"] for q in vera.get("/api/queues").json()["items"]]
    assert ticket_with_subject(vera, subject) is None
    assert vera.get("/api/tickets", params={"queue": "Permissions"}).json()["total"] == 0
    assert vera.get(f"/api/tickets/{number}").status_code in (403, 404)
    assert vera.get(f"/api/tickets/{number}/history").status_code in (403, 404)
    assert vera.post(f"/api/tickets/{number}/lock").status_code in (403, 404)
    hits = vera.get("/api/search", params={"q": "photo"}).json()["items"]
    assert all(hit["number"] != number for hit in hits)
    zoom = admin.get(f"/api/tickets/{number}").json()
    assert vera.get(f"/api/mails/{zoom['articles'][0]['mail_id']}").status_code in (403, 404)


def test_two_agents_racing_for_one_ticket_exactly_one_wins(
    running: Running, admin: httpx.Client, vera: httpx.Client
) -> None:
    subject = f"Race {uuid.uuid4().hex[:6]}"
    send_mail(running, sender="racer@customer.example", to="info@firstline.example", subject=subject, body="hi")
    number = wait_for(lambda: ticket_with_subject(vera, subject), what="the ticket")["number"]
    create_agent(admin, "walt", {"Info-en": ["rw"]})
    walt = running.login("walt", "walt-pw-123456")
    results: list[int] = []

    def lock(client: httpx.Client) -> None:
        results.append(client.post(f"/api/tickets/{number}/lock").status_code)

    threads = [threading.Thread(target=lock, args=(c,)) for c in (vera, walt)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200, 409]


def test_a_bounce_of_an_answer_is_linked_to_that_answer(running: Running, vera: httpx.Client) -> None:
    subject = f"Write back to my old address {uuid.uuid4().hex[:6]}"
    send_mail(running, sender="gone@customer.example", to="info@firstline.example", subject=subject, body="Hi!")
    number = wait_for(lambda: ticket_with_subject(vera, subject, "Info-en"), what="the ticket")["number"]
    answer = vera.post(f"/api/tickets/{number}/answer", json={"body": "Here is your answer."})
    assert answer.status_code == 200, answer.text
    sent = wait_for(lambda: _answer_in(running, "gone@customer.example", number), what="the answer at the relay")

    with smtplib.SMTP("127.0.0.1", running.ports.smtp, timeout=30) as smtp:
        smtp.sendmail("", ["info@firstline.example"], _dsn(sent, "gone@customer.example"))

    def linked() -> tuple[dict[str, Any], dict[str, Any]] | None:
        articles = vera.get(f"/api/tickets/{number}").json()["articles"]
        bounce = next((a for a in articles if a.get("bounce_of")), None)
        answered = next((a for a in articles if bounce and a["article_id"] == bounce["bounce_of"]), None)
        return (answered, bounce) if answered and bounce else None

    answered, bounce = wait_for(linked, what="the bounce linked to the answer")
    assert answered["delivery"] == "bounced" and "5.1.1" in answered["delivery_detail"]
    time.sleep(2)
    assert running.sink.to("MAILER-DAEMON@mx.customer.example") == []  # nothing answers a bounce


def _dsn(answer: EmailMessage, recipient: str) -> bytes:
    """An RFC 3464 delivery report for ``answer``, carrying its headers as text/rfc822-headers."""
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n"
        "To: info@firstline.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@mx.customer.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.customer.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {answer['From']}\r\nTo: {recipient}\r\nSubject: {answer['Subject']}\r\n"
        f"Message-ID: {answer['Message-ID']}\r\n\r\n--B--\r\n"
    ).encode()


def _answer_in(running: Running, address: str, number: str) -> EmailMessage | None:
    return next((m for m in running.sink.to(address) if f"Ticket#{number}" in str(m["Subject"])
                 and m.get("Auto-Submitted", "no") == "no"), None)  # fmt: skip


def _customer_articles(api: httpx.Client, number: str) -> int:
    articles = api.get(f"/api/tickets/{number}").json()["articles"]
    return sum(1 for a in articles if a["sender_type"] == "customer")


def _state_if(api: httpx.Client, number: str, wanted: Callable[[str], bool]) -> str | None:
    state = api.get(f"/api/tickets/{number}").json()["state"]
    return state if wanted(state) else None


def _event_types(api: httpx.Client, number: str) -> list[str]:
    return [e["type"] for e in api.get(f"/api/tickets/{number}/history").json()["events"]]
