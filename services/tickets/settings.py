"""The tickets service's settings (environment variables, see ``shared.settings``)."""

from __future__ import annotations

from shared.settings import ServiceSettings


class TicketsSettings(ServiceSettings):
    service_name: str = "tickets"
    http_port: int = 8003
    ticket_system_id: int = 10  # the two digits after the date in ticket numbers (OTRS SystemID)
    ticket_number_block: int = 20  # counter values a process reserves at once (1: no gaps on restart)
    snapshot_every: int = 50  # take a snapshot when a stream crosses a multiple of this many events
    command_attempts: int = 3  # a command decided again after a version conflict, at most this often
    junk_queue: str = "Junk"
    timer_interval_seconds: float = 10.0  # unlock timeouts, pending times, count compaction (0: off)
    timer_batch_size: int = 200
    default_page_size: int = 25
    max_page_size: int = 500
    max_merge_hops: int = 5  # a follow-up to a merged ticket follows at most this many merges
    max_answer_attachment_bytes: int = 20 * 1024 * 1024  # an answer's attachments together, at most
