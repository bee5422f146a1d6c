"""Bad input at the edges, against the whole system running as processes, over real sockets only:
SMTP abuse at ingest's door, attacks on the gateway's authentication and permissions, inputs that
once made a service answer 500 (regressions), and schemathesis over the gateway's OpenAPI.

Property tests of the pure parts live beside their code: the MIME parser in
tests/ingest/test_domain.py, the ticket aggregate in tests/tickets/test_ticket_properties.py.
"""

from __future__ import annotations

import secrets
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from services.gateway.settings import GatewaySettings
from services.ingest.settings import IngestSettings
from tests.e2e.conftest import Running
from tests.e2e.edges import RawSmtp, client_from, fuzz, gateway_schema, ingest_counter, mail_bytes, session_from
from tests.e2e.test_story import create_agent, send_mail, ticket_with_subject, wait_for

pytestmark = pytest.mark.timeout(900)

# Each attacker comes from a loopback address of its own, so the limits it trips stay its own.
FLOODER = "127.0.0.5"
GUESSER = "127.0.0.7"
FUZZER = "127.0.0.9"

MAX_RECIPIENTS = IngestSettings.model_fields["max_recipients"].default
MAX_CONNECTIONS_PER_CLIENT = IngestSettings.model_fields["max_connections_per_client"].default
LOGIN_MAX_FAILURES = GatewaySettings.model_fields["login_max_failures"].default
MISSING_NUMBER = "1999123199999999"
MISSING_MAIL = "01900000-0000-7000-8000-000000000000"


@dataclass
class Tickets:
    info: str  # in Info-en, which edgar works in
    info_mail: str
    permissions: str  # in Permissions, which edgar may not see
    permissions_mail: str
    permissions_subject: str


@pytest.fixture(scope="module")
def admin(running: Running) -> httpx.Client:
    return running.login()


@pytest.fixture(scope="module")
def edgar(running: Running, admin: httpx.Client) -> httpx.Client:
    """An agent with every right in Info-en and none in Permissions."""
    create_agent(admin, "edgar", {"Info-en": ["rw"]})
    return running.login("edgar", "edgar-pw-123456")


@pytest.fixture(scope="module")
def tickets(running: Running, admin: httpx.Client) -> Tickets:
    tag = uuid.uuid4().hex[:6]
    info_subject, permissions_subject = f"Edges question {tag}", f"Edges photo permission {tag}"
    send_mail(running, sender="ida@customer.example", to="info@firstline.example", subject=info_subject,
              body="Hello, where do I find my invoices?")  # fmt: skip
    send_mail(running, sender="pia@customer.example", to="permissions@firstline.example",
              subject=permissions_subject, body="I release my photo under CC BY-SA 4.0.")  # fmt: skip
    info = wait_for(lambda: ticket_with_subject(admin, info_subject, "Info-en"), what="the Info-en ticket")
    permissions = wait_for(lambda: ticket_with_subject(admin, permissions_subject, "Permissions"), what="Permissions")

    def first_mail(number: str) -> str:
        return str(admin.get(f"/api/tickets/{number}").json()["articles"][0]["mail_id"])

    return Tickets(
        info=info["number"],
        info_mail=first_mail(info["number"]),
        permissions=permissions["number"],
        permissions_mail=first_mail(permissions["number"]),
        permissions_subject=permissions_subject,
    )


def alive(running: Running) -> None:
    assert running.system.dead() == [], f"services died: {running.system.dead()}"
    for name in ("ingest", "gateway"):
        assert httpx.get(f"{running.url(name)}/healthz", timeout=10).status_code == 200


# --------------------------------------------------------------------------------- SMTP abuse


