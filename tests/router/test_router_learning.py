"""The router learns from agents: moves and spam marks retrain the classifier in PostgreSQL,
every replica follows the tables, and a corpus seeds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date

import asyncpg
import pytest

from services.router import store
from services.router.app import MIGRATIONS, create_app
from services.router.classifier import Classifier, tokenize_mail
from services.router.corpus import corpus_files, parse_raw
from services.router.state import RouterState
from services.router.train import seed, train_model
from shared.db import create_pool, migrate
from shared.envelope import new_id
from shared.events import (
    TOPIC_MAIL_RECEIVED,
    TOPIC_TICKET_EVENTS,
    TicketCreated,
    TicketMarkedSpam,
    TicketMoved,
)
from shared.settings import ServiceSettings
from shared.ticket_numbers import format_ticket_number
from tests.conftest import eventually, serving
from tests.router.router_mailkit import make_mail
from tests.router.router_servicekit import database, mail_received, publish, router_settings, ticket_event

pytestmark = pytest.mark.timeout(180)

INVOICE = make_mail("Invoice overdue", to=(), body="Our invoice 4711 is overdue, please pay the amount.")


async def _docs(db: asyncpg.Connection) -> dict[str, int]:
    return {r["label"]: r["docs"] for r in await db.fetch("select label, docs from classifier_docs where docs > 0")}


async def _token_labels(db: asyncpg.Connection, token: str) -> dict[str, int]:
    rows = await db.fetch("select label, count from classifier_tokens where token = $1", token)
    return {r["label"]: r["count"] for r in rows}


async def test_moves_and_spam_marks_train_and_a_corpus_seeds(settings: ServiceSettings, corpus) -> None:
    async with serving(create_app(router_settings(settings))) as client, database(settings) as db:
        untrained = (await client.get("/classifier")).json()
        assert (untrained["trained"], untrained["model_version"], untrained["labels"]) == (False, 0, [])

        await publish(settings, TOPIC_MAIL_RECEIVED, [mail_received("m-invoice", INVOICE)])
        await eventually(lambda: db.fetchval("select 1 from learning_mails where mail_id = 'm-invoice'"), timeout=60)
        ticket_id = new_id()
        created = TicketCreated(
            ticket_id=ticket_id,
            ticket_number=format_ticket_number(date(2026, 5, 4), 10, 1),
            title="Invoice overdue",
            queue="Raw",
            mail_id="m-invoice",
        )
        moved = TicketMoved(ticket_id=ticket_id, from_queue="Raw", to_queue="Billing")
        await publish(settings, TOPIC_TICKET_EVENTS, [ticket_event(created), ticket_event(moved)])
        await eventually(lambda: _docs(db), timeout=60)
        assert await _docs(db) == {"Billing": 1}
        assert await _token_labels(db, "invoice") == {"Billing": 1}
        learned = (await client.get("/classifier")).json()
        assert learned["labels"] == [{"label": "Billing", "documents": 1}] and learned["model_version"] == 1

        spam = TicketMarkedSpam(ticket_id=ticket_id, mail_id="m-invoice")
        await publish(settings, TOPIC_TICKET_EVENTS, [ticket_event(spam)])
        await eventually(lambda: _has_label(db, "Junk"))
        assert await _docs(db) == {"Junk": 1}  # relabelled: no longer counted as Billing
        assert await _token_labels(db, "invoice") == {"Junk": 1}

        model = train_model(corpus, spam_label="Junk", ham_label="Raw", limit=150)
        await seed(settings.database_url, model, reason="test corpus")
        seeded = (await client.get("/classifier")).json()
        assert seeded["trained"] is True and seeded["model_version"] == 4
        assert {x["label"]: x["documents"] for x in seeded["labels"]} == {"Junk": 151, "Raw": 150}

        held_out = _confident_spam(model, corpus)
        await publish(settings, TOPIC_MAIL_RECEIVED, [mail_received("m-held-out", held_out)])
        routed = await eventually(lambda: _decision(client, "m-held-out"), timeout=30)
        assert (routed["queue"], routed["spam"], routed["model_version"]) == ("Junk", True, 4)
        assert any("classifier spam p=" in r["detail"] for r in routed["reasons"])


async def _decision(client, mail_id: str) -> dict | None:
    response = await client.get(f"/mails/{mail_id}")
    return response.json() if response.status_code == 200 else None


async def _has_label(db: asyncpg.Connection, label: str) -> bool:
    return label in await _docs(db)


def _confident_spam(model: Classifier, corpus):
    for path in corpus_files(corpus / "spam")[150:]:
        mail = parse_raw(path.read_bytes())
        if (model.spam_probability(mail) or 0) > 0.99 and not mail.headers.get("x-spam-flag"):
            return mail.model_copy(update={"to": [], "headers": {}})
    raise AssertionError("no held-out spam the model is sure about")


# --------------------------------------------------------------------------- tables ↔ memory


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, max_size=4)
    await migrate(pool, [MIGRATIONS])
    yield pool
    await pool.close()


async def test_replicas_follow_the_tables_by_log_and_by_reload(pool: asyncpg.Pool, settings: ServiceSettings) -> None:
    """Every change made in the tables reaches another replica's memory, exactly as in a model
    that made the same changes itself; a replica too far behind reloads everything."""
    rsettings = router_settings(settings)
    replica = RouterState(rsettings)
    await replica.refresh(pool, force=True)
    reference = Classifier()
    mails = [make_mail(f"subject {i}", body=f"word{i} common text {i % 3}") for i in range(6)]
    steps = [(0, "A", 1), (1, "B", 1), (2, "A", 1), (0, "A", -1), (3, "B", 1), (4, "Nowhere", -1), (0, "B", 1)]
    for i, label, delta in steps:
        tokens = tokenize_mail(mails[i])
        async with pool.acquire() as conn, conn.transaction():
            await store.train(conn, tokens, label, delta, mail_id=f"m{i}", reason="test")
        (reference.train if delta > 0 else reference.untrain)(tokens, label)
        await replica.refresh(pool, force=True)
    assert replica.classifier_version == 6  # the untrain of a label with no documents changed nothing
    assert _counts(replica.classifier) == _counts(reference)

    fresh = RouterState(rsettings)
    await fresh.refresh(pool, force=True)
    assert _counts(fresh.classifier) == _counts(reference) and fresh.classifier_version == 6

    async with pool.acquire() as conn, conn.transaction():
        await store.train(conn, tokenize_mail(mails[5]), "A", 1, mail_id="m5", reason="test")
    reference.train(tokenize_mail(mails[5]), "A")
    await store.prune_classifier_log(pool, keep=0)
    await replica.refresh(pool, force=True)
    assert replica.classifier_version == 7 and _counts(replica.classifier) == _counts(reference)
    probe = make_mail("subject 1", body="word1 common")
    assert replica.classifier.predict(probe).probabilities == reference.predict(probe).probabilities


def _counts(model: Classifier) -> tuple[dict, dict]:
    state = model.to_dict()
    return state["docs"], state["counts"]


async def test_learning_mails_stay_bounded(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for i in range(5):
            await conn.execute("insert into learning_mails (mail_id, tokens) values ($1, $2)", f"m{i}", ["a", "b"])
        await conn.execute("update learning_mails set routed_at = now() - interval '4 days' where mail_id = 'm0'")
    assert await store.prune_learning_mails(pool, max_age_hours=72, max_rows=3) == 2
    remaining = {r["mail_id"] for r in await pool.fetch("select mail_id from learning_mails")}
    assert len(remaining) == 3 and "m0" not in remaining
