"""The bare ASGI handler for POST /mail: same answers as the route, other requests passed on."""

from __future__ import annotations

from typing import Any

import orjson

from services.ingest.fastpath import MailIntake
from services.ingest.intake import EmptyMail


class Recorder:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def __call__(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int:
        return int(self.sent[0]["status"])

    @property
    def json(self) -> Any:
        return orjson.loads(self.sent[1]["body"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.sent[0]["headers"])


def scope(path: str = "/mail", method: str = "POST", headers: dict[str, str] | None = None) -> dict[str, Any]:
    encoded = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return {"type": "http", "path": path, "method": method, "headers": encoded}


def body(*chunks: bytes, disconnect: bool = False) -> Any:
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if disconnect:
        messages[-1]["more_body"] = True
        messages.append({"type": "http.disconnect"})

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


async def intake(raw: bytes, token: str | None) -> tuple[str, bool]:
    if not raw.strip():
        raise EmptyMail("the mail is empty")
    return f"id-{len(raw)}-{token}", False


async def passed_on(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "passed on", "path": scope["path"]})


async def test_post_mail_is_answered_here_with_the_correlation_id() -> None:
    handler, sent = MailIntake(passed_on, intake, limit=100), Recorder()
    await handler(scope(headers={"X-Correlation-ID": "c-1", "X-Firstline-Trust-Token": "t"}), body(b"ab", b"c"), sent)
    assert (sent.status, sent.json) == (202, {"mail_id": "id-3-t", "duplicate": False})
    assert sent.headers[b"x-correlation-id"] == b"c-1"


async def test_refusals() -> None:
    handler = MailIntake(passed_on, intake, limit=10)
    declared, streamed, empty = Recorder(), Recorder(), Recorder()
    await handler(scope(headers={"Content-Length": "11"}), body(b"x" * 11), declared)
    await handler(scope(), body(b"x" * 6, b"x" * 6), streamed)
    await handler(scope(), body(b"  "), empty)
    assert (declared.status, declared.json["error"], declared.json["limit"]) == (413, "mail_too_large", 10)
    assert streamed.status == 413
    assert (empty.status, empty.json["error"]) == (400, "empty_mail")


async def test_a_client_gone_mid_body_gets_nothing_and_nothing_is_stored() -> None:
    calls: list[bytes] = []

    async def recording(raw: bytes, token: str | None) -> tuple[str, bool]:
        calls.append(raw)
        return "x", False

    sent = Recorder()
    await MailIntake(passed_on, recording, limit=100)(scope(), body(b"half a ma", disconnect=True), sent)
    assert sent.sent == [] and calls == []


async def test_everything_else_goes_to_the_app() -> None:
    handler = MailIntake(passed_on, intake, limit=10)
    for request in (scope("/mails/1", "GET"), scope("/mail", "GET"), {"type": "lifespan", "path": "/"}):
        sent = Recorder()
        await handler(request, body(b""), sent)
        assert sent.sent[0]["type"] == "passed on"
