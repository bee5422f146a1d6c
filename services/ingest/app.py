"""Ingest: every mail in (SMTP, HTTP, mailboxes), nothing lost, MailReceived out."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from services.ingest.api import build_router
from services.ingest.intake import accept_mail
from services.ingest.settings import IngestSettings
from services.ingest.smtp import start_smtp_server
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    service = Service(settings, migrations=MIGRATIONS)
    smtp: dict[str, asyncio.Server] = {}

    async def start_doors(svc: Service) -> None:
        if settings.smtp_enabled:
            accept = partial(accept_mail, svc.db, svc.store, settings)
            smtp["server"] = await start_smtp_server(accept, settings)

    async def close_doors(svc: Service) -> None:
        if server := smtp.pop("server", None):
            server.close()
            await server.wait_closed()

    service.on_start.append(start_doors)
    service.on_stop.append(close_doors)
    return create_service_app(service, title="Firstline ingest", routers=[build_router(service, settings)])
