"""Ingest's settings (environment variables only).

Mailbox accounts come from ``MAILBOXES`` (a JSON list) and/or ``MAILBOXES_FILE`` (a file holding
the same JSON list); see :class:`services.ingest.mailboxes.MailboxAccount` for the fields.
Trusted sources of control headers: ``TRUSTED_CLIENTS`` (SMTP client CIDRs, comma separated) and
``TRUSTED_TOKEN`` (``POST /mail`` with ``X-Firstline-Trust-Token``); see ``services.ingest.trust``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from services.ingest.domain import MAX_MAIL_BYTES_DEFAULT
from services.ingest.mailboxes import MailboxAccount
from shared.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    service_name: str = "ingest"
    http_port: int = 8001
    smtp_enabled: bool = True
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_hostname: str = "firstline.example"
    max_mail_bytes: int = MAX_MAIL_BYTES_DEFAULT
    max_recipients: int = 100
    max_connections: int = 200
    max_connections_per_client: int = 20
    client_rate_per_minute: int = 600  # mails accepted per client IP per minute before 451
    # Recipient domains we accept mail for (not an open relay); comma separated.
    accepted_domains: str = "firstline.example"
    own_domains: str = "firstline.example"
    trusted_clients: str = ""
    trusted_token: SecretStr | None = None
    mailboxes: list[MailboxAccount] = []
    mailboxes_file: Path | None = None
    # A failing mailbox shows in /readyz; with False it fails only its metrics and logs, so a
    # bad mailbox password cannot take the SMTP and HTTP doors out of a load balancer.
    mailbox_readiness: bool = True
    mailbox_backoff_max_seconds: float = 900.0

    def accepted_domain_set(self) -> frozenset[str]:
        return _csv(self.accepted_domains)

    def own_domain_set(self) -> frozenset[str]:
        return _csv(self.own_domains)


def _csv(value: str) -> frozenset[str]:
    return frozenset(part.strip().lower() for part in value.split(",") if part.strip())
