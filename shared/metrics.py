"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_APPENDED = Counter("firstline_events_appended_total", "Events appended to an event store", ["type"])
OUTBOX_PUBLISHED = Counter("firstline_outbox_published_total", "Outbox rows published to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("firstline_outbox_pending", "Outbox rows not yet published")
OUTBOX_REPUBLISHED = Counter(
    "firstline_outbox_republish_total", "Times the relay found the broker had lost data and republished"
)
HANDLER_SECONDS = Histogram(
    "firstline_handler_seconds",
    "Time to handle one consumed message, effects committed",
    ["consumer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
MESSAGES_CONSUMED = Counter("firstline_messages_consumed_total", "Messages consumed", ["consumer", "outcome"])
CONSUMER_LAG = Gauge("firstline_consumer_lag", "Messages behind the partition end", ["consumer", "topic", "partition"])
DLQ_MESSAGES = Counter("firstline_dlq_messages_total", "Messages sent to a dead-letter topic", ["consumer", "topic"])
HANDLER_RETRIES = Counter(
    "firstline_handler_retries_total", "Handler attempts that failed and were retried", ["consumer"]
)
