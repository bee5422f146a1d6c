"""SMTP outcome classification, backoff, and the outbound log's state machine."""

from __future__ import annotations

import smtplib
import socket
import ssl
from datetime import UTC, datetime, timedelta

import aiosmtplib
import pytest

from services.notify.delivery import (
    TRANSITIONS,
    ErrorKind,
    InvalidTransition,
    NextAction,
    RowState,
    after_attempt,
    backoff_delays,
    check_transition,
    classify_smtp_error,
    describe_smtp_error,
    next_action,
    retry_delay,
    sending_is_stale,
    smtp_reply_code,
)

# --------------------------------------------------------------------------- classification


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (421, "retry"),
        (450, "retry"),
        (451, "retry"),
        (452, "retry"),
        (550, "permanent"),
        (552, "permanent"),
        (553, "permanent"),
        (554, "permanent"),
    ],
)
def test_reply_codes(code: int, kind: str) -> None:
    assert classify_smtp_error(code) == kind
    assert classify_smtp_error(aiosmtplib.SMTPResponseException(code, "x")) == kind
    assert classify_smtp_error(smtplib.SMTPResponseException(code, b"x")) == kind
    assert classify_smtp_error(aiosmtplib.SMTPDataError(code, "x")) == kind
    assert classify_smtp_error(smtplib.SMTPDataError(code, b"x")) == kind


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
        socket.gaierror(-3, "Temporary failure in name resolution"),
        ssl.SSLError("handshake failed"),
        aiosmtplib.SMTPConnectError("cannot connect"),
        aiosmtplib.SMTPServerDisconnected("gone"),
        aiosmtplib.SMTPReadTimeoutError("slow"),
        aiosmtplib.SMTPConnectTimeoutError("slow"),
        smtplib.SMTPServerDisconnected("gone"),
    ],
)
def test_connection_problems_are_retried(error: BaseException) -> None:
    assert classify_smtp_error(error) == "retry"


def test_greeting_with_5xx_is_permanent() -> None:
    error = aiosmtplib.SMTPConnectResponseError(554, "no service for you")
    assert classify_smtp_error(error) == "permanent"


def test_refused_recipients() -> None:
    def refused(*codes: int) -> aiosmtplib.SMTPRecipientsRefused:
        return aiosmtplib.SMTPRecipientsRefused(
            [aiosmtplib.SMTPRecipientRefused(code, "no", f"r{code}@x") for code in codes]
        )

    assert classify_smtp_error(refused(550, 553)) == "permanent"
    assert classify_smtp_error(refused(550, 450)) == "retry"
    assert classify_smtp_error(smtplib.SMTPRecipientsRefused({"a@x": (550, b"no")})) == "permanent"
    assert classify_smtp_error(smtplib.SMTPRecipientsRefused({"a@x": (451, b"later")})) == "retry"


def test_sender_refused() -> None:
    assert classify_smtp_error(aiosmtplib.SMTPSenderRefused(553, "bad sender", "me@x")) == "permanent"
    assert classify_smtp_error(smtplib.SMTPSenderRefused(451, b"later", "me@x")) == "retry"


def test_unexpected_reply_is_retried_and_unknown_errors_are_permanent() -> None:
    assert classify_smtp_error(354) == "retry"
    assert classify_smtp_error(ValueError("bad address")) == "permanent"
    assert classify_smtp_error(aiosmtplib.SMTPNotSupported("no STARTTLS")) == "permanent"


def test_reply_code_and_description() -> None:
    error = aiosmtplib.SMTPResponseException(550, "5.1.1 <x@y>: user\n unknown")
    assert smtp_reply_code(error) == 550
    assert describe_smtp_error(error) == "SMTP 550: 5.1.1 <x@y>: user unknown"
    assert describe_smtp_error(smtplib.SMTPDataError(451, b"4.3.0 try later")) == "SMTP 451: 4.3.0 try later"
    assert describe_smtp_error(ConnectionRefusedError(111, "Connection refused")) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    assert smtp_reply_code(ConnectionRefusedError(111, "refused")) is None
    assert describe_smtp_error(421) == "SMTP 421"


# --------------------------------------------------------------------------- backoff


def test_backoff_without_jitter_is_exponential_and_capped() -> None:
    assert backoff_delays(6, base=30, cap=3600) == [30, 60, 120, 240, 480]
    assert backoff_delays(10, base=30, cap=300) == [30, 60, 120, 240, 300, 300, 300, 300, 300]
    assert backoff_delays(1, base=30, cap=300) == []