def test_a_one_megabyte_line_gets_a_clear_answer_and_breaks_nothing(running: Running, admin: httpx.Client) -> None:
    with RawSmtp(running.ports.smtp) as smtp:
        smtp.start()
        code, text = smtp.cmd("NOOP " + "x" * 1_000_000)  # a command line, not a mail
        assert code == 500 and "too long" in text
        assert smtp.cmd("NOOP")[0] == 250, "the session goes on after the refused line"

        # A 1 MB line in a mail is within the limits (real mail has long lines): accepted whole.
        assert smtp.cmd("RCPT TO:<info@firstline.example>")[0] == 250
        assert smtp.cmd("DATA")[0] == 354
        code, text = smtp.cmd(mail_bytes(f"Huge line {uuid.uuid4().hex[:6]}", b"y" * 1_000_000 + b"\r\n") + b".")
        assert code == 250, text
        mail_id = text.rsplit(" ", 1)[-1]

        # A 2 MB line is over the line limit: refused with 500, the session goes on.
        assert smtp.cmd("MAIL FROM:<edges@customer.example>")[0] == 250
        assert smtp.cmd("RCPT TO:<info@firstline.example>")[0] == 250
        assert smtp.cmd("DATA")[0] == 354
        code, text = smtp.cmd(mail_bytes("Huger line", b"z" * 2_000_000 + b"\r\n") + b".")
        assert code == 500 and "too long" in text.lower(), text
        assert smtp.cmd("NOOP")[0] == 250
        assert smtp.cmd("QUIT")[0] == 221

    trace = wait_for(lambda: _ticketed(admin, mail_id), what="the mail with the huge line on a ticket")
    assert trace["size"] > 1_000_000
    assert b"y" * 1_000_000 in admin.get(f"/api/mails/{mail_id}/raw").content
    alive(running)


def test_a_mail_whose_data_never_ends_leaves_nothing_behind(running: Running, admin: httpx.Client) -> None:
    accepted_before = ingest_counter(running, "firstline_mails_accepted_total", source="smtp")
    stalled, cut = f"Stalled {uuid.uuid4().hex[:6]}", f"Cut off {uuid.uuid4().hex[:6]}"

    with RawSmtp(running.ports.smtp) as smtp:  # the client stalls in DATA, then disconnects
        smtp.start()
        assert smtp.cmd("RCPT TO:<info@firstline.example>")[0] == 250
        assert smtp.cmd("DATA")[0] == 354
        smtp.send(mail_bytes(stalled))
        time.sleep(3)

    with RawSmtp(running.ports.smtp) as smtp:  # the client ends its side with half a terminator
        smtp.start()
        assert smtp.cmd("RCPT TO:<info@firstline.example>")[0] == 250
        assert smtp.cmd("DATA")[0] == 354
        smtp.send(mail_bytes(cut) + b".")
        smtp.sock.shutdown(socket.SHUT_WR)
        code, _ = smtp.reply()
        assert code != 250

    normal = f"After the stall {uuid.uuid4().hex[:6]}"
    send_mail(running, sender="ida@customer.example", to="info@firstline.example", subject=normal, body="Hi.")
    wait_for(lambda: ticket_with_subject(admin, normal, "Info-en"), what="the normal mail's ticket")
    assert ingest_counter(running, "firstline_mails_accepted_total", source="smtp") == accepted_before + 1
    assert ticket_with_subject(admin, stalled) is None and ticket_with_subject(admin, cut) is None
    alive(running)


def test_ten_thousand_recipients_get_452_after_the_limit(running: Running) -> None:
    codes: list[int] = []
    with RawSmtp(running.ports.smtp) as smtp:
        smtp.start()
        for chunk in range(100):  # pipelined, 100 at a time (so neither side's buffers fill)
            smtp.send(b"".join(f"RCPT TO:<user{chunk * 100 + i}@firstline.example>\r\n".encode() for i in range(100)))
            codes += [smtp.reply()[0] for _ in range(100)]
        assert smtp.cmd("RSET")[0] == 250
        assert smtp.cmd("QUIT")[0] == 221
    assert len(codes) == 10_000
    assert codes[:MAX_RECIPIENTS] == [250] * MAX_RECIPIENTS
    assert set(codes[MAX_RECIPIENTS:]) == {452}
    alive(running)


