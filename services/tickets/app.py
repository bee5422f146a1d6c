"""Wiring of the tickets service: event store, consumers, timers, HTTP API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.tickets.api import build_router, install_error_handlers
from services.tickets.audit_api import build_audit_router
from services.tickets.commands import Tickets
from services.tickets.handlers import delivery_handler, routed_handler
from services.tickets.jobs import RebuildJobs
from services.tickets.settings import TicketsSettings
from services.tickets.timers import run_timers
from shared.events import TOPIC_DELIVERY_EVENTS, TOPIC_TICKET_ROUTED
from shared.eventstore import EventStore
from shared.service import Service
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"


def _event_store(service: Service) -> EventStore:
    assert service.store is not None, "service not started"
    return service.store


def create_app(settings: TicketsSettings | None = None) -> FastAPI:
    settings = settings or TicketsSettings()
    service = Service(settings, migrations=MIGRATIONS)
    tickets = Tickets(settings, lambda: service.db, lambda: _event_store(service))
    service.consume("routed", [TOPIC_TICKET_ROUTED], routed_handler(tickets))
    service.consume("delivery", [TOPIC_DELIVERY_EVENTS], delivery_handler(tickets))

    async def start_timers(svc: Service) -> None:
        if settings.timer_interval_seconds > 0:
            svc.spawn(lambda: run_timers(tickets, svc.stopping), "timers")

    jobs = RebuildJobs(lambda: service.db)

    async def stop_jobs(svc: Service) -> None:
        await jobs.stop()

    async def close_counter(svc: Service) -> None:
        await tickets.counter.close()

    service.on_start.append(start_timers)
    service.on_stop += [stop_jobs, close_counter]
    routers = [build_router(tickets), build_audit_router(tickets, jobs)]
    app = create_service_app(service, title="Firstline tickets", routers=routers)
    install_error_handlers(app)
    app.state.tickets = tickets
    app.state.rebuild_jobs = jobs
    return app
