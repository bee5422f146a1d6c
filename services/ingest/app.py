"""Ingest: every mail in (SMTP, HTTP, mailboxes), nothing lost, MailReceived out."""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.ingest.api import build_router, http_intake
from services.ingest.fastpath import MailIntake
from services.ingest.intake import accept_mail
from services.ingest.mailboxes import load_accounts
from services.ingest.pollers import MailboxPoller
from services.ingest.settings import IngestSettings
from services.ingest.smtp import start_smtp_server
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


class IngestService(Service):
    """The shared service, plus the mailbox pollers' health in /readyz."""

    def __init__(self, settings: IngestSettings) -> None:
        super().__init__(settings, migrations=MIGRATIONS)
        self.ingest_settings = settings
        self.pollers: list[MailboxPoller] = []

    async def readiness(self) -> dict[str, Any]:
        checks = await super().readiness()
        if self.ingest_settings.mailbox_readiness:
            for poller in self.pollers:
                checks[f"mailbox:{poller.account.name}"] = poller.status.check()
        return checks


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    settings = settings or IngestSettings()
    accounts = load_accounts(settings.mailboxes, settings.mailboxes_file)  # a bad list fails at start
    service = IngestService(settings)
    smtp: dict[str, asyncio.Server] = {}

    async def start_doors(svc: Service) -> None:
        accept = partial(accept_mail, svc.db, settings)
        if settings.smtp_enabled:
            smtp["server"] = await start_smtp_server(accept, settings)
        service.pollers = [
            MailboxPoller(account, svc.db, accept, backoff_cap=settings.mailbox_backoff_max_seconds)
            for account in accounts
        ]
        for poller in service.pollers:
            svc.spawn(partial(poller.run, svc.stopping), f"mailbox {poller.account.name}")

    async def close_doors(svc: Service) -> None:
        if server := smtp.pop("server", None):
            server.close()
            await server.wait_closed()

    service.on_start.append(start_doors)
    service.on_stop.append(close_doors)
    app = create_service_app(service, title="Firstline ingest", routers=[build_router(service, settings)])
    app.add_middleware(MailIntake, intake=http_intake(service, settings), limit=settings.max_mail_bytes)
    return app
