"""The SMTP relay connection of one sender worker (aiosmtplib), kept open between mails.

:meth:`RelayConnection.send` never raises for a delivery problem: it returns a
:class:`~services.notify.outbound.SendResult` classified by ``services.notify.delivery``
(4xx and connection trouble: retry; 5xx: permanent). After any error the connection is
dropped and the next mail opens a fresh one, so a half-finished SMTP transaction never
leaks into the next mail.
"""

from __future__ import annotations

import logging
import time

import aiosmtplib

from services.notify.delivery import classify_smtp_error, decisive_reply_code, describe_smtp_error
from services.notify.metrics import SEND_SECONDS
from services.notify.outbound import SendResult
from services.notify.settings import NotifySettings

logger = logging.getLogger(__name__)


class RelayConnection:
    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self._client: aiosmtplib.SMTP | None = None
        self._last_used = 0.0

    def _new_client(self) -> aiosmtplib.SMTP:
        s = self.settings
        return aiosmtplib.SMTP(
            hostname=s.smtp_relay_host,
            port=s.smtp_relay_port,
            username=s.smtp_username,
            password=s.smtp_secret() if s.smtp_username else None,
            local_hostname=s.smtp_helo_name or s.mail_domain,
            timeout=s.smtp_timeout_seconds,
            use_tls=s.smtp_tls,
            start_tls=s.smtp_starttls,
            validate_certs=s.smtp_validate_certs,
            cert_bundle=s.smtp_ca_file,
        )

    async def _connected(self) -> aiosmtplib.SMTP:
        idle = time.monotonic() - self._last_used
        if self._client is not None and (not self._client.is_connected or idle > self.settings.smtp_idle_seconds):
            await self.close()
        if self._client is None:
            client = self._new_client()
            await client.connect()
            self._client = client
        return self._client

    async def send(self, envelope_from: str, recipients: list[str], message: bytes, *, smtputf8: bool) -> SendResult:
        started = time.perf_counter()
        try:
            client = await self._connected()
            refused, response = await client.sendmail(
                envelope_from, recipients, message, mail_options=["SMTPUTF8"] if smtputf8 else None
            )
        except Exception as exc:  # every failure is classified: retry or permanent, never lost
            await self.close()
            return _failure(exc)
        finally:
            SEND_SECONDS.observe(time.perf_counter() - started)
            self._last_used = time.monotonic()
        return SendResult(
            response=" ".join(f"250 {response}".split()),
            refused={rcpt: f"{r.code} {r.message}" for rcpt, r in refused.items()},
        )

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is None or not client.is_connected:
            return
        try:
            await client.quit(timeout=min(5.0, self.settings.smtp_timeout_seconds))
        except Exception:  # closing a connection that is already broken: nothing to report
            client.close()


def _failure(exc: BaseException) -> SendResult:
    kind = classify_smtp_error(exc)
    reason = describe_smtp_error(exc)
    logger.info("relay: %s (%s)", reason, kind)
    return SendResult(error_kind=kind, smtp_code=decisive_reply_code(exc), error=reason)