def test_relaying_to_foreign_domains_is_refused_with_550(running: Running) -> None:
    foreign = [
        "victim@elsewhere.example",
        "VICTIM@ELSEWHERE.EXAMPLE",
        "victim@firstline.example.evil.example",
        "victim@sub.firstline.example",
        "@firstline.example:victim@elsewhere.example",  # a source route through us
        '"victim@elsewhere.example"',
        "victim@[127.0.0.1]",
        "victim",
    ]
    with RawSmtp(running.ports.smtp) as smtp:
        smtp.start()
        for address in foreign:
            code, text = smtp.cmd(f"RCPT TO:<{address}>")
            assert code == 550, f"{address}: {text}"
        code, _ = smtp.cmd("RCPT TO:<victim@elsewhere.example@firstline.example>")
        assert code in (550, 553)
        assert smtp.cmd("DATA")[0] == 503, "no recipient was accepted, so there is nothing to send"
        assert smtp.cmd("RCPT TO:<info@firstline.example>")[0] == 250, "our own addresses still are"
        assert smtp.cmd("RSET")[0] == 250
    alive(running)


def test_a_flood_of_connections_from_one_client_gets_421_beyond_its_limit(running: Running) -> None:
    opened: list[RawSmtp] = []
    try:
        greetings = []
        for _ in range(MAX_CONNECTIONS_PER_CLIENT + 5):
            opened.append(RawSmtp(running.ports.smtp, source=FLOODER))
            greetings.append(opened[-1].reply()[0])
        assert greetings == [220] * MAX_CONNECTIONS_PER_CLIENT + [421] * 5
        with RawSmtp(running.ports.smtp) as other:
            assert other.reply()[0] == 220, "another client is not affected"
    finally:
        for smtp in opened:
            smtp.close()

    def greeted() -> bool:
        with RawSmtp(running.ports.smtp, source=FLOODER) as smtp:
            return smtp.reply()[0] == 220

    wait_for(greeted, timeout=10, what="the flooder's connections counted as closed")
    alive(running)


def test_after_the_abuse_a_normal_mail_is_accepted_and_becomes_a_ticket(running: Running, admin: httpx.Client) -> None:
    subject = f"Still there? {uuid.uuid4().hex[:6]}"
    send_mail(running, sender="ida@customer.example", to="info@firstline.example", subject=subject,
              body="Hello again, is anyone there?")  # fmt: skip
    ticket = wait_for(lambda: ticket_with_subject(admin, subject, "Info-en"), what="the ticket")
    assert ticket["state"] == "new"
    alive(running)


# --------------------------------------------------------------------------------- auth attacks


