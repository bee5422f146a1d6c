"""Settings from environment variables only (pydantic-settings).

Every service subclasses :class:`ServiceSettings` and adds its own fields; the names are the
upper-cased field names (``DATABASE_URL``, ``KAFKA_BOOTSTRAP_SERVERS``, ``HTTP_PORT`` ...).
"""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    service_name: str = "firstline"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/firstline"
    db_pool_min: int = 1
    db_pool_max: int = 10
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_topic_prefix: str = ""
    kafka_topic_partitions: int = 4
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    log_level: str = "INFO"
    relay_interval_seconds: float = 0.05
    relay_batch_size: int = 500
    broker_check_interval_seconds: float = 5.0
    relay_drain_seconds: float = 5.0  # on a graceful stop, publish what is pending for up to this long
    consumer_max_records: int = 500
    consumer_transaction_seconds: float = 0.05  # a consumer commits about this often (row locks, latency)
    consumer_fetch_wait_ms: int = 50
    consumer_max_attempts: int = 5
    consumer_backoff_seconds: float = 0.2
    mail_domain: str = "firstline.example"

    def topic(self, name: str) -> str:
        """The real Kafka topic for a catalogue topic name (a prefix isolates tenants and tests)."""
        return f"{self.kafka_topic_prefix}{name}"
