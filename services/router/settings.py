"""The router's settings (environment variables, upper-cased field names)."""

from __future__ import annotations

from services.router.domain import DEFAULT_SPAM_THRESHOLD
from shared.settings import ServiceSettings


class RouterSettings(ServiceSettings):
    service_name: str = "router"
    http_port: int = 8002
    # Where queues are confirmed when the router has not seen their QueueConfigured yet
    # (empty: only the router's own copy of the queues counts).
    tickets_url: str = "http://127.0.0.1:8003"
    # Where a bounce's delivery-status part (Status, Diagnostic-Code) is fetched from; empty: the
    # bounce's text is read instead.
    ingest_url: str = "http://127.0.0.1:8001"

    default_queue: str = "Raw"
    junk_queue: str = "Junk"
    # The classifier's P(Junk) at or above which a new mail goes to Junk (cross-validated on the
    # corpus' training split: bench/router.py). Upstream spam headers have their own threshold:
    spam_threshold: float = DEFAULT_SPAM_THRESHOLD
    spam_header_score: float = 5.0  # X-Spam-Score / score= at or above this (or the stated required=)
    classifier_threshold: float = 0.8
    trust_spam_headers: bool = True
    follow_up_by_body: bool = False
    ticket_hook: str = "Ticket#"
    ticket_hook_divider: str = ""
    # This installation's two-digit system id; numbers of other systems are not looked up.
    ticket_system_id: str | None = None

    # How stale a replica's configuration and classifier may be, at most.
    state_refresh_seconds: float = 0.5
    housekeeping_seconds: float = 300.0
    # An agent's move labels the ticket's first mail only while the ticket is this fresh.
    learning_window_hours: float = 72.0
    learning_max_mails: int = 100_000
    classifier_log_keep: int = 10_000
