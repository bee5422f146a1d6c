"""Wiring: the gateway service (accounts, desk, live updates), its API and the agent UI."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.gateway.api import routers
from services.gateway.api.ui import STATIC
from services.gateway.directory import DIRECTORY_EVENTS, handle_ticket_event
from services.gateway.errors import document_api_errors, install_error_handlers
from services.gateway.runtime import Gateway
from services.gateway.settings import GatewaySettings
from services.gateway.web import SecurityHeaders
from shared.events import TOPIC_TICKET_EVENTS
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    service = Service(settings, migrations=MIGRATIONS)  # relay: agent.directory (profiles.py)
    service.consume("directory", [TOPIC_TICKET_EVENTS], handle_ticket_event, DIRECTORY_EVENTS)
    gateway = Gateway(settings)
    service.on_start.append(gateway.start)
    service.on_stop.append(gateway.stop)
    app = create_service_app(service, title="Firstline gateway", routers=routers())
    app.state.gateway = gateway
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    install_error_handlers(app)
    document_api_errors(app)
    app.add_middleware(SecurityHeaders)
    return app
