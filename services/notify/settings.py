"""Notify's settings: the SMTP relay, retries, the sender's leases, auto-reply limits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.notify.delivery import DEFAULT_BASE_DELAY, DEFAULT_MAX_ATTEMPTS, DEFAULT_MAX_DELAY, attempt_budget
from services.notify.domain import DEFAULT_DAILY_LIMIT
from shared.settings import ServiceSettings


class NotifySettings(ServiceSettings):
    service_name: str = "notify"
    http_port: int = 8004

    smtp_relay_host: str = "127.0.0.1"
    smtp_relay_port: int = 25
    smtp_starttls: bool | None = None
    """True: require STARTTLS; False: never; unset: use it when the relay offers it."""
    smtp_tls: bool = False
    """Implicit TLS from the first byte (port 465 style)."""
    smtp_validate_certs: bool = True
    smtp_ca_file: str | None = None
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_password_file: Path | None = None
    smtp_helo_name: str = ""
    """EHLO name; empty means the mail domain (never a DNS lookup of our own host name)."""
    smtp_timeout_seconds: float = 30.0
    smtp_connections: int = 4
    """Sender workers, each with its own relay connection (kept open between mails)."""
    smtp_idle_seconds: float = 20.0
    """A connection idle longer than this is reopened rather than reused."""
    smtp_max_attempts: int = DEFAULT_MAX_ATTEMPTS
    smtp_backoff_seconds: float = DEFAULT_BASE_DELAY
    smtp_backoff_max_seconds: float = DEFAULT_MAX_DELAY
    smtp_backoff_jitter: float = 0.2

    sender_batch_size: int = 5
    sender_poll_seconds: float = 1.0
    sending_lease_seconds: float = 600.0
    """How long a claimed row belongs to its worker; after that it counts as left behind."""

    auto_reply_daily_limit: int = DEFAULT_DAILY_LIMIT
    auto_reply_null_sender: bool = True
    """Send auto replies with ``MAIL FROM:<>`` (RFC 3834 3.3), so bounces of them go nowhere."""
    own_addresses: Annotated[list[str], NoDecode] = []
    """Addresses that are ours besides the queues' system addresses (comma-separated in env)."""
    notice_sender: str = ""
    """From of agent notices; empty means ``notifications@<mail domain>``."""
    junk_queue: str = "Junk"
    """New tickets in this queue (spam) cause no new_ticket notice."""
    ingest_url: str = "http://127.0.0.1:8001"
    """Where answers' attachments are fetched (``GET /mails/{id}/parts/{part}``); empty: never."""
    ingest_timeout_seconds: float = 30.0
    """Per attachment fetch; a timeout is retried like ingest being down."""

    @field_validator("own_addresses", mode="before")
    @classmethod
    def _split_addresses(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _lease_outlasts_an_attempt(self) -> NotifySettings:
        if self.sending_lease_seconds <= attempt_budget(self.smtp_timeout_seconds, 1):
            raise ValueError(
                f"SENDING_LEASE_SECONDS ({self.sending_lease_seconds}) must exceed one attempt"
                f" ({attempt_budget(self.smtp_timeout_seconds, 1)} s at SMTP_TIMEOUT_SECONDS"
                f" {self.smtp_timeout_seconds})"
            )
        if self.smtp_tls and self.smtp_starttls:
            raise ValueError("SMTP_TLS and SMTP_STARTTLS exclude each other")
        return self

    def smtp_secret(self) -> str | None:
        """The relay password: ``SMTP_PASSWORD``, else the contents of ``SMTP_PASSWORD_FILE``."""
        if self.smtp_password is not None:
            return self.smtp_password.get_secret_value()
        if self.smtp_password_file is not None:
            return self.smtp_password_file.read_text().strip()
        return None

    def notices_from(self) -> str:
        return self.notice_sender or f"notifications@{self.mail_domain}"

    def configured_own_addresses(self) -> set[str]:
        return {address.lower() for address in self.own_addresses} | {self.notices_from().lower()}
