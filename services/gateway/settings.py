"""The gateway's settings (environment variables, upper-cased field names)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    service_name: str = "gateway"
    http_port: int = 8080

    # Internal services (docs/services.md, "Ports and URLs").
    tickets_url: str = "http://127.0.0.1:8003"
    router_url: str = "http://127.0.0.1:8002"
    ingest_url: str = "http://127.0.0.1:8001"
    notify_url: str = "http://127.0.0.1:8004"
    upstream_connect_timeout_seconds: float = 2.0
    upstream_timeout_seconds: float = 15.0
    upstream_max_connections: int = 100

    # The first administrator, ensured at every start (ARCHITECTURE.md, "first admin").
    firstline_admin_user: str = "admin"
    firstline_admin_password: str | None = None

    # Sessions: absolute lifetime and idle timeout (OTRS: SessionMaxTime, SessionMaxIdleTime).
    session_max_age_seconds: int = 16 * 3600
    session_idle_seconds: int = 2 * 3600
    session_touch_seconds: int = 60
    # None: Secure cookies when the request came over https (or X-Forwarded-Proto says so).
    cookie_secure: bool | None = None
    # Secret for CSRF tokens (>= 32 bytes). Unset: generated once and kept in the database, so
    # every replica and every restart shares it.
    gateway_secret: str | None = None
    # Origins allowed to POST /api/login besides the gateway's own (e.g. behind a proxy).
    allowed_origins: list[str] = []

    # Login rate limit (per username+address, and per address).
    login_max_failures: int = 5
    login_window_seconds: float = 300.0
    login_ip_max_failures: int = 50

    # argon2id parameters (argon2-cffi's defaults: RFC 9106 low-memory profile).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4

    # Live updates.
    sse_heartbeat_seconds: float = 15.0
    sse_queue_size: int = 1000

    # How long a read of the queue → group table (from QueueConfigured) is reused.
    directory_cache_seconds: float = 1.0

    # The queue "spam" moves tickets to (needs move_into there, as a move would).
    junk_queue: str = "Junk"
