"""Ingest's HTTP routes: the raw intake door and the raw mail store."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.domain import extract_part
from services.ingest.fastpath import Intake
from services.ingest.intake import MAILS_REFUSED, MailRefused, MailTooLarge, accept_mail
from services.ingest.settings import IngestSettings
from services.ingest.store import mail_summary, raw_bytes
from services.ingest.trust import TOKEN_HEADER, token_trusted
from shared.service import Service


def error(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail, **extra}, status_code=status)


async def read_limited(request: Request, limit: int) -> bytes:
    """The request body, refusing as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise MailTooLarge(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise MailTooLarge(size, limit)
        chunks.append(chunk)
    return b"".join(chunks)


def http_intake(service: Service, settings: IngestSettings) -> Intake:
    """The HTTP door's work once the body is read: trust by token, then :func:`accept_mail`."""
    expected_token = settings.trusted_token.get_secret_value() if settings.trusted_token else None

    async def intake(raw: bytes, token: str | None) -> tuple[str, bool]:
        trusted = "http" if token_trusted(token, expected_token) else None
        accepted = await accept_mail(service.db, settings, raw, source="http", trusted_source=trusted)
        return accepted.mail_id, accepted.duplicate

    return intake


def build_router(service: Service, settings: IngestSettings) -> APIRouter:
    router = APIRouter(tags=["mail"])
    intake = http_intake(service, settings)

    @router.post("/mail", status_code=202, summary="Accept one raw RFC 822 mail")
    async def post_mail(request: Request) -> JSONResponse:
        """The raw RFC 822 bytes as the body → ``202 {"mail_id", "duplicate"}``; ``413`` over the
        limit; ``400`` when empty. With ``X-Firstline-Trust-Token: <TRUSTED_TOKEN>`` the mail's
        control headers are honoured. (Served by ``fastpath.MailIntake`` in front of the app; this
        route documents it and answers the same where the fast path is not installed.)"""
        try:
            raw = await read_limited(request, settings.max_mail_bytes)
            mail_id, duplicate = await intake(raw, request.headers.get(TOKEN_HEADER))
        except MailTooLarge as exc:
            MAILS_REFUSED.labels("http", exc.code).inc()
            return error(413, exc.code, str(exc), limit=exc.limit)
        except MailRefused as exc:
            return error(400, exc.code, str(exc))
        return JSONResponse({"mail_id": mail_id, "duplicate": duplicate}, status_code=202)

    @router.get("/mails/{mail_id}")
    async def get_mail(mail_id: str) -> JSONResponse:
        row = await mail_summary(service.db, mail_id)
        if row is None:
            return error(404, "mail_not_found", f"no mail {mail_id}")
        summary = dict(row)
        summary["received_at"] = row["received_at"].isoformat()
        return JSONResponse({"status": "stored", **summary})

    @router.get("/mails/{mail_id}/raw")
    async def get_raw(mail_id: str) -> Response:
        raw = await raw_bytes(service.db, mail_id)
        if raw is None:
            return error(404, "mail_not_found", f"no mail {mail_id}")
        return Response(raw, media_type="message/rfc822")

    @router.get("/mails/{mail_id}/parts/{part}")
    async def get_part(mail_id: str, part: str) -> Response:
        raw = await raw_bytes(service.db, mail_id)
        if raw is None:
            return error(404, "mail_not_found", f"no mail {mail_id}")
        found = extract_part(raw, part)
        if found is None:
            return error(404, "part_not_found", f"mail {mail_id} has no part {part}")
        filename, content_type, content = found
        safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
        return Response(
            content, media_type=content_type, headers={"Content-Disposition": f'attachment; filename="{safe_name}"'}
        )

    return router
