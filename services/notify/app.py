"""Notify's wiring: the ``ticket.events`` consumer, the sender loop, and the API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.notify.api import notify_router
from services.notify.handlers import HANDLED_TYPES, ticket_events_handler
from services.notify.sender import Sender
from services.notify.settings import NotifySettings
from shared.events import TOPIC_AGENT_DIRECTORY, TOPIC_TICKET_EVENTS
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: NotifySettings | None = None) -> FastAPI:
    settings = settings or NotifySettings()
    service = Service(settings, migrations=MIGRATIONS)
    # One consumer for both topics (one group join); handlers dispatch by event type.
    service.consume(
        "ticket-events", [TOPIC_TICKET_EVENTS, TOPIC_AGENT_DIRECTORY], ticket_events_handler(settings), HANDLED_TYPES
    )

    async def start_sender(svc: Service) -> None:
        sender = Sender(svc.db, settings)
        svc.spawn(lambda: sender.run(svc.stopping), "sender")

    service.on_start.append(start_sender)
    app = create_service_app(service, title="Firstline notify", routers=[notify_router(service)])
    return app
