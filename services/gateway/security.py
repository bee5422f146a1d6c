"""Passwords, session tokens, CSRF tokens and the login rate limiter. No database here.

Sessions: a login creates an opaque token (``new_session_token``). The browser gets it in the
``firstline_session`` cookie (HttpOnly, SameSite=Lax, Secure behind TLS); API clients get the
same kind of token in the login response for ``Authorization: Bearer``. Only its SHA-256 digest
(``token_digest``) is stored, so a leaked sessions table does not hand out live sessions, and a
session is revoked by deleting its row.

CSRF: *signed double-submit*. At login the gateway sets a second, JavaScript-readable cookie
``firstline_csrf`` holding ``nonce.HMAC(secret, session digest, nonce)``; the UI copies it into
the ``X-CSRF-Token`` header of every non-GET request. The server recomputes the HMAC from the
session the request authenticates with, so a token is useless with any other session and cannot
be forged without the server secret (a plain double-submit cookie can be planted by a sibling
subdomain). Only requests authenticated by the session cookie need it: a bearer token is never
sent by a browser on its own. ``/api/login`` itself has no session yet; the gateway should
check its ``Origin`` header instead.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SESSION_COOKIE = "firstline_session"
CSRF_COOKIE = "firstline_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SESSION_TOKEN_BYTES = 32
_CSRF_NONCE_BYTES = 16
_MIN_SECRET_BYTES = 32

# argon2-cffi's defaults are RFC 9106's "low memory" profile (argon2id, t=3, m=64 MiB, p=4).
DEFAULT_HASHER = PasswordHasher()


# --------------------------------------------------------------------------- passwords


def hash_password(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> str:
    return hasher.hash(password)


def verify_password(stored_hash: str, password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """True if ``password`` matches; False on mismatch or a malformed stored hash (never raises)."""
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """Whether a (verified) hash was made with weaker parameters than ``hasher`` uses now.

    After a successful login with such a hash, store ``hash_password(password)`` in its place.
    """
    try:
        return hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


def verify_unknown_user(password: str, hasher: PasswordHasher = DEFAULT_HASHER) -> bool:
    """Spend the time of a real verification, for a username that does not exist.

    Without it, "no such user" answers measurably faster than "wrong password", which tells an
    attacker which usernames exist. Always returns False.
    """
    verify_password(_dummy_hash(hasher), password, hasher)
    return False


@cache
def _dummy_hash(hasher: PasswordHasher) -> str:
    return hasher.hash(secrets.token_urlsafe(16))


# --------------------------------------------------------------------------- sessions


def new_session_token() -> str:
    """An opaque, unguessable session (and bearer) token: 256 bits, URL- and cookie-safe."""
    return secrets.token_urlsafe(_SESSION_TOKEN_BYTES)


def token_digest(token: str) -> str:
    """What is stored and looked up instead of the token itself (hex SHA-256)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- CSRF


def new_csrf_token(secret: bytes, session_digest: str) -> str:
    """A CSRF token bound to one session: ``nonce.mac``, safe to put in a cookie."""
    _check_secret(secret)
    nonce = secrets.token_urlsafe(_CSRF_NONCE_BYTES)
    return f"{nonce}.{_csrf_mac(secret, session_digest, nonce)}"


def verify_csrf_token(secret: bytes, session_digest: str, token: str | None) -> bool:
    """True only for a token made by :func:`new_csrf_token` for this session with this secret."""
    _check_secret(secret)
    if not token or token.count(".") != 1:
        return False
    nonce, mac = token.split(".")
    if not nonce or not mac:
        return False
    return hmac.compare_digest(mac, _csrf_mac(secret, session_digest, nonce))


def csrf_required(method: str, authenticated_by_cookie: bool) -> bool:
    """Unsafe methods on a cookie-authenticated request need the CSRF header; bearer calls don't."""
    return authenticated_by_cookie and method.upper() not in SAFE_METHODS


def _csrf_mac(secret: bytes, session_digest: str, nonce: str) -> str:
    message = f"firstline-csrf\x00{session_digest}\x00{nonce}".encode()
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _check_secret(secret: bytes) -> None:
    if len(secret) < _MIN_SECRET_BYTES:
        raise ValueError(f"the CSRF secret must be at least {_MIN_SECRET_BYTES} bytes")


# --------------------------------------------------------------------------- login rate limit


class SlidingWindow:
    """Counts hits per key over the last ``window`` seconds; bounded in memory.

    Not thread-safe: one instance per process, used from the event loop.
    """

    def __init__(self, limit: int, window: float, clock: Callable[[], float], max_keys: int) -> None:
        if limit < 1 or window <= 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be >= 1 and window > 0")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_keys = max_keys
        self._hits: dict[object, deque[float]] = {}

    def retry_after(self, key: object) -> int | None:
        """Seconds until ``key`` is below its limit again, or None if it is below it now."""
        now = self._clock()
        hits = self._pruned(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return max(1, math.ceil(hits[-self.limit] + self.window - now))

    def hit(self, key: object) -> None:
        now = self._clock()
        hits = self._pruned(key, now) or deque()
        hits.append(now)
        self._hits.pop(key, None)
        self._hits[key] = hits  # re-insert: the dict's order is least recently hit first
        while len(self._hits) > self._max_keys:
            del self._hits[next(iter(self._hits))]

    def clear(self, key: object) -> None:
        self._hits.pop(key, None)

    def __len__(self) -> int:
        return len(self._hits)

    def _pruned(self, key: object, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits


class LoginRateLimiter:
    """Refuses logins after too many recent failures, per (username, IP) and per IP.

    Defaults: 5 failures for one username from one address in 5 minutes lock that pair out
    until the oldest failure is 5 minutes old (a sliding window, answered with 429 and
    ``Retry-After``); 50 failures from one address across usernames (password spraying) lock
    the address. Refused attempts are not counted, so a lockout ends on time. A success clears
    the pair's failures, not the address's. In memory and per process: with several gateway
    workers each counts on its own.

    Usage: ``retry_after(user, ip)`` before checking the password (non-None → 429), then
    ``record_failure`` or ``record_success``.
    """

    def __init__(
        self,
        max_failures: int = 5,
        window_seconds: float = 300.0,
        *,
        ip_max_failures: int = 50,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self._pairs = SlidingWindow(max_failures, window_seconds, clock, max_keys)
        self._ips = SlidingWindow(ip_max_failures, window_seconds, clock, max_keys)

    def retry_after(self, username: str, ip: str) -> int | None:
        waits = [w for w in (self._pairs.retry_after(_pair(username, ip)), self._ips.retry_after(ip)) if w]
        return max(waits) if waits else None

    def record_failure(self, username: str, ip: str) -> None:
        self._pairs.hit(_pair(username, ip))
        self._ips.hit(ip)

    def record_success(self, username: str, ip: str) -> None:
        self._pairs.clear(_pair(username, ip))


def _pair(username: str, ip: str) -> tuple[str, str]:
    return (username.strip().casefold(), ip)
