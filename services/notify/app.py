"""Notify's wiring: the ``ticket.events`` consumer, the sender loop, and the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.notify.api import notify_router
from services.notify.handlers import ticket_events_handler
from services.notify.sender import Sender
from services.notify.settings import NotifySettings
from shared.events import TOPIC_TICKET_EVENTS
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    service = Service(settings, migrations=MIGRATIONS)
    service.consume("ticket-events", [TOPIC_TICKET_EVENTS], ticket_events_handler(settings))

    async def start_sender(svc: Service) -> None:
        sender = Sender(svc.db, settings)
        svc.spawn(sender.run(svc.stopping), "sender")

    service.on_start.append(start_sender)
    app = create_service_app(service, title="Firstline notify", routers=[notify_router(service)])
    app.add_exception_handler(RequestValidationError, invalid_request)  # type: ignore[arg-type]
    return app


async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A 422 in the project's error shape, naming the first offending field."""
    problems = exc.errors()
    first = problems[0] if problems else {}
    field = ".".join(str(part) for part in first.get("loc", ())[1:])
    return JSONResponse(
        {"error": "invalid_request", "detail": f"{field}: {first.get('msg', 'invalid')}", "field": field},
        status_code=422,
    )
