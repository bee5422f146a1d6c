"""Wiring: the router service, its consumers, its API, and its housekeeping."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiokafka.errors import KafkaError
from fastapi import FastAPI

from services.router import store
from services.router.api import build_router, install_error_handlers
from services.router.configuration import Configurator
from services.router.handlers import RouterHandlers
from services.router.settings import RouterSettings
from services.router.state import RouterState
from shared.events import TOPIC_MAIL_RECEIVED, TOPIC_ROUTER_CONFIG, TOPIC_TICKET_EVENTS, TOPIC_TICKET_ROUTED
from shared.service import Service, ensure_service_topics
from shared.service import create_app as create_service_app

MIGRATIONS = Path(__file__).parent / "migrations"
logger = logging.getLogger(__name__)


def create_app(settings: RouterSettings | None = None) -> FastAPI:
    settings = settings or RouterSettings()
    service = Service(settings, migrations=MIGRATIONS)
    state = RouterState(settings)
    handlers = RouterHandlers(service, state, settings)
    service.consume("mail", [TOPIC_MAIL_RECEIVED], handlers.handle_mail)
    service.consume("tickets", [TOPIC_TICKET_EVENTS], handlers.handle_ticket_event, handlers.ticket_event_types)

    async def start(service: Service) -> None:
        await state.refresh(service.db, force=True)
        service.spawn(lambda: create_topics(service, settings), "create topics")
        service.spawn(lambda: housekeeping(service, settings), "housekeeping")

    async def state_loaded() -> tuple[str, str]:
        loaded = state.config_version >= 0 and state.classifier_version >= 0
        return "routing state", "ok" if loaded else "configuration or classifier not loaded"

    service.on_start.append(start)
    service.readiness_checks.append(state_loaded)
    api = build_router(service, state, Configurator(service, state, settings))
    app = create_service_app(service, title="Firstline router", routers=[api])
    install_error_handlers(app)
    return app


async def create_topics(service: Service, settings: RouterSettings) -> None:
    """Create the topics the router writes to, retrying while the broker is away (the service
    runs meanwhile: decisions wait in the outbox)."""
    while not service.stopping.is_set():
        try:
            await ensure_service_topics(settings, [TOPIC_TICKET_ROUTED, TOPIC_ROUTER_CONFIG])
            return
        except (KafkaError, OSError) as exc:
            logger.warning("cannot create topics yet: %r", exc)
        await _pause(service, 1.0)


async def housekeeping(service: Service, settings: RouterSettings) -> None:
    """Keep the learning tables bounded: forget old first mails and old classifier log entries."""
    while not service.stopping.is_set():
        try:
            pruned = await store.prune_learning_mails(
                service.db, settings.learning_window_hours, settings.learning_max_mails
            )
            logged = await store.prune_classifier_log(service.db, settings.classifier_log_keep)
            if pruned or logged:
                logger.info("housekeeping: %d learning mails and %d log entries pruned", pruned, logged)
        except Exception:
            logger.exception("housekeeping failed; trying again later")
        await _pause(service, settings.housekeeping_seconds)


async def _pause(service: Service, seconds: float) -> None:
    try:
        await asyncio.wait_for(service.stopping.wait(), timeout=seconds)
    except TimeoutError:
        pass
