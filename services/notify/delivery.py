"""Delivery to the SMTP relay: classifying failures, backing off, and the outbound log's states.

The outbound log
----------------
One row per mail, keyed by (causing event id, purpose), e.g. ``(AnswerSent's event_id,
"answer")`` or ``(event_id, "notice.<agent>")``. The row holds the rendered bytes and their
Message-ID, written once when the row is created. A redelivered event hits the unique key and
creates nothing: that is what makes notify's consumer idempotent. States::

    pending ──claim (attempts += 1, committed before talking to the relay)──► sending
    sending ──250──────────────────────────────────────────────────────────► sent
    sending ──4xx / connection error, attempts < max──► pending (with a next-attempt time)
    sending ──5xx, or retryable with attempts == max──► failed
    pending ──cannot be composed (e.g. no valid recipient)────────────────► failed

``sent`` and ``failed`` are written in the same transaction as the ``AnswerDelivered`` /
``DeliveryFailed`` event (through the outbox), so the event exists exactly when the state does.

Delivery guarantee: at least once, deduplicated by Message-ID
-----------------------------------------------------------
A worker that dies between the relay's ``250`` and the commit of ``sent`` leaves the row in
``sending``. Nothing local can say whether the relay took the mail: SMTP has no "did you get
message X?" command. So recovery checks what can be checked, that the row's claim has expired
(:func:`sending_is_stale`: its worker is gone, not merely slow), and then treats ``sending`` as
*possibly sent*: it sends again the **same bytes with the same Message-ID**
(:func:`next_action` answers ``"resend"``).

Why not at most once (mark ``sent`` before talking to the relay, or fail rows found in
``sending``)? Then every crash in that window loses a customer's answer silently, or reports a
failure for a mail that probably arrived; the agent believes the customer was answered and the
customer waits. A duplicate is the cheaper error, and a bounded one: the window is milliseconds
per crash; the copy has the same Message-ID, which Gmail and most mail clients collapse and which
threading ignores; and if it reaches Firstline itself (Cc to a system address) ingest's sha256
and the router's Message-ID index see the same mail. ``attempts`` grows when a row is claimed, so
even a mail that crashes the worker every time is tried at most ``max_attempts`` times.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

ErrorKind = Literal["retry", "permanent"]
RowState = Literal["pending", "sending", "sent", "failed"]
ActionKind = Literal["send", "resend", "fail", "done"]

DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_BASE_DELAY = 30.0
DEFAULT_MAX_DELAY = 3600.0


# --------------------------------------------------------------------------- SMTP outcomes


def _recipient_codes(error: BaseException) -> list[int]:
    """Reply codes of a "recipients refused" error: aiosmtplib (list) or smtplib (dict)."""
    recipients = getattr(error, "recipients", None)
    if isinstance(recipients, Mapping):
        codes = [value[0] for value in recipients.values() if isinstance(value, tuple)]
    elif isinstance(recipients, list | tuple):
        codes = [getattr(item, "code", None) for item in recipients]
    else:
        return []
    return [code for code in codes if isinstance(code, int)]


def smtp_reply_code(error: BaseException | int) -> int | None:
    """The SMTP reply code carried by ``error`` (aiosmtplib ``code``, smtplib ``smtp_code``)."""
    if isinstance(error, int):
        return error
    for attribute in ("smtp_code", "code"):
        code = getattr(error, attribute, None)
        if isinstance(code, int) and 200 <= code <= 599:
            return code
    return None


def classify_smtp_error(error: BaseException | int) -> ErrorKind:
    """``"permanent"`` for 5xx, ``"retry"`` for 4xx, connection errors and timeouts.

    When all recipients were refused, any 4xx among them makes the whole attempt a retry. A reply
    code outside 4xx/5xx (a confused server) is retried. An exception that is neither an SMTP
    reply nor an OS-level error (connection refused, reset, DNS, TLS, timeout) is permanent: it
    will not go away by waiting, and a failure the agent sees beats a silent retry loop.
    RFC 5321 4.5.3.1.10 asks to treat a 552 to RCPT as 452; Firstline sends one mail to a few
    recipients, so a 552 means "message too big" and stays permanent.
    """
    codes = [] if isinstance(error, int) else _recipient_codes(error)
    if codes:
        return "retry" if any(400 <= code < 500 for code in codes) else "permanent"
    code = smtp_reply_code(error)
    if code is not None:
        return "permanent" if 500 <= code <= 599 else "retry"
    if isinstance(error, OSError):  # ConnectionError, TimeoutError, socket.gaierror, ssl.SSLError
        return "retry"
    return "permanent"


def decisive_reply_code(error: BaseException | int) -> int | None:
    """The reply code behind :func:`classify_smtp_error`'s verdict, for ``DeliveryFailed.smtp_code``:
    for refused recipients the first 4xx (it made the attempt a retry), else the first code."""
    codes = [] if isinstance(error, int) else _recipient_codes(error)
    if codes:
        return next((code for code in codes if 400 <= code < 500), codes[0])
    return smtp_reply_code(error)


def _refusals(error: BaseException) -> list[str]:
    """``"a@b: SMTP 550 no such user"`` per refused recipient (aiosmtplib's list form)."""
    recipients = getattr(error, "recipients", None)
    if not isinstance(recipients, list | tuple):
        return []
    return [f"{getattr(item, 'recipient', '?')}: {describe_smtp_error(item)}" for item in recipients]


def describe_smtp_error(error: BaseException | int) -> str:
    """A one-line reason for the outbound log and ``DeliveryFailed.reason``."""
    if isinstance(error, int):
        return f"SMTP {error}"
    if refusals := _refusals(error):
        return "all recipients refused: " + "; ".join(refusals)
    code = smtp_reply_code(error)
    message = getattr(error, "message", None) or getattr(error, "smtp_error", None) or str(error)
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    detail = " ".join(str(message).split())
    prefix = f"SMTP {code}" if code is not None else type(error).__name__
    return f"{prefix}: {detail}" if detail else prefix


# --------------------------------------------------------------------------- backoff


def retry_delay(attempt: int, *, base: float, cap: float, jitter: float = 0.0, seed: str | int | None = None) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): ``base * 2**(attempt-1)``,
    at most ``cap``, then reduced by up to ``jitter`` (0..1) of itself.

    Jitter spreads the retries of many mails that failed together; with a ``seed`` (e.g. the
    outbound row's key) it is reproducible, so tests and a restarted worker agree.
    """
    if attempt < 1 or base < 0 or cap < 0 or not 0.0 <= jitter <= 1.0:
        raise ValueError("need attempt >= 1, base >= 0, cap >= 0 and 0 <= jitter <= 1")
    delay = min(cap, base * 2.0 ** min(attempt - 1, 64))
    if jitter == 0.0:
        return delay
    rng = random.Random(f"{seed}:{attempt}") if seed is not None else random.Random()
    return delay * (1.0 - jitter * rng.random())


def backoff_delays(
    max_attempts: int,
    base: float = DEFAULT_BASE_DELAY,
    cap: float = DEFAULT_MAX_DELAY,
    *,
    jitter: float = 0.0,
    seed: str | int | None = None,
) -> list[float]:
    """The waits between ``max_attempts`` attempts (so ``max_attempts - 1`` of them)."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    return [retry_delay(attempt, base=base, cap=cap, jitter=jitter, seed=seed) for attempt in range(1, max_attempts)]


# --------------------------------------------------------------------------- the outbound log

TRANSITIONS: Mapping[RowState, frozenset[RowState]] = {
    "pending": frozenset({"sending", "failed"}),
    "sending": frozenset({"sent", "pending", "failed"}),
    "sent": frozenset(),
    "failed": frozenset(),
}


class InvalidTransition(ValueError):
    """A state change the outbound log does not allow (e.g. ``sent`` → ``pending``)."""


def check_transition(current: RowState, new: RowState) -> None:
    if new not in TRANSITIONS[current]:
        raise InvalidTransition(f"outbound row cannot go from {current} to {new}")


@dataclass(frozen=True)
class NextAction:
    """What to do with a row: ``send``, ``resend`` (possibly sent already: same bytes, same
    Message-ID), ``fail`` (write ``failed`` and ``DeliveryFailed``) or ``done`` (nothing)."""

    kind: ActionKind
    reason: str


def next_action(row_state: RowState, attempts: int, last_error_kind: ErrorKind | None, max_attempts: int) -> NextAction:
    """The action for a row a worker picked up: a due ``pending`` row, or a ``sending`` row whose
    claim has expired (:func:`sending_is_stale`), i.e. one left behind by a crashed worker."""
    if row_state in ("sent", "failed"):
        return NextAction("done", f"already {row_state}")
    if last_error_kind == "permanent":
        return NextAction("fail", "permanent error on the last attempt")
    if attempts >= max_attempts:
        reason = f"gave up after {attempts} attempts"
        if row_state == "sending":
            reason += "; the last one was interrupted and may have been delivered"
        return NextAction("fail", reason)
    if row_state == "sending":
        return NextAction("resend", f"attempt {attempts} was interrupted; resending the same message")
    if attempts == 0:
        return NextAction("send", "first attempt")
    return NextAction("send", f"attempt {attempts + 1} of {max_attempts}")


def after_attempt(attempts: int, error_kind: ErrorKind | None, max_attempts: int) -> RowState:
    """The state after attempt number ``attempts`` ended: ``None`` means the relay said 250."""
    if error_kind is None:
        return "sent"
    if error_kind == "retry" and attempts < max_attempts:
        return "pending"
    return "failed"


SMTP_STEPS_PER_MAIL = 5
"""Connect, greeting/EHLO (and STARTTLS, AUTH), MAIL, DATA, end of data: each bounded by the
SMTP timeout; plus one RCPT per recipient."""


def attempt_budget(timeout: float, recipients: int) -> float:
    """The longest one delivery attempt can take when every SMTP step runs to its timeout.

    A worker starts an attempt only if its claim has at least this much lease left, so a live
    worker never sends a row whose lease another worker may already have taken over.
    """
    return timeout * (SMTP_STEPS_PER_MAIL + max(recipients, 1))


def sending_is_stale(claimed_at: datetime, now: datetime, lease: timedelta) -> bool:
    """A ``sending`` row whose claim is older than the lease belongs to a worker that is gone.

    The lease must exceed the longest possible attempt (connect + DATA timeouts), or a slow but
    live worker's mail would be sent twice.
    """
    return now - claimed_at > lease
