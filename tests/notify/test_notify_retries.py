"""Delivery trouble against a real SMTP relay: relay down, 451 then 250, 550, and a crash
between the relay's 250 and the commit (at least once: same bytes, same Message-ID)."""

from __future__ import annotations

import asyncio
import uuid

import aiosmtplib
import asyncpg
import httpx
import pytest

from services.notify import store
from services.notify.app import create_app
from services.notify.domain import compose_answer, default_queue_settings
from services.notify.outbound import PURPOSE_ANSWER, NewOutbound
from services.notify.settings import NotifySettings
from shared.devinfra import free_port
from shared.envelope import new_id, utcnow
from shared.events import AnswerDelivered, DeliveryFailed
from shared.settings import ServiceSettings
from tests.conftest import eventually, serving
from tests.notify.kit import DOMAIN, Relay, TopicReader, answer_sent, envelope_of, notify_settings, publish, reading

pytestmark = pytest.mark.timeout(240)

MAX_ATTEMPTS = 40


async def test_retries_permanent_failures_and_crash_recovery(settings: ServiceSettings) -> None:
    relay = Relay(free_port())  # not started: nothing listens on its port yet
    notify = notify_settings(settings, relay.port, smtp_max_attempts=MAX_ATTEMPTS, sending_lease_seconds=60.0)
    try:
        async with serving(create_app(notify)) as client, reading(settings) as delivery:
            await relay_down_then_up(client, relay, delivery, settings)
            await temporary_failures_then_success(relay, delivery, settings)
            await permanent_failure(relay, delivery, settings)
            async with asyncpg.create_pool(notify.database_url, min_size=1, max_size=2) as pool:
                await crash_after_the_relay_took_the_mail(pool, relay, delivery, notify)
                await crash_on_the_last_attempt(pool, delivery, notify)
    finally:
        relay.stop()


async def row(client: httpx.AsyncClient, ticket_id: str) -> dict[str, object]:
    items = (await client.get("/outbound", params={"ticket_id": ticket_id})).json()["items"]
    return items[0] if items else {}


async def relay_down_then_up(
    client: httpx.AsyncClient, relay: Relay, delivery: TopicReader, settings: ServiceSettings
) -> None:
    await publish(settings, envelope_of(answer_sent("ticket-down", "article-down")))

    async def retried() -> dict[str, object] | None:
        found = await row(client, "ticket-down")
        return found if found.get("state") == "pending" and int(found["attempts"]) >= 2 else None  # type: ignore[call-overload]

    waiting = await eventually(retried)
    assert waiting["last_error_kind"] == "retry"
    assert "connect" in str(waiting["last_error"]).lower()

    relay.start()
    [delivered] = await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-down")))
    assert delivered.data["attempts"] >= 3
    assert len(relay.handler.with_id("<article-down@firstline.example>")) == 1


async def temporary_failures_then_success(relay: Relay, delivery: TopicReader, settings: ServiceSettings) -> None:
    await publish(settings, envelope_of(answer_sent("ticket-flaky", "article-flaky", to=["flaky@example.org"])))
    [delivered] = await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-flaky")))
    assert delivered.data["attempts"] == 3
    assert relay.handler.data_tries["<article-flaky@firstline.example>"] == 3
    assert len(relay.handler.with_id("<article-flaky@firstline.example>")) == 1
    assert not delivery.of_type(DeliveryFailed, article_id="article-flaky")


async def permanent_failure(relay: Relay, delivery: TopicReader, settings: ServiceSettings) -> None:
    answer = envelope_of(answer_sent("ticket-reject", "article-reject", to=["reject@example.org"]))
    await publish(settings, answer)
    [failed] = await eventually(lambda: _async(delivery.of_type(DeliveryFailed, article_id="article-reject")))
    assert failed.data["permanent"] is True
    assert failed.data["smtp_code"] == 550
    assert failed.data["attempts"] == 1
    assert failed.data["purpose"] == "answer"
    assert "reject@example.org: SMTP 550" in failed.data["reason"]
    assert failed.causation_id == answer.event_id
    assert not relay.handler.with_id("<article-reject@firstline.example>")


def crashed_row(ticket_id: str, article_id: str) -> NewOutbound:
    """The row an AnswerSent would have created, for a worker that then died."""
    event = answer_sent(ticket_id, article_id)
    msg = compose_answer(event, default_queue_settings("Press"), agent_name="Alex Agent", domain=DOMAIN)
    return NewOutbound.from_message(
        msg,
        envelope_from="press@firstline.example",
        cause_event_id=new_id(),
        purpose=PURPOSE_ANSWER,
        ticket_id=ticket_id,
        article_id=article_id,
        correlation_id=new_id(),
        requested_at=utcnow(),
    )


async def insert_in_sending(pool: asyncpg.Pool, mail: NewOutbound, *, attempts: int, lease_seconds: float) -> int:
    """Insert a row as a worker would leave it: claimed (state, attempts, token, lease), never finished."""
    async with pool.acquire() as conn, conn.transaction():
        row_id = await store.insert_outbound(conn, mail)
        await conn.execute(
            "update outbound set state = 'sending', attempts = $2, claim_token = $3, claimed_at = now(),"
            " due_at = now() + make_interval(secs => $4) where id = $1",
            row_id,
            attempts,
            str(uuid.uuid4()),
            lease_seconds,
        )
    assert row_id is not None
    return row_id


async def crash_after_the_relay_took_the_mail(
    pool: asyncpg.Pool, relay: Relay, delivery: TopicReader, settings: NotifySettings
) -> None:
    mail = crashed_row("ticket-crash", "article-crash")
    await aiosmtplib.send(mail.message, sender=mail.envelope_from, recipients=mail.recipients, port=relay.port)
    row_id = await insert_in_sending(pool, mail, attempts=1, lease_seconds=1.5)

    await asyncio.sleep(0.8)  # the lease still holds: the worker might be alive, nobody touches the row
    assert await pool.fetchval("select state from outbound where id = $1", row_id) == "sending"
    assert len(relay.handler.with_id(mail.message_id)) == 1

    [delivered] = await eventually(lambda: _async(delivery.of_type(AnswerDelivered, article_id="article-crash")))
    assert delivered.data["attempts"] == 2
    first, second = relay.handler.with_id(mail.message_id)  # at least once: a duplicate, never a loss
    assert first.data == second.data == mail.message
    assert await pool.fetchval("select state from outbound where id = $1", row_id) == "sent"


async def crash_on_the_last_attempt(pool: asyncpg.Pool, delivery: TopicReader, settings: NotifySettings) -> None:
    mail = crashed_row("ticket-crash-last", "article-crash-last")
    await insert_in_sending(pool, mail, attempts=MAX_ATTEMPTS, lease_seconds=0)
    [failed] = await eventually(lambda: _async(delivery.of_type(DeliveryFailed, article_id="article-crash-last")))
    assert failed.data["permanent"] is False
    assert failed.data["attempts"] == MAX_ATTEMPTS
    assert "may have been delivered" in failed.data["reason"]


async def _async(value: object) -> object:
    return value
