"""Flood control for the SMTP door: pure bookkeeping with an injected clock."""

from __future__ import annotations

from collections import deque


class ClientRateLimiter:
    """At most ``per_minute`` accepted mails per client in any 60-second window."""

    def __init__(self, per_minute: int, max_clients: int = 10_000) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self._seen: dict[str, deque[float]] = {}

    def allow(self, client: str, now: float) -> bool:
        window = self._seen.setdefault(client, deque())
        while window and window[0] <= now - 60:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        if len(self._seen) > self.max_clients:
            self._forget_idle(now)
        return True

    def _forget_idle(self, now: float) -> None:
        for client in [c for c, w in self._seen.items() if not w or w[-1] <= now - 60]:
            del self._seen[client]


class ConnectionLimiter:
    """Open connections in all and per client; over either limit a client gets 421."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self._open: dict[str, int] = {}

    def open(self, client: str) -> bool:
        if sum(self._open.values()) >= self.total or self._open.get(client, 0) >= self.per_client:
            return False
        self._open[client] = self._open.get(client, 0) + 1
        return True

    def close(self, client: str) -> None:
        left = self._open.get(client, 0) - 1
        if left > 0:
            self._open[client] = left
        else:
            self._open.pop(client, None)