def test_guessing_passwords_is_stopped_with_429_and_retry_after(running: Running, admin: httpx.Client) -> None:
    create_agent(admin, "wanda", {"Info-en": ["rw"]})
    with client_from(running, GUESSER) as guesser:
        answers = [
            # X-Forwarded-For from an address that is no trusted proxy changes nothing
            guesser.post(
                "/api/login",
                json={"username": "wanda", "password": f"guess-{i}"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )  # fmt: skip
            for i in range(LOGIN_MAX_FAILURES + 3)
        ]
        for answer in answers[:LOGIN_MAX_FAILURES]:
            assert answer.status_code == 401 and answer.json()["error"] == "invalid_credentials"
        for answer in answers[LOGIN_MAX_FAILURES:]:
            assert answer.status_code == 429, answer.text
            assert answer.json()["error"] == "too_many_attempts"
            assert 0 < int(answer.headers["Retry-After"]) <= 300
        right = guesser.post("/api/login", json={"username": "wanda", "password": "wanda-pw-123456"})
        assert right.status_code == 429, "while locked out, the right password tells nothing either"
        unknown = guesser.post("/api/login", json={"username": "nobody-here", "password": "guess"})
        assert unknown.status_code == 401 and unknown.json() == answers[0].json(), "no user enumeration"
    running.login("wanda", "wanda-pw-123456").close()  # the lockout is the guesser's, not wanda's


def test_forged_tokens_and_cookies_get_401(running: Running, admin: httpx.Client, tickets: Tickets) -> None:
    token = admin.headers["Authorization"].removeprefix("Bearer ")
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    forged = {
        "random bearer": {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"},
        "tampered bearer": {"Authorization": f"Bearer {tampered}"},
        "unsigned JWT": {"Authorization": "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."},
        "huge bearer": {"Authorization": f"Bearer {'A' * 20_000}"},
        "bearer without token": {"Authorization": "Bearer"},
        "basic auth": {"Authorization": "Basic YWRtaW46ZTJlLWFkbWluLXBhc3N3b3Jk"},
        "random cookie": {"Cookie": f"firstline_session={secrets.token_urlsafe(32)}"},
        "tampered cookie": {"Cookie": f"firstline_session={tampered}"},
        "csrf cookie only": {"Cookie": "firstline_csrf=x.y"},
        "no credentials": {},
    }
    gateway = running.url("gateway")
    for name, headers in forged.items():
        for method, path in (("GET", "/api/me"), ("GET", f"/api/tickets/{tickets.info}"),
                             ("POST", f"/api/tickets/{tickets.info}/lock")):  # fmt: skip
            answer = httpx.request(method, f"{gateway}{path}", headers=headers, timeout=30)
            assert answer.status_code == 401, f"{name} {method} {path}: {answer.status_code} {answer.text}"
            assert answer.json()["error"] == "unauthenticated"
            assert answer.headers["WWW-Authenticate"] == "Bearer"

    ended = running.login()
    assert ended.post("/api/logout").status_code == 204
    assert ended.get("/api/me").status_code == 401, "a token ends with its session"
    assert admin.get("/api/me").status_code == 200, "other sessions live on"


def test_a_cookie_session_must_send_the_csrf_header_to_change_anything(
    running: Running, admin: httpx.Client, tickets: Tickets
) -> None:
    browser = httpx.Client(base_url=running.url("gateway"), timeout=30)
    login = browser.post("/api/login", json={"username": running.admin[0], "password": running.admin[1]})
    assert login.status_code == 200 and browser.cookies.get("firstline_session")
    other_session = httpx.post(f"{running.url('gateway')}/api/login", timeout=30,
                               json={"username": running.admin[0], "password": running.admin[1]})  # fmt: skip
    assert browser.get("/api/me").status_code == 200, "reading needs no CSRF header"

    note = f"csrf-{uuid.uuid4().hex[:6]}"
    for headers in ({}, {"X-CSRF-Token": "forged"}, {"X-CSRF-Token": other_session.json()["csrf_token"]}):
        answer = browser.post(f"/api/tickets/{tickets.info}/note", json={"body": note}, headers=headers)
        assert answer.status_code == 403 and answer.json()["error"] == "csrf_failed", answer.text
        assert browser.post("/api/logout", headers=headers).status_code == 403
    articles = admin.get(f"/api/tickets/{tickets.info}").json()["articles"]
    assert all(note not in (a.get("body") or "") for a in articles), "a refused request changed nothing"

    csrf = {"X-CSRF-Token": login.json()["csrf_token"]}
    assert browser.post(f"/api/tickets/{tickets.info}/note", json={"body": note}, headers=csrf).status_code == 200

    foreign = httpx.post(f"{running.url('gateway')}/api/login", headers={"Origin": "https://evil.example"},
                         json={"username": running.admin[0], "password": running.admin[1]}, timeout=30)  # fmt: skip
    assert foreign.status_code == 403 and foreign.json()["error"] == "bad_origin"
    browser.close()


def test_tickets_and_mails_of_other_queues_answer_exactly_like_missing_ones(
    running: Running, admin: httpx.Client, edgar: httpx.Client, tickets: Tickets
) -> None:
    before = admin.get(f"/api/tickets/{tickets.permissions}").json()
    hidden, missing = tickets.permissions, MISSING_NUMBER
    calls: list[tuple[str, str, Any]] = [
        ("GET", "/api/tickets/{}", None),
        ("GET", "/api/tickets/{}/history", None),
        ("POST", "/api/tickets/{}/lock", None),
        ("POST", "/api/tickets/{}/unlock", {"force": True}),
        ("POST", "/api/tickets/{}/note", {"body": "peek"}),
        ("POST", "/api/tickets/{}/answer", {"body": "peek"}),
        ("POST", "/api/tickets/{}/move", {"queue": "Info-en"}),
        ("POST", "/api/tickets/{}/state", {"state": "closed successful"}),
        ("POST", "/api/tickets/{}/priority", {"priority": 5}),
        ("POST", "/api/tickets/{}/owner", {"owner": "edgar"}),
        ("POST", "/api/tickets/{}/title", {"title": "peek"}),
        ("POST", "/api/tickets/{}/merge", {"into": tickets.info}),
        ("POST", "/api/tickets/{}/split", {"article_id": "x"}),
        ("POST", "/api/tickets/{}/spam", None),
        ("POST", "/api/tickets/{}/watch", None),
        ("POST", f"/api/tickets/{tickets.info}/merge", {"into": "{}"}),
    ]
    for method, template, body in calls:
        answers = [_as(edgar, method, template, body, ident) for ident in (hidden, missing)]
        assert answers[0] == answers[1], f"{method} {template}: {answers}"
        assert answers[0][0] == 404, f"{method} {template}: {answers[0]}"

    for template in ("/api/mails/{}", "/api/mails/{}/raw", "/api/mails/{}/parts/1"):
        answers = [_as(edgar, "GET", template, None, ident) for ident in (tickets.permissions_mail, MISSING_MAIL)]
        assert answers[0] == answers[1] and answers[0][0] == 404, f"{template}: {answers}"

    assert (
        edgar.get("/api/tickets", params={"queue": "Permissions"}).json()
        == edgar.get("/api/tickets", params={"queue": "No-Such-Queue"}).json()
    )
    hits = edgar.get("/api/search", params={"q": tickets.permissions_subject}).json()["items"]
    assert all(hit["number"] != hidden for hit in hits)
    after = admin.get(f"/api/tickets/{tickets.permissions}").json()
    assert after["version"] == before["version"], "nothing edgar tried changed the hidden ticket"


# --------------------------------------------------------------------------------- regressions


def test_inputs_that_once_made_a_service_answer_500(
    running: Running, admin: httpx.Client, edgar: httpx.Client, tickets: Tickets
) -> None:
    """Each of these was a 500 (or a 502 for a tickets 500) until fixed; found by schemathesis."""
    # gateway.upstream: a control character in a path value made httpx raise InvalidURL
    for path in ("/api/tickets/%01", "/api/tickets/1%1F2/history", "/api/mails/%7F", "/api/mails/%0A/raw"):
        answer = admin.get(path)
        assert answer.status_code == 404, f"{path}: {answer.status_code} {answer.text}"
    assert admin.post("/api/tickets/%02/note", json={"body": "x"}).status_code == 404

    # tickets and gateway: a page far beyond the last overflowed PostgreSQL's bigint OFFSET
    for path, params in (("/api/tickets", {}), ("/api/search", {"q": "x"}), ("/api/admin/agents", {})):
        answer = admin.get(path, params={**params, "page": 10**20})
        assert answer.status_code == 422 and answer.json()["field"] == "page", f"{path}: {answer.text}"

    # shared.service: PostgreSQL stores no NUL character; it is the caller's mistake, a 422
    nul = [
        admin.get("/api/search", params={"q": "a\x00b"}),
        admin.get("/api/tickets", params={"owner": "\x00"}),
        admin.get("/api/admin/agents/a%00b"),
        admin.post(f"/api/tickets/{tickets.info}/note", json={"body": "a\x00b"}),
        admin.post(f"/api/tickets/{tickets.info}/title", json={"title": "a\x00b"}),
        httpx.post(f"{running.url('gateway')}/api/login", json={"username": "a\x00b", "password": "x"}, timeout=30),
    ]
    for answer in nul:
        assert answer.status_code == 422, f"{answer.request.url}: {answer.status_code} {answer.text}"
        assert answer.json()["error"] in ("invalid_text", "invalid_request")

    # tickets: an answer to something that is no address was accepted, and then never sent
    answer = admin.post(f"/api/tickets/{tickets.info}/answer", json={"body": "Hello", "to": ["Æ·G"]})
    assert answer.status_code == 422 and answer.json()["field"].startswith("to"), answer.text

    # gateway.admin: an explicit null for a field that can't be null hit a NOT NULL constraint
    nulls = {"is_admin": None, "valid": None, "full_name": None}
    changed = admin.patch("/api/admin/agents/edgar", json=nulls)
    assert changed.status_code == 200, changed.text
    assert changed.json()["is_admin"] is False and changed.json()["valid"] is True
    assert edgar.get("/api/me").status_code == 200

    # shared.service: framework answers (unknown path, body that is no JSON) keep the error shape
    assert admin.get("/api/no-such-thing").json()["error"] == "not_found"
    broken = admin.post(
        f"/api/tickets/{tickets.info}/note", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert broken.status_code in (400, 422) and "error" in broken.json()
    alive(running)


# --------------------------------------------------------------------------------- schemathesis


def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    running: Running, admin: httpx.Client, tickets: Tickets, subtests: pytest.Subtests
) -> None:
    """Every operation of the gateway's OpenAPI, except the event stream and logout: 20 valid and
    20 invalid requests each (schemathesis generates them), then 20 valid ones per ticket and
    mail operation on a real ticket and mail, all as an administrator from an address of its own.
    Checks: no 5xx; status code, content type, headers and body as the OpenAPI documents them."""
    response = admin.post(
        "/api/admin/agents",
        json={"username": "fuzzer", "password": "fuzzer-password-1", "is_admin": True},
    )
    assert response.status_code == 201, response.text
    with client_from(running, FUZZER) as fuzzer:
        login = fuzzer.post("/api/login", json={"username": "fuzzer", "password": "fuzzer-password-1"})
        token = login.json()["token"]
    # Not the event stream (never ends), logout (would end the session) nor starting a rebuild of
    # every read model (load, not input: tests/tickets and the audit tests cover it).
    schema = (
        gateway_schema(running)
        .exclude(path=["/api/events", "/api/logout"])
        .exclude(method="POST", path="/api/admin/rebuild")
    )
    session = session_from(FUZZER)
    real = {"number": tickets.info, "mail_id": tickets.info_mail}
    passes: list[tuple[GenerationMode, dict[str, str] | None]] = [
        (GenerationMode.POSITIVE, None),
        (GenerationMode.NEGATIVE, None),
        (GenerationMode.POSITIVE, real),
    ]
    started, operations, took = time.monotonic(), 0, {}
    for mode, fixed in passes:
        for label, run in fuzz(schema, token=token, session=session, mode=mode, max_examples=20,
                               path_parameters=fixed):  # fmt: skip
            if fixed and not any("{" + name + "}" in label for name in fixed):
                continue
            operations += 1
            begun = time.monotonic()
            with subtests.test(msg=f"{mode.value} {'real ids ' if fixed else ''}{label}"):
                try:
                    run()
                except Unsatisfiable:
                    assert mode is GenerationMode.NEGATIVE, f"{label}: no valid input could be generated"
            took[f"{mode.value} {label}"] = time.monotonic() - begun
    slowest = ", ".join(f"{label} {s:.1f}s" for label, s in sorted(took.items(), key=lambda t: -t[1])[:5])
    print(f"schemathesis: {operations} operation passes in {time.monotonic() - started:.0f}s; slowest: {slowest}")
    assert operations > 100
    alive(running)


def _ticketed(admin: httpx.Client, mail_id: str) -> dict[str, Any] | None:
    trace = admin.get(f"/api/mails/{mail_id}").json()
    return trace if trace.get("status") == "ticketed" else None


def _as(client: httpx.Client, method: str, template: str, body: Any, ident: str) -> tuple[int, str]:
    """An answer with the identifier asked for blanked out, to compare two answers."""
    if isinstance(body, dict):
        body = {k: (ident if v == "{}" else v) for k, v in body.items()}
    answer = client.request(method, template.format(ident), json=body)
    return answer.status_code, answer.text.replace(ident, "…")
