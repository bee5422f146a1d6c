"""Notify's Prometheus metrics (the shared ones come from ``shared.metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

MAILS_SENT = Counter("firstline_notify_mails_sent_total", "Mails the relay accepted", ["purpose"])
MAILS_FAILED = Counter(
    "firstline_notify_mails_failed_total", "Mails given up on (DeliveryFailed)", ["purpose", "permanent"]
)
AUTO_REPLIES_SUPPRESSED = Counter(
    "firstline_notify_auto_replies_suppressed_total", "Auto responses not sent (loop protection, limit, ...)"
)
SEND_ATTEMPTS = Counter(
    "firstline_notify_send_attempts_total", "Delivery attempts by outcome", ["outcome"]
)  # outcome: sent, retry, permanent
RESENDS = Counter(
    "firstline_notify_resends_total", "Rows found in 'sending' after their lease and sent again (same Message-ID)"
)
SEND_SECONDS = Histogram(
    "firstline_notify_send_seconds",
    "Time of one delivery attempt at the relay",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
