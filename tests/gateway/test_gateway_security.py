"""Passwords, tokens, CSRF and the login rate limiter."""

from __future__ import annotations

import secrets

import pytest
from argon2 import PasswordHasher

from services.gateway.security import (
    LoginRateLimiter,
    csrf_required,
    hash_password,
    needs_rehash,
    new_csrf_token,
    new_session_token,
    token_digest,
    verify_csrf_token,
    verify_password,
    verify_unknown_user,
)

# Cheap parameters keep the suite fast; the default hasher is exercised once below.
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
STRONGER = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1)
SECRET = secrets.token_bytes(32)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# --------------------------------------------------------------------------- passwords


def test_hash_and_verify() -> None:
    stored = hash_password("correct horse", FAST)
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    assert verify_password(stored, "correct horse", FAST)
    assert not verify_password(stored, "correct horsE", FAST)


def test_hashes_are_salted() -> None:
    assert hash_password("same", FAST) != hash_password("same", FAST)


def test_default_hasher_round_trip() -> None:
    stored = hash_password("s3cret-passphrase")
    assert verify_password(stored, "s3cret-passphrase")
    assert not needs_rehash(stored)


def test_malformed_hash_never_verifies() -> None:
    assert not verify_password("not-a-hash", "anything", FAST)
    assert not verify_password("", "anything", FAST)
    assert needs_rehash("not-a-hash", FAST)


def test_rehash_when_parameters_grow() -> None:
    old = hash_password("pw", FAST)
    assert not needs_rehash(old, FAST)
    assert needs_rehash(old, STRONGER)
    assert verify_password(old, "pw", STRONGER)  # still verifies; the caller then rehashes
    assert not needs_rehash(hash_password("pw", STRONGER), STRONGER)


def test_unknown_user_never_verifies() -> None:
    assert verify_unknown_user("whatever", FAST) is False


# --------------------------------------------------------------------------- tokens


def test_session_tokens_are_random_and_stored_as_digest() -> None:
    tokens = {new_session_token() for _ in range(100)}
    assert len(tokens) == 100
    token = tokens.pop()
    assert len(token) >= 43
    digest = token_digest(token)
    assert len(digest) == 64 and token not in digest
    assert token_digest(token) == digest


# --------------------------------------------------------------------------- CSRF


def test_csrf_token_verifies_for_its_session() -> None:
    session = token_digest(new_session_token())
    token = new_csrf_token(SECRET, session)
    assert verify_csrf_token(SECRET, session, token)
    assert new_csrf_token(SECRET, session) != token  # fresh nonce each time


@pytest.mark.parametrize(
    "forge",
    [
        lambda t: None,
        lambda t: "",
        lambda t: "garbage",
        lambda t: t.split(".")[0],
        lambda t: t.split(".")[0] + ".",
        lambda t: "." + t.split(".")[1],
        lambda t: t + "x",
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),
        lambda t: "othernonce." + t.split(".")[1],
        lambda t: t + ".extra",
    ],
)
def test_csrf_rejects_forged_tokens(forge) -> None:  # type: ignore[no-untyped-def]
    session = token_digest(new_session_token())
    assert not verify_csrf_token(SECRET, session, forge(new_csrf_token(SECRET, session)))


def test_csrf_token_is_bound_to_session_and_secret() -> None:
    session, other = token_digest(new_session_token()), token_digest(new_session_token())
    token = new_csrf_token(SECRET, session)
    assert not verify_csrf_token(SECRET, other, token)
    assert not verify_csrf_token(secrets.token_bytes(32), session, token)


def test_csrf_refuses_weak_secret() -> None:
    with pytest.raises(ValueError):
        new_csrf_token(b"short", "session")


def test_csrf_required_only_for_unsafe_cookie_requests() -> None:
    assert csrf_required("POST", authenticated_by_cookie=True)
    assert csrf_required("delete", authenticated_by_cookie=True)
    assert not csrf_required("GET", authenticated_by_cookie=True)
    assert not csrf_required("HEAD", authenticated_by_cookie=True)
    assert not csrf_required("POST", authenticated_by_cookie=False)


# --------------------------------------------------------------------------- rate limiter


def test_five_failures_lock_out_with_retry_after() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(clock=clock)
    for _ in range(4):
        assert limiter.retry_after("alice", "10.0.0.1") is None
        limiter.record_failure("alice", "10.0.0.1")
        clock.advance(10)
    assert limiter.retry_after("alice", "10.0.0.1") is None
    limiter.record_failure("alice", "10.0.0.1")
    # first failure at t=1000, now t=1040: the window frees a slot at t=1300.
    assert limiter.retry_after("alice", "10.0.0.1") == 260
    assert limiter.retry_after("ALICE ", "10.0.0.1") == 260  # usernames are case-insensitive


def test_lockout_is_per_username_and_ip() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(clock=clock)
    for _ in range(5):
        limiter.record_failure("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.1")
    assert limiter.retry_after("alice", "10.0.0.2") is None
    assert limiter.retry_after("bob", "10.0.0.1") is None


def test_window_slides() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(max_failures=3, window_seconds=60, clock=clock)
    for _ in range(3):
        limiter.record_failure("alice", "ip")
        clock.advance(20)
    # failures at 0, 20, 40; now 60: the first has just left the window.
    assert limiter.retry_after("alice", "ip") is None
    limiter.record_failure("alice", "ip")
    assert limiter.retry_after("alice", "ip") == 20
    clock.advance(19.5)
    assert limiter.retry_after("alice", "ip") == 1
    clock.advance(0.5)
    assert limiter.retry_after("alice", "ip") is None


def test_success_clears_the_pair() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(clock=clock)
    for _ in range(4):
        limiter.record_failure("alice", "ip")
    limiter.record_success("alice", "ip")
    limiter.record_failure("alice", "ip")
    assert limiter.retry_after("alice", "ip") is None


def test_password_spraying_locks_the_address() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(ip_max_failures=10, clock=clock)
    for n in range(10):
        limiter.record_failure(f"user{n}", "10.6.6.6")
    assert limiter.retry_after("someone-else", "10.6.6.6") == 300
    assert limiter.retry_after("someone-else", "10.0.0.1") is None
    clock.advance(300)
    assert limiter.retry_after("someone-else", "10.6.6.6") is None


def test_memory_is_bounded() -> None:
    clock = FakeClock()
    limiter = LoginRateLimiter(clock=clock, max_keys=100)
    for n in range(1000):
        limiter.record_failure(f"user{n}", f"10.0.{n // 256}.{n % 256}")
    assert len(limiter._pairs) <= 100 and len(limiter._ips) <= 100
