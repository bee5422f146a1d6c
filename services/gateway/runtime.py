"""The gateway's per-process parts, started and stopped with the service's lifespan."""

from __future__ import annotations

import asyncio
import logging
import secrets

from services.gateway import store
from services.gateway.accounts import Accounts
from services.gateway.desk import Desk
from services.gateway.live import LiveHub
from services.gateway.profiles import run_publisher
from services.gateway.settings import GatewaySettings
from services.gateway.upstream import Upstream
from shared.events import TOPIC_AGENT_DIRECTORY
from shared.service import Service, ensure_service_topics

logger = logging.getLogger(__name__)

_MIN_SECRET_BYTES = 32
_SWEEP_SECONDS = 900.0


class Gateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.upstream = Upstream(settings)
        self._accounts: Accounts | None = None
        self._desk: Desk | None = None
        self._live: LiveHub | None = None
        self._service: Service | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def accounts(self) -> Accounts:
        assert self._accounts is not None, "gateway not started"
        return self._accounts

    @property
    def desk(self) -> Desk:
        assert self._desk is not None, "gateway not started"
        return self._desk

    @property
    def live(self) -> LiveHub:
        assert self._live is not None, "gateway not started"
        return self._live

    @property
    def service(self) -> Service:
        assert self._service is not None, "gateway not started"
        return self._service

    async def start(self, service: Service) -> None:
        self._service = service
        self._loop = asyncio.get_running_loop()
        pool = service.db
        self._accounts = Accounts(self.settings, pool, await self._csrf_secret(service))
        await self._accounts.ensure_first_admin()
        await store.delete_stale_sessions(pool, self.settings.session_idle_seconds)
        await self.upstream.start()
        self._desk = Desk(self.settings, pool, self.upstream)
        self._live = LiveHub(self.settings, pool)
        service.spawn(lambda: self._live.run(service.stopping), "live tail")
        service.spawn(lambda: self._sweep_sessions(service), "session sweep")
        service.spawn(lambda: self._agent_directory(service), "agent directory")

    def end_live_streams(self) -> None:
        """From a signal handler: end the open event streams on the event loop, soon."""
        if self._live is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._live.close)

    async def stop(self, service: Service) -> None:
        if self._live is not None:
            self._live.close()
        await self.upstream.close()

    async def _sweep_sessions(self, service: Service) -> None:
        """Delete expired and idle sessions now and then (they are refused anyway)."""
        while not service.stopping.is_set():
            try:
                await asyncio.wait_for(service.stopping.wait(), timeout=_SWEEP_SECONDS)
            except TimeoutError:
                removed = await store.delete_stale_sessions(service.db, self.settings.session_idle_seconds)
                if removed:
                    logger.info("removed %d ended sessions", removed)

    async def _agent_directory(self, service: Service) -> None:
        """Publish agent profiles (profiles.py); the topic first, so consumers can join it."""
        await ensure_service_topics(self.settings, [TOPIC_AGENT_DIRECTORY])
        await run_publisher(service.db, self.settings, service.stopping)

    async def _csrf_secret(self, service: Service) -> bytes:
        if self.settings.gateway_secret:
            secret = self.settings.gateway_secret.encode()
            if len(secret) < _MIN_SECRET_BYTES:
                raise ValueError(f"GATEWAY_SECRET must be at least {_MIN_SECRET_BYTES} bytes")
            return secret
        return await store.shared_secret(service.db, "csrf", secrets.token_bytes(_MIN_SECRET_BYTES))
