"""The SMTP door (aiosmtpd), running in the service's event loop.

``250`` is answered only after :func:`accept_mail` committed the raw bytes and the outbox
row. Mail for domains we don't serve gets ``550`` (not an open relay), too many recipients
``452``, a mail over the size limit ``552`` (aiosmtpd enforces the SIZE limit it advertises),
a client sending too fast ``451`` and one with too many connections ``421``: slowed, never
silently dropped. A client that disconnects mid-DATA leaves nothing behind. Clients in
``TRUSTED_CLIENTS`` may give control headers (``services.ingest.trust``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from services.ingest.intake import MAILS_REFUSED, Accepted, MailRefused
from services.ingest.limits import ClientRateLimiter, ConnectionLimiter
from services.ingest.settings import IngestSettings
from services.ingest.trust import client_trusted, parse_networks

logger = logging.getLogger(__name__)

Accept = Callable[..., Awaitable[Accepted]]


class IntakeHandler:
    def __init__(self, accept: Accept, settings: IngestSettings) -> None:
        self.accept = accept
        self.settings = settings
        self.domains = settings.accepted_domain_set()
        self.rate = ClientRateLimiter(settings.client_rate_per_minute)
        self.trusted_networks = parse_networks(settings.trusted_clients)

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain not in self.domains:
            MAILS_REFUSED.labels("smtp", "relay_denied").inc()
            return f"550 5.7.1 <{address}>: relaying denied, this server only accepts mail for its own addresses"
        if len(envelope.rcpt_tos) >= self.settings.max_recipients:
            MAILS_REFUSED.labels("smtp", "too_many_recipients").inc()
            return f"452 4.5.3 Too many recipients (at most {self.settings.max_recipients} per mail)"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        client = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        if not self.rate.allow(client, time.monotonic()):
            MAILS_REFUSED.labels("smtp", "rate_limited").inc()
            return "451 4.7.1 You are sending too fast; try again later"
        raw = envelope.original_content or b""
        trusted = f"smtp:{client}" if client_trusted(client, self.trusted_networks) else None
        try:
            accepted = await self.accept(
                raw,
                source="smtp",
                envelope_from=envelope.mail_from,
                envelope_to=list(envelope.rcpt_tos),
                trusted_source=trusted,
            )
        except MailRefused as refused:
            return f"554 5.6.0 {refused}"
        except Exception:
            logger.exception("smtp: could not store a mail from %s", client)
            return "451 4.3.0 Temporary failure storing your mail; try again later"
        return f"250 2.0.0 OK queued as {accepted.mail_id}"


class LimitedSMTP(SMTP):
    """aiosmtpd's SMTP session, refusing connections over the configured limits with 421.

    Lines longer than RFC 5321's 1000 octets are accepted (real mail has them; refusing would
    lose it); the size limit still bounds the whole message.
    """

    line_length_limit = 1024 * 1024

    def __init__(self, *args: Any, connections: ConnectionLimiter, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.connections = connections
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        if not self.connections.open(client):
            MAILS_REFUSED.labels("smtp", "too_many_connections").inc()
            transport.write(b"421 4.7.0 Too many connections from you; try again later\r\n")  # type: ignore[attr-defined]
            transport.close()
            return
        self._client = client
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is not None:
            self.connections.close(self._client)
            self._client = None
            super().connection_lost(exc)


async def start_smtp_server(accept: Accept, settings: IngestSettings) -> asyncio.Server:
    handler = IntakeHandler(accept, settings)
    connections = ConnectionLimiter(settings.max_connections, settings.max_connections_per_client)

    def session() -> LimitedSMTP:
        return LimitedSMTP(
            handler,
            connections=connections,
            data_size_limit=settings.max_mail_bytes,
            hostname=settings.smtp_hostname,
            ident="Firstline ingest",
            enable_SMTPUTF8=True,
        )

    loop = asyncio.get_running_loop()
    server = await loop.create_server(session, host=settings.smtp_host, port=settings.smtp_port)
    logger.info("SMTP intake listening on %s:%s", settings.smtp_host, settings.smtp_port)
    return server
