"""Kafka consumers: route each mail of ``mail.received``; keep the index and learn from
``ticket.events``. Each handler runs inside the consumer's transaction (shared.bus)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import httpx
from prometheus_client import Counter

from services.router import store
from services.router.bounce import delivery_status_part
from services.router.classifier import tokenize_mail
from services.router.domain import (
    SnapshotIndex,
    addresses_in,
    deciding_step,
    lookup_keys,
    relabel_plan,
    route,
    thread_key,
)
from services.router.settings import RouterSettings
from services.router.state import RouterState
from shared.envelope import Envelope, make_envelope
from shared.events import (
    TOPIC_TICKET_ROUTED,
    AnswerSent,
    ArticleAdded,
    AutoReplyRequested,
    EventData,
    MailReceived,
    QueueConfigured,
    StateChanged,
    TicketCreated,
    TicketMarkedSpam,
    TicketMerged,
    TicketMoved,
    TicketRouted,
    TicketUnmerged,
)
from shared.outbox import enqueue
from shared.service import Service

logger = logging.getLogger(__name__)

ACTOR = "system:router"
ROUTING_DECISIONS = Counter(
    "firstline_router_decisions_total",
    "Routing decisions, by action, queue and the step that settled them",
    ["action", "queue", "step"],
)
TRAINING_LABELS = Counter(
    "firstline_router_training_labels_total", "Agents' labels the classifier learned from", ["kind"]
)

MAX_DSN_BYTES = 64_000
TicketHandler = Callable[[asyncpg.Connection, EventData, Envelope], Awaitable[None]]


class RouterHandlers:
    def __init__(self, service: Service, state: RouterState, settings: RouterSettings) -> None:
        self.service = service
        self.state = state
        self.settings = settings
        self._ticket_handlers: dict[str, TicketHandler] = {
            TicketCreated.TYPE: self._created,
            ArticleAdded.TYPE: self._article,
            AnswerSent.TYPE: self._answer,
            AutoReplyRequested.TYPE: self._auto_reply,
            StateChanged.TYPE: self._state,
            TicketMoved.TYPE: self._moved,
            TicketMerged.TYPE: self._merged,
            TicketUnmerged.TYPE: self._unmerged,
            QueueConfigured.TYPE: self._queue,
            TicketMarkedSpam.TYPE: self._spam,
        }

    # ------------------------------------------------------------------ mail.received

    async def handle_mail(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Decide, record the decision (once per mail), and publish one TicketRouted."""
        received = envelope.payload()
        assert isinstance(received, MailReceived)
        routed, index, tokens = await self._decide(conn, received)
        out = make_envelope(
            routed,
            stream_id=received.mail_id,
            actor=ACTOR,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
        )
        if not await store.insert_decision(conn, routed, out.event_id, tokens):
            logger.info("mail %s was already routed; redelivery ignored", received.mail_id)
            return
        await enqueue(conn, self.settings.topic(TOPIC_TICKET_ROUTED), [out], key=thread_key(routed, index))
        ROUTING_DECISIONS.labels(routed.action, routed.queue, deciding_step(routed)).inc()

    async def _decide(
        self, conn: asyncpg.Connection, received: MailReceived
    ) -> tuple[TicketRouted, SnapshotIndex, list[str] | None]:
        """The decision, the index it was made with, and (for a new ticket) the mail's tokens,
        kept so that an agent's later move can label them."""
        await self.state.refresh(self.service.db)
        config, classifier = self.state.config, self.state.classifier
        keys = lookup_keys(received.mail, config)
        index = await store.load_index(conn, keys)
        # Without keys a mail cannot be a follow-up: its tokens will be needed, so make them once.
        tokens = None if keys else tokenize_mail(received.mail, classifier.max_tokens)
        dsn = await self._delivery_status(received)
        routed = route(received.mail, received.mail_id, received.envelope_to, config, index, classifier, tokens, dsn)
        if routed.action != "new":
            return routed, index, None
        return routed, index, tokens if tokens is not None else tokenize_mail(received.mail, classifier.max_tokens)

    async def _delivery_status(self, received: MailReceived) -> str | None:
        """The text of a bounce's ``message/delivery-status`` part, from ingest (best effort: the
        bounce's own text is read when ingest cannot say)."""
        part = delivery_status_part(received.mail)
        if part is None or not self.settings.ingest_url:
            return None
        path = f"/mails/{received.mail_id}/parts/{part.part}"
        try:
            async with httpx.AsyncClient(base_url=self.settings.ingest_url, timeout=2.0) as client:
                response = await client.get(path, headers={"X-Actor": ACTOR})
        except httpx.HTTPError as exc:
            logger.warning("delivery status of bounce %s not fetched: %s", received.mail_id, exc)
            return None
        if response.status_code != 200:
            logger.warning("delivery status of bounce %s: ingest said %d", received.mail_id, response.status_code)
            return None
        return response.content[:MAX_DSN_BYTES].decode("utf-8", "replace")

    # ------------------------------------------------------------------ ticket.events

    @property
    def ticket_event_types(self) -> frozenset[str]:
        """The ticket events the router keeps or learns from; the consumer passes over the rest."""
        return frozenset(self._ticket_handlers)

    async def handle_ticket_event(self, conn: asyncpg.Connection, envelope: Envelope) -> None:
        """Keep the index (and learn); events the router has no use for are skipped."""
        handler = self._ticket_handlers.get(envelope.type)
        if handler is not None:
            await handler(conn, envelope.payload(), envelope)

    async def _created(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, TicketCreated)
        await store.create_ticket(conn, e, envelope.occurred_at)
        await store.add_participants(conn, e.ticket_id, addresses_in([e.customer_email]))

    async def _article(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, ArticleAdded)
        await store.add_message_id(conn, e.message_id, e.ticket_id)
        await store.add_participants(conn, e.ticket_id, addresses_in([e.from_, *e.to, *e.cc]))

    async def _answer(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, AnswerSent)
        await store.add_message_id(conn, e.message_id, e.ticket_id)
        await store.add_participants(conn, e.ticket_id, addresses_in([*e.to, *e.cc]))

    async def _auto_reply(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, AutoReplyRequested)
        await store.add_message_id(conn, e.message_id, e.ticket_id)

    async def _state(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, StateChanged)
        await store.set_ticket_field(conn, e.ticket_id, "state", e.to_state)

    async def _merged(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, TicketMerged)
        await store.set_merged(conn, e.ticket_id, e.into_ticket_id, e.into_ticket_number)

    async def _unmerged(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, TicketUnmerged)
        await store.clear_merged(conn, e.ticket_id, e.from_ticket_id)

    async def _queue(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, QueueConfigured)
        await store.upsert_queue(conn, e)

    async def _moved(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        """A move is the agents' label for the ticket's first mail (while it is fresh)."""
        assert isinstance(e, TicketMoved)
        await store.set_ticket_field(conn, e.ticket_id, "queue", e.to_queue)
        mails = await store.learning_mails(conn, ticket_id=e.ticket_id)
        await self._learn(conn, mails, e.to_queue, f"TicketMoved {e.from_queue} → {e.to_queue} ({envelope.actor})")
        if mails:
            TRAINING_LABELS.labels("moved").inc()

    async def _spam(self, conn: asyncpg.Connection, e: EventData, envelope: Envelope) -> None:
        assert isinstance(e, TicketMarkedSpam)
        mail_ids = [m for m in dict.fromkeys([e.mail_id, *e.mail_ids]) if m]
        mails = await store.learning_mails(conn, ticket_id=e.ticket_id, mail_ids=mail_ids)
        await self._learn(conn, mails, self.settings.junk_queue, f"TicketMarkedSpam ({envelope.actor})")
        if mails:
            TRAINING_LABELS.labels("spam").inc()

    async def _learn(self, conn: asyncpg.Connection, mails: Sequence[asyncpg.Record], label: str, reason: str) -> None:
        for mail in mails:
            untrain, train = relabel_plan(mail["trained_as"], label)
            if untrain is not None:
                await store.train(conn, mail["tokens"], untrain, -1, mail_id=mail["mail_id"], reason=reason)
            if train is not None:
                await store.train(conn, mail["tokens"], train, +1, mail_id=mail["mail_id"], reason=reason)
                await store.set_trained_as(conn, mail["mail_id"], train)