def test_backoff_with_seeded_jitter_is_reproducible_and_bounded() -> None:
    first = backoff_delays(8, base=10, cap=500, jitter=0.5, seed="row-1")
    assert first == backoff_delays(8, base=10, cap=500, jitter=0.5, seed="row-1")
    assert first != backoff_delays(8, base=10, cap=500, jitter=0.5, seed="row-2")
    plain = backoff_delays(8, base=10, cap=500)
    assert all(0.5 * p <= j <= p for j, p in zip(first, plain, strict=True))


def test_retry_delay_agrees_with_the_schedule() -> None:
    schedule = backoff_delays(5, base=2, cap=100, jitter=1.0, seed=42)
    assert [retry_delay(n, base=2, cap=100, jitter=1.0, seed=42) for n in range(1, 5)] == schedule


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert retry_delay(10_000, base=30, cap=3600) == 3600


def test_retry_delay_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, base=1, cap=1)
    with pytest.raises(ValueError):
        retry_delay(1, base=-1, cap=1)
    with pytest.raises(ValueError):
        retry_delay(1, base=1, cap=1, jitter=1.5)


def test_backoff_needs_one_attempt() -> None:
    with pytest.raises(ValueError):
        backoff_delays(0)


# --------------------------------------------------------------------------- outbound log


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("pending", "sending"),
        ("pending", "failed"),
        ("sending", "sent"),
        ("sending", "pending"),
        ("sending", "failed"),
    ],
)
def test_allowed_transitions(current: RowState, new: RowState) -> None:
    check_transition(current, new)


@pytest.mark.parametrize(
    ("current", "new"),
    [
        ("pending", "sent"),
        ("sent", "pending"),
        ("sent", "sending"),
        ("failed", "pending"),
        ("sent", "failed"),
    ],
)
def test_forbidden_transitions(current: RowState, new: RowState) -> None:
    with pytest.raises(InvalidTransition, match=f"from {current} to {new}"):
        check_transition(current, new)


def test_terminal_states_have_no_way_out() -> None:
    assert TRANSITIONS["sent"] == TRANSITIONS["failed"] == frozenset()


@pytest.mark.parametrize(
    ("state", "attempts", "last_error", "kind"),
    [
        ("pending", 0, None, "send"),
        ("pending", 2, "retry", "send"),
        ("pending", 5, "retry", "send"),
        ("pending", 6, "retry", "fail"),
        ("pending", 1, "permanent", "fail"),
        ("sending", 1, None, "resend"),
        ("sending", 3, "retry", "resend"),
        ("sending", 6, "retry", "fail"),
        ("sent", 1, None, "done"),
        ("failed", 6, "retry", "done"),
        ("failed", 1, "permanent", "done"),
    ],
)
def test_next_action(state: RowState, attempts: int, last_error: ErrorKind | None, kind: str) -> None:
    assert next_action(state, attempts, last_error, 6).kind == kind


def test_interrupted_last_attempt_says_it_may_have_been_delivered() -> None:
    action = next_action("sending", 6, None, 6)
    assert action == NextAction(
        "fail", "gave up after 6 attempts; the last one was interrupted and may have been delivered"
    )


@pytest.mark.parametrize(
    ("attempts", "error", "state"),
    [
        (1, None, "sent"),
        (1, "retry", "pending"),
        (5, "retry", "pending"),
        (6, "retry", "failed"),
        (1, "permanent", "failed"),
    ],
)
def test_after_attempt(attempts: int, error: ErrorKind | None, state: RowState) -> None:
    assert after_attempt(attempts, error, 6) == state


def simulate(replies: list[int | BaseException], max_attempts: int = 4) -> tuple[RowState, int]:
    """Drive one row through the state machine with a scripted relay; returns (state, attempts)."""
    state: RowState = "pending"
    attempts = 0
    last: ErrorKind | None = None
    script = iter(replies)
    while (action := next_action(state, attempts, last, max_attempts)).kind in ("send", "resend"):
        check_transition(state, "sending")
        attempts += 1
        reply = next(script)
        last = None if reply == 250 else classify_smtp_error(reply)
        new = after_attempt(attempts, last, max_attempts)
        check_transition("sending", new)
        state = new
    if action.kind == "fail":
        check_transition(state, "failed")
        state = "failed"
    return state, attempts


def test_retry_on_451_then_success() -> None:
    assert simulate([451, 250]) == ("sent", 2)


def test_550_fails_at_once() -> None:
    assert simulate([550, 250]) == ("failed", 1)


def test_gives_up_after_max_attempts() -> None:
    assert simulate([451, ConnectionRefusedError(), TimeoutError(), 421, 250]) == ("failed", 4)


def test_stale_claims() -> None:
    claimed = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    lease = timedelta(minutes=5)
    assert not sending_is_stale(claimed, claimed + timedelta(minutes=4), lease)
    assert sending_is_stale(claimed, claimed + timedelta(minutes=6), lease)
